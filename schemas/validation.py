"""Semantic validation of decoded records: what Avro types cannot say (CPR format, real dates, time zones, ranges).

Each record name maps to a pydantic model mirroring its schema. Errors name the
field path and never echo the offending value, which may be personal data.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from schemas.cpr import InvalidCPR, normalise

EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)


class RecordInvalid(ValueError):
    def __init__(self, name: str, problems: list[str]):
        self.name = name
        self.problems = problems
        super().__init__(f"{name}: " + "; ".join(problems))


class _Model(BaseModel):
    # Avro already fixed the shape; these models only add meaning, so unknown keys are allowed
    # (a reader schema newer than this model may add optional fields). Allowed and not kept
    # ("ignore", not "allow"): the same records pass, and nothing reads the extras, which "allow"
    # copied into every model, the envelope's payload bytes, parties and vocabulary included
    # (the gate's validate_request and decode_payload stages ~1.8 µs less per message, bench/README.md).
    model_config = ConfigDict(extra="ignore", frozen=True)


def _date_in_range(value: date | None) -> date | None:
    if value is not None and not (EARLIEST <= value <= LATEST):
        raise ValueError(f"date outside {EARLIEST}..{LATEST}")
    return value


def _rfc3339_with_offset(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("date-time must carry a UTC offset")
    return value


class Subject(_Model):
    # Deprecated since ExchangeRequest v2 (empty); a v1 sender's hex pseudonym is read but ignored.
    pseudonym: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    age: int | None = Field(default=None, ge=0, le=130)
    release_date: date | None = None

    _range = field_validator("release_date")(_date_in_range)


class Consent(_Model):
    withdrawn_at: str | None = None

    @field_validator("withdrawn_at")
    @classmethod
    def _withdrawn(cls, value: str | None) -> str | None:
        if value is None or len(value) == 10:  # a bare date means the start of that day
            if value is not None:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    # fromisoformat's message quotes the input; errors must never echo values.
                    raise ValueError("not an ISO date (YYYY-MM-DD)") from None
            return value
        return _rfc3339_with_offset(value)


class ExchangeRequest(_Model):
    message_id: str = Field(min_length=8, max_length=128)
    occurred_at: str
    recipients: list[dict[str, Any]] = Field(min_length=1)
    data_categories: list[str] = Field(min_length=1)
    subject: Subject
    consent: Consent | None = None
    payload_type: str = Field(min_length=1)

    _occurred = field_validator("occurred_at")(_rfc3339_with_offset)


class ReleaseNotice(_Model):
    cpr: str
    full_name: str = Field(min_length=1, max_length=200)
    institution: str = Field(min_length=1)
    release_date: date
    release_type: Literal["END_OF_SENTENCE", "PAROLE", "PROBATION", "TRANSFER"]  # mirrors the Avro enum

    _range = field_validator("release_date")(_date_in_range)

    @field_validator("cpr")
    @classmethod
    def _cpr(cls, value: str) -> str:
        try:
            return normalise(value)
        except InvalidCPR as exc:
            raise ValueError(str(exc)) from None


# --- payload models -------------------------------------------------------------------------
# One model per payload record in schemas/<folder>/v<N>.avsc (the newest version: the codec
# always resolves to it). Avro already fixed the shape and the enum symbols; the Literal
# types below repeat the symbols so a model used on its own (a test, a simulator) says the
# same, and tests/schemas checks that they match the schemas.


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


def _valid_cpr(value: str) -> str:
    try:
        return normalise(value)
    except InvalidCPR as exc:
        raise ValueError(str(exc)) from None


def _timestamp(value: str) -> str:
    _rfc3339_with_offset(value)
    _date_in_range(datetime.fromisoformat(value).date())
    return value


_CPR_LIKE = re.compile(r"(?<!\d)\d{6}-?\d{4}(?!\d)")


def _no_cpr_like(value: str | None) -> str | None:
    if value is not None and _CPR_LIKE.search(value):
        raise ValueError("contains something that looks like a CPR number; aggregate data must not identify anyone")
    return value


def _not_before(earlier: str, info: ValidationInfo, value: date | None) -> date | None:
    first = info.data.get(earlier)
    if value is not None and isinstance(first, date) and value < first:
        raise ValueError(f"must not be before {earlier}")
    return value


Cpr = Annotated[str, AfterValidator(_valid_cpr)]
Text = Annotated[str, AfterValidator(_not_blank)]
Name = Annotated[str, Field(max_length=200), AfterValidator(_not_blank)]
Day = Annotated[date, AfterValidator(_date_in_range)]
OptionalDay = Annotated[date | None, AfterValidator(_date_in_range)]
Timestamp = Annotated[str, AfterValidator(_timestamp)]
AuthorityId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*:[a-z0-9][a-z0-9._-]*$", max_length=100)]
Year = Annotated[int, Field(ge=EARLIEST.year, le=LATEST.year)]


class IntakeNotice(_Model):
    cpr: Cpr
    full_name: Name
    institution: Text
    intake_date: Day
    custody_basis: Literal["SENTENCE", "REMAND_CH70", "FINE_CONVERSION", "OTHER"]
    expected_release_date: OptionalDay = None
    sentence_days: Annotated[int, Field(ge=1, le=36500)] | None = None
    housing_situation: str | None = None
    employment_or_education: str | None = None
    treatment_need: str | None = None
    dependent_children: list["DependentChild"] = []
    contact_officer: str | None = None

    @field_validator("expected_release_date")
    @classmethod
    def _release_after_intake(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _not_before("intake_date", info, value)

    @field_validator("sentence_days")
    @classmethod
    def _no_sentence_on_remand(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("custody_basis") == "REMAND_CH70":
            raise ValueError("must be empty for remand custody (no sentence yet)")
        return value


class DependentChild(_Model):
    first_name: Name
    birth_year: Year | None = None
    lives_with_subject: bool = False


IntakeNotice.model_rebuild()


class ReportingProfessional(_Model):
    name: str | None = None
    organisation: Text
    phone: str | None = None


class ReportingCitizen(_Model):
    name: str | None = None
    relation: str | None = None
    phone: str | None = None


class InvolvedPerson(_Model):
    name: str | None = None
    relation: Text
    role_in_concern: str | None = None


_EXTREMISM = Literal[
    "IDEOLOGICAL_PREOCCUPATION", "SHARES_PROPAGANDA", "CONTACT_WITH_EXTREMISTS", "ACCEPTS_VIOLENCE_AS_MEANS",
    "HOSTILITY_TO_SOCIETY", "TRAVEL_TO_CONFLICT_ZONE", "OTHER",
]


class ConcernReport(_Model):
    cpr: Cpr
    full_name: Name | None = None
    reported_at: Timestamp
    source: Literal["SCHOOL", "SOCIAL_SERVICES", "PSYCHIATRY", "POLICE", "NATIONAL_HOTLINE", "OTHER"]
    reporting_professional: ReportingProfessional | None = None
    reporting_citizen: ReportingCitizen | None = None
    urgency: Literal["ROUTINE", "PROMPT", "URGENT"] = "ROUTINE"
    description: Text
    social_indicators: list[Literal[
        "SCHOOL_ABSENCE", "BEHAVIOURAL_CHANGE", "SOCIAL_ISOLATION", "FAMILY_CONFLICT", "NEGATIVE_PEER_GROUP",
        "HOUSING_PROBLEMS", "OTHER"]] = []
    health_indicators: list[Literal["SUBSTANCE_ABUSE", "MENTAL_HEALTH", "SELF_HARM", "OTHER"]] = []
    health_observations: str | None = None
    crime_indicators: list[Literal[
        "VIOLENCE", "THREATS", "WEAPONS", "PROPERTY_CRIME", "DRUG_DEALING", "GANG_AFFILIATION", "OTHER"]] = []
    extremism_indicators: list[_EXTREMISM] = []
    extremism_details: str | None = None
    persons_involved: list[InvolvedPerson] = []


class AgreedAction(_Model):
    responsible: Text
    action: Text
    due_date: OptionalDay = None


class CaseNote(_Model):
    cpr: Cpr
    full_name: Name | None = None
    case_reference: str | None = None
    meeting_date: Day
    author: Text
    participants: list[AuthorityId] = []
    summary: Text
    health_information: str | None = None
    criminal_information: str | None = None
    beliefs_information: str | None = None
    third_party_information: str | None = None
    agreed_actions: list[AgreedAction] = []
    next_meeting: OptionalDay = None

    @field_validator("next_meeting")
    @classmethod
    def _after_meeting(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _not_before("meeting_date", info, value)


class ReferralConcern(_Model):
    description: Text
    observed_since: OptionalDay = None
    extremism_indicators: list[_EXTREMISM] = []
    ideology: Literal["RIGHT_WING", "LEFT_WING", "MILITANT_ISLAMISM", "SINGLE_ISSUE", "MIXED_UNCLEAR", "OTHER"] | None = None
    ideology_details: str | None = None


class InfohusReferral(_Model):
    cpr: Cpr
    full_name: Name
    referred_at: Timestamp
    referring_authority: AuthorityId
    referring_caseworker: str | None = None
    step1_concern: ReferralConcern
    measures_already_taken: str | None = None
    question_to_infohus: Text
    persons_involved: list[InvolvedPerson] = []


class AssessedConcern(_Model):
    description: Text
    extremism_indicators: list[_EXTREMISM] = []


class FactorAnalysis(_Model):
    social_risk_factors: list[Text] = []
    health_risk_factors: list[Text] = []
    criminal_risk_factors: list[Text] = []
    ideological_risk_factors: list[Text] = []
    network_risk_factors: list[Text] = []
    protective_factors: list[Text] = []
    analysis: Text


class OverallAssessment(_Model):
    concern_level: Literal["NONE", "LOW", "MODERATE", "HIGH", "ACUTE"]
    overall_assessment: Text
    recommended_focus_areas: list[Literal[
        "FAMILY", "SCHOOL_EDUCATION", "EMPLOYMENT", "LEISURE", "MENTORING", "TREATMENT", "HOUSING",
        "EXIT_PROGRAMME", "NETWORK", "OTHER"]] = []
    recommendations: str | None = None
    suggested_followers: list[AuthorityId] = []


class InfohusAssessment(_Model):
    cpr: Cpr
    full_name: Name | None = None
    infohus: Text
    assessment_date: Day
    participants: list[AuthorityId] = []
    referral_exchange_id: str | None = None
    step1_concern: AssessedConcern
    step2_analysis: FactorAnalysis
    step3_overall: OverallAssessment
    next_review: OptionalDay = None

    @field_validator("next_review")
    @classmethod
    def _after_assessment(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _not_before("assessment_date", info, value)


class MeasureInitiated(_Model):
    cpr: Cpr
    full_name: Name | None = None
    deciding_authority: AuthorityId
    decided_on: Day
    measure_type: Literal[
        "MENTOR", "FAMILY_SUPPORT", "EXIT_PROGRAMME", "SCHOOL_MEASURE", "EMPLOYMENT_MEASURE", "HOUSING_SUPPORT",
        "TREATMENT_REFERRAL", "PREVENTIVE_TALK", "SUPERVISION", "OTHER"]
    legal_basis: str | None = None
    description: Text
    start_date: Day
    end_date: OptionalDay = None
    health_details: str | None = None
    responsible_caseworker: str | None = None
    related_exchange_id: str | None = None

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _not_before("start_date", info, value)


class StatisticCount(_Model):
    topic: Literal["CONCERN_REPORTS", "INFOHUS_REFERRALS", "INFOHUS_ASSESSMENTS", "MEASURES_INITIATED", "EXIT_PROGRAMMES", "OTHER"]
    breakdown: Annotated[str | None, AfterValidator(_no_cpr_like)] = None
    count: Annotated[int, Field(ge=0)] | None = None


class AggregateStatistics(_Model):
    police_district: Annotated[str, Field(pattern=r"^politikreds:[a-z0-9][a-z0-9._-]*$")]
    period_start: Day
    period_end: Day
    suppression_threshold: Annotated[int, Field(ge=3, le=1000)] = 5
    counts: list[StatisticCount] = []
    trends: Annotated[str | None, AfterValidator(_no_cpr_like)] = None

    @field_validator("period_end")
    @classmethod
    def _after_period_start(cls, value: date, info: ValidationInfo) -> date:
        return _not_before("period_start", info, value)

    @field_validator("counts")
    @classmethod
    def _small_counts_suppressed(cls, value: list[StatisticCount], info: ValidationInfo) -> list[StatisticCount]:
        threshold = info.data.get("suppression_threshold")
        if isinstance(threshold, int):
            small = [i for i, c in enumerate(value) if c.count is not None and 0 < c.count < threshold]
            if small:
                raise ValueError(f"entries {small} must be suppressed (null): below suppression_threshold")
        return value


MODELS: dict[str, type[_Model]] = {
    "dk.xledger.ExchangeRequest": ExchangeRequest,
    "dk.xledger.payload.ReleaseNotice": ReleaseNotice,
    "dk.xledger.payload.IntakeNotice": IntakeNotice,
    "dk.xledger.payload.ConcernReport": ConcernReport,
    "dk.xledger.payload.CaseNote": CaseNote,
    "dk.xledger.payload.InfohusReferral": InfohusReferral,
    "dk.xledger.payload.InfohusAssessment": InfohusAssessment,
    "dk.xledger.payload.MeasureInitiated": MeasureInitiated,
    "dk.xledger.payload.AggregateStatistics": AggregateStatistics,
}

# Payload fields holding the subject's CPR number, by record name; the gate derives the
# subject pseudonym from it. Every payload about a person has one; only
# AggregateStatistics (no personal data) has none: its subject is cpr.NO_SUBJECT.
CPR_FIELD: dict[str, str] = {
    "dk.xledger.payload.ReleaseNotice": "cpr",
    "dk.xledger.payload.IntakeNotice": "cpr",
    "dk.xledger.payload.ConcernReport": "cpr",
    "dk.xledger.payload.CaseNote": "cpr",
    "dk.xledger.payload.InfohusReferral": "cpr",
    "dk.xledger.payload.InfohusAssessment": "cpr",
    "dk.xledger.payload.MeasureInitiated": "cpr",
}

PAYLOAD_NAMESPACE = "dk.xledger.payload"


def is_payload(name: str) -> bool:
    """True for a payload record name (``dk.xledger.payload.*``), false for the envelopes.

    The gate should refuse an ``ExchangeRequest.payload_type`` for which this is false:
    an envelope type as payload carries no x-category annotations, so no categories
    would be found in it.
    """
    return name.startswith(PAYLOAD_NAMESPACE + ".") and name in MODELS


def validate(name: str, record: dict[str, Any]) -> BaseModel:
    model = MODELS.get(name)
    if model is None:
        raise RecordInvalid(name, ["no validation model for this record type"])
    try:
        # model_validate(record) without its wrapper: the same validator with the same (default)
        # settings; the gate validates two records per message, and the wrapper's keyword
        # plumbing cost ~1.3 µs each (measured paired, bench/README.md).
        return model.__pydantic_validator__.validate_python(record)
    except ValidationError as exc:
        raise RecordInvalid(name, [_describe(e) for e in exc.errors()]) from None


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(record)"
    return f"{path}: {error['msg']}"


Validator = Callable[[str, dict[str, Any]], BaseModel]
