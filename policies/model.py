"""Engine input and output models for the § 115 policy gate.

Input models are pydantic v2 with ``extra="forbid"``; every vocabulary value is a
``StrEnum`` so an unknown value is rejected with a ``ValidationError`` that names
the field (never defaulted).  Output models are slotted dataclasses (cheap to
build in the hot path) with ``to_dict()`` / ``from_dict()``.

Only stdlib and pydantic are imported here.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Any, Iterable, NamedTuple, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializeAsAny,
    StrictBool,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
)


class _Vocabulary(StrEnum):
    """Base of every vocabulary enum.  pydantic serialises an enum member by reading its
    ``value``; the stdlib ``Enum.value`` is a Python-level descriptor, a plain property over
    ``_value_`` is a C-level one: the request digest (9+ enum values) gets ~15% cheaper."""
    value = property(attrgetter("_value_"))


class Role(_Vocabulary):
    POLICE = "POLICE"
    PET = "PET"
    MUNI_SOCIAL_CHILD = "MUNI_SOCIAL_CHILD"
    MUNI_SOCIAL_ADULT = "MUNI_SOCIAL_ADULT"
    MUNI_SCHOOL = "MUNI_SCHOOL"
    MUNI_SSP_UNIT = "MUNI_SSP_UNIT"
    MUNI_JOBCENTER = "MUNI_JOBCENTER"
    MUNI_OTHER = "MUNI_OTHER"
    SOCIAL_PSYCH = "SOCIAL_PSYCH"
    TREATMENT_PSYCH = "TREATMENT_PSYCH"
    KRIMINALFORSORGEN = "KRIMINALFORSORGEN"
    SELF_GOV_SOCIAL = "SELF_GOV_SOCIAL"
    SELF_GOV_EDU = "SELF_GOV_EDU"
    SELF_GOV_EMPLOY = "SELF_GOV_EMPLOY"
    SELF_GOV_PSYCH = "SELF_GOV_PSYCH"
    IMMIGRATION_AUTH = "IMMIGRATION_AUTH"
    PRIVATE_ENTITY = "PRIVATE_ENTITY"
    OTHER_AUTHORITY = "OTHER_AUTHORITY"


class Context(_Vocabulary):
    SSP = "SSP"
    PSP = "PSP"
    KSP = "KSP"
    INFOHUS_KOMMUNE = "INFOHUS_KOMMUNE"
    INFOHUS_NETVAERK = "INFOHUS_NETVAERK"
    UNDERRETNING = "UNDERRETNING"
    PET_REQUEST = "PET_REQUEST"
    NONE = "NONE"


class Purpose(_Vocabulary):
    PREVENTIVE_COORDINATION = "PREVENTIVE_COORDINATION"
    SUPPORT_PLANNING = "SUPPORT_PLANNING"
    RELEASE_PLANNING = "RELEASE_PLANNING"
    EXTREMISM_RISK_ASSESSMENT = "EXTREMISM_RISK_ASSESSMENT"
    CRIMINAL_INVESTIGATION = "CRIMINAL_INVESTIGATION"
    PROSECUTION = "PROSECUTION"
    CHILD_WELFARE_NOTIFICATION = "CHILD_WELFARE_NOTIFICATION"
    OTHER_ADMIN = "OTHER_ADMIN"
    STATISTICS = "STATISTICS"


class Category(_Vocabulary):
    IDENTITY = "IDENTITY"
    ORDINARY = "ORDINARY"
    RENT_PRIVATE = "RENT_PRIVATE"
    HEALTH = "HEALTH"
    BELIEFS_POLITICAL_RELIGIOUS = "BELIEFS_POLITICAL_RELIGIOUS"
    CRIMINAL = "CRIMINAL"
    THIRD_PARTY = "THIRD_PARTY"
    AGGREGATE_NON_PERSONAL = "AGGREGATE_NON_PERSONAL"


class CustodyStatus(_Vocabulary):
    IN_KIF_INSTITUTION = "IN_KIF_INSTITUTION"
    PLACED_78_2 = "PLACED_78_2"
    PLACED_78_1_OUTSIDE_KIF = "PLACED_78_1_OUTSIDE_KIF"
    REMAND_CH70 = "REMAND_CH70"
    SOCIAL_PLACEMENT = "SOCIAL_PLACEMENT"
    NONE = "NONE"


class Outcome(_Vocabulary):
    ALLOW = "ALLOW"
    DENY = "DENY"
    ESCALATE = "ESCALATE"


class Basis(_Vocabulary):
    SSP = "SSP"
    PSP = "PSP"
    KSP = "KSP"


class ConsentGiver(_Vocabulary):
    SUBJECT = "SUBJECT"
    CUSTODY_HOLDER = "CUSTODY_HOLDER"


#: Contexts that are § 115 contexts.  Used only for the *input* rule "a § 115
#: context needs cooperation_id"; the engine takes its list from the bundle.
SECTION_115_CONTEXTS = frozenset(
    {Context.SSP, Context.PSP, Context.KSP, Context.INFOHUS_KOMMUNE})

_FORBID = ConfigDict(extra="forbid", frozen=True)


class _Input(BaseModel):
    model_config = _FORBID


class MembershipSpec(_Input):
    id: str = Field(min_length=1)
    valid_from: date | None = None
    valid_to: date | None = None


def _tag(v: Any) -> str:
    return "str" if isinstance(v, str) else "inline"


# The "str or inline" unions validate through the discriminator, but serialise by the value's
# own type (SerializeAsAny): the same JSON, without pydantic's tagged-union serialiser, which
# calls the discriminator and goes through a Python dict; that halves the cost of each party
# in the request digest.
Membership = Annotated[Union[Annotated[str, Tag("str")], Annotated[MembershipSpec, Tag("inline")]],
                       Discriminator(_tag), SerializeAsAny()]


class InlineParty(_Input):
    memberships: list[Membership] = Field(default_factory=list)
    org: str = Field(min_length=1)
    role: Role
    valid_from: date | None = None
    valid_to: date | None = None


Party = Annotated[Union[Annotated[str, Tag("str")], Annotated[InlineParty, Tag("inline")]],
                  Discriminator(_tag), SerializeAsAny()]


def party_org(p: Party) -> str:
    return p if isinstance(p, str) else p.org


class SubjectFacts(_Input):
    # Fields are declared in alphabetical order: model_dump_json() then *is* the
    # canonical JSON (sorted keys, no whitespace) used for the request digest.
    age: StrictInt | None = Field(default=None, ge=0, le=150)
    convicted: StrictBool = False
    crime_risk: StrictBool = False
    custody_status: CustodyStatus = CustodyStatus.NONE
    radicalisation_assessed: StrictBool = False
    release_date: date | None = None
    socially_vulnerable: StrictBool = False


class Provenance(_Input):
    context: Context
    exchange_id: str | None = None
    purpose: Purpose


def _date_only(v: Any) -> Any:
    # "2026-11-20" (e.g. from JSON) is a date, not a naive midnight datetime.
    if isinstance(v, str) and len(v.strip()) == 10:
        return date.fromisoformat(v.strip())
    return v


class Consent(_Input):
    # Every field may be missing: consent is *present* whenever the request carries it (even
    # as an empty object), and a missing part makes it invalid, never the request.
    categories: list[Category] = Field(default_factory=list)
    explicit: StrictBool = False
    given_by: ConsentGiver | None = None
    purposes: list[Purpose] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)
    withdrawn_at: AwareDatetime | date | None = None

    @field_validator("withdrawn_at", mode="before")
    @classmethod
    def _withdrawn_date(cls, v: Any) -> Any:
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise ValueError("a date-time must carry a UTC offset")
            return v
        return _date_only(v)


class ExchangeRequest(_Input):
    # alphabetical field order (see SubjectFacts); `context` precedes `cooperation_id`,
    # whose validator needs it.
    consent: Consent | None = None
    context: Context
    cooperation_id: str | None = Field(default=None, validate_default=True)
    data_categories: list[Category] = Field(min_length=1)
    id: str = Field(min_length=1)
    mandatory: StrictBool = False
    necessity: str | None = None
    occurred_at: AwareDatetime
    provenance: Provenance | None = None
    purpose: Purpose
    recipients: list[Party] = Field(min_length=1)
    sender: Party
    subject: SubjectFacts = Field(default_factory=SubjectFacts)
    third_party_justification: str | None = None
    underlying_basis: Basis | None = None

    @field_validator("recipients")
    @classmethod
    def _unique_recipients(cls, v: list[Party]) -> list[Party]:
        seen: set[str] = set()
        for i, p in enumerate(v):
            org = party_org(p)
            if org in seen:
                raise ValueError(f"recipient {org!r} is listed twice (recipients[{i}])")
            seen.add(org)
        return v

    @field_validator("cooperation_id")
    @classmethod
    def _coop_required(cls, v: str | None, info: ValidationInfo) -> str | None:
        ctx = info.data.get("context")
        if ctx in SECTION_115_CONTEXTS and not (v and v.strip()):
            raise ValueError(f"cooperation_id is required in the § 115 context {ctx}")
        return v

    def canonical_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, UTF-8): the bytes of
        ``model_dump_json()``.  Because every input model declares its fields
        alphabetically, pydantic's serializer emits the keys sorted; tests check
        equality with json.dumps(sort_keys=True).  Taken straight from the serializer
        (no str round trip) with its type-mismatch warnings off, which do not change
        the bytes; the engine computes this for every decision."""
        return self.__pydantic_serializer__.to_json(self, warnings=False)

    def digest(self) -> str:
        """"sha256:" + hex sha256 of the canonical JSON of this request (the one
        formula; ``Decision.request_digest`` and the ledgers use it)."""
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class InvalidRequest(ValueError):
    """Input that never gets a decision.  ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------- output


class CheckResult(NamedTuple):
    """One evaluated check of the trace (immutable; shared between recipients)."""
    step: str
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return {"step": self.step, "name": self.name, "passed": self.passed,
                "detail": self.detail}


# Each trace item's dict, by the item, built once: the engine builds each item once per distinct input
# (policies.engine's memo tables), so the ~16 items of a decision are nearly always ones seen before, and
# a copy of a dict costs less than building it (0.8 µs less per gate decision of 16 items, paired in one process).
# Every decision gets copies of its own: they go into a ledger event and an aggregate. Used only for the
# very item it was built from (``is``), so an equal item of other types (1 for True) gets its own dict.
_TRACE_DICTS: dict[CheckResult, tuple[CheckResult, dict]] = {}
_TRACE_DICTS_MAX = 8192


def _trace_dicts(trace: list[CheckResult]) -> list[dict]:
    known = _TRACE_DICTS.get
    out = []
    for c in trace:
        try:
            hit = known(c)
        except TypeError:  # an item holding an unhashable value (not one the engine makes): not kept
            step, name, passed, detail = c
            out.append({"step": step, "name": name, "passed": passed, "detail": detail})
            continue
        if hit is None or hit[0] is not c:
            step, name, passed, detail = c
            if len(_TRACE_DICTS) >= _TRACE_DICTS_MAX:
                _TRACE_DICTS.clear()
            hit = _TRACE_DICTS[c] = (c, {"step": step, "name": name, "passed": passed, "detail": detail})
        out.append(hit[1].copy())
    return out


@dataclass(slots=True)
class RecipientDecision:
    recipient: str
    outcome: Outcome
    rule: str
    via: str | None
    reason: str | None
    citation: str
    warnings: list[str] = field(default_factory=list)
    trace: list[CheckResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "recipient": self.recipient,
            "outcome": str(self.outcome),
            "rule": self.rule,
            "via": self.via,
            "reason": self.reason,
            "citation": self.citation,
            "warnings": list(self.warnings),
            "trace": _trace_dicts(self.trace),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RecipientDecision":
        return cls(recipient=d["recipient"], outcome=Outcome(d["outcome"]), rule=d["rule"],
                   via=d.get("via"), reason=d.get("reason"), citation=d["citation"],
                   warnings=list(d.get("warnings", [])),
                   trace=[CheckResult(**c) for c in d.get("trace", [])])


@dataclass(slots=True)
class Decision:
    request_id: str
    request_digest: str
    policy_version: str
    results: list[RecipientDecision]

    def to_dict(self) -> dict:
        return {
            "request_id": self.request_id,
            "request_digest": self.request_digest,
            "policy_version": self.policy_version,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        return cls(request_id=d["request_id"], request_digest=d["request_digest"],
                   policy_version=d["policy_version"],
                   results=[RecipientDecision.from_dict(r) for r in d["results"]])

    def for_recipient(self, org: str) -> RecipientDecision | None:
        for r in self.results:
            if r.recipient == org:
                return r
        return None


_UNION_TAGS = frozenset({"str", "inline", "datetime", "date"})


def format_loc(loc: Iterable[Any]) -> str:
    """('cooperations', 'SSP', 'roles', 3) -> 'cooperations.SSP.roles[3]'."""
    out = ""
    for part in loc:
        if part in _UNION_TAGS or (isinstance(part, str) and part.startswith("function-")):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"
