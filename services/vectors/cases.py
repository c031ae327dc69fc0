"""The vector cases: one request each, what is wrong with it (if anything), and what the gate must answer.

The expectations are written here by hand from the disclosure rules; ``generate`` refuses to
write vectors when the running gate answers anything else. All persons and CPR numbers are
synthetic. The exchange date is fixed (``OCCURRED_AT``) so that the bytes never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from services.agencies import P
from services.simulation import HORSEROD, INFOHUS, PET, POLICE, muni

OCCURRED_AT = "2026-11-30T10:00:00+01:00"
STATUS_KEY_SIGNER = HORSEROD[0]  # who holds the revoked, expired and not yet valid keys (build.STATUS_KEYS)
NO_KEYS = ("kommune:999", "MUNI_SOCIAL_ADULT")  # an authority without any key in the key set

KALUNDBORG_SOCIAL, KALUNDBORG_SSP = muni("326", "MUNI_SOCIAL_ADULT"), muni("326", "MUNI_SSP_UNIT")
# Horserød Fængsel lies in Helsingør Kommune: its KSP is Helsingør's (Nordsjællands Politi).
HELSINGOR_SOCIAL = muni("217", "MUNI_SOCIAL_ADULT")
KALUNDBORG_SCHOOL, HOLBAEK_SSP = muni("326", "MUNI_SCHOOL"), muni("316", "MUNI_SSP_UNIT")

CPR_ADULT = "1203911234"  # synthetic, born 12 March 1991
CPR_YOUTH = "0205104321"  # synthetic, born 2 May 2010 (7th digit 4, yy <= 36)
NECESSARY = "Nødvendigt for at koordinere en tidlig forebyggende indsats over for den unge."


@dataclass(frozen=True)
class VectorCase:
    name: str  # unique; letters, digits, '.', '_' and '-' (it names files in a third party's directory)
    description: str
    sender: tuple[str, str]
    payload_type: str
    payload: dict[str, Any]
    request: dict[str, Any]  # the ExchangeRequest fields besides sender, payload and the ids
    # Per recipient org: (outcome, rule for ALLOW / reason for DENY and ESCALATE); or the rejection reason.
    expect: dict[str, tuple[str, str]] | str
    payload_version: int | None = None  # None: the newest
    data_categories: list[str] | None = None  # None: exactly the categories present in the payload
    tamper: str | None = None  # see build.TAMPERS
    after: str | None = None  # a case that must reach the gate first (duplicates)
    rejected_receipt: bool = False  # a rejection after the signature verified: the sender gets a REJECTED receipt
    file: str = ""  # the vector file; default: the payload's schema folder

    @property
    def rejected(self) -> bool:
        return isinstance(self.expect, str)


def release_notice(release: date, **extra: Any) -> dict[str, Any]:
    return {
        "cpr": CPR_ADULT, "full_name": "Testperson Alfa", "institution": "Horserød Fængsel",
        "release_date": release, "release_type": "PAROLE",
        "conditions": ["Tilsyn af Kriminalforsorgen i frihed", "Misbrugsbehandling"],
        "housing_need": "Har ingen bolig efter løsladelsen.", "treatment_need": "Fortsat ambulant alkoholbehandling.",
        "contact_officer": "Kirsten Larsen, Kriminalforsorgen", **extra,
    }


def _ksp_release(release: date, age: int = 35) -> dict[str, Any]:
    return dict(recipients=[HELSINGOR_SOCIAL], context="KSP", cooperation_id="ksp:helsingor",
                purpose="RELEASE_PLANNING",
                subject={"age": age, "convicted": True, "custody_status": "IN_KIF_INSTITUTION", "release_date": release},
                necessity="Bolig og misbrugsbehandling skal være klar på løsladelsesdagen.")


SOON, FAR = date(2026, 12, 21), date(2030, 11, 30)

RELEASE_ALLOWED = VectorCase(
    "release_notice.allowed", "KSP: Kriminalforsorgen tells Helsingør's social services of a release in three weeks "
    "(rule P5, rpl § 115, stk. 1, nr. 3, litra a).",
    HORSEROD, P + "ReleaseNotice",
    release_notice(SOON, municipality_contact="Peter Holm, Helsingør Kommune"), _ksp_release(SOON),
    {"kommune:217": ("ALLOW", "P5")},
)

CASES: list[VectorCase] = [
    RELEASE_ALLOWED,
    VectorCase("release_notice.v1_allowed", "The same notice written with the older ReleaseNotice v1: a reader "
               "resolves it into v2 (municipality_contact is null).",
               HORSEROD, P + "ReleaseNotice", release_notice(SOON), _ksp_release(SOON),
               {"kommune:217": ("ALLOW", "P5")}, payload_version=1),
    VectorCase("release_notice.denied_out_of_scope", "A release four years away is outside KSP's scope.",
               HORSEROD, P + "ReleaseNotice", release_notice(FAR), _ksp_release(FAR),
               {"kommune:217": ("DENY", "DENY_SUBJECT_OUT_OF_SCOPE")}),
    VectorCase("release_notice.denied_undeclared_data", "The pitfall of a copied example: data_categories declares "
               "only RENT_PRIVATE and HEALTH, but a ReleaseNotice always carries IDENTITY (cpr, full_name) and "
               "CRIMINAL data (institution, release_date, ...). Undeclared data is excessive: every recipient DENY.",
               HORSEROD, P + "ReleaseNotice", release_notice(SOON), _ksp_release(SOON),
               {"kommune:217": ("DENY", "DENY_EXCESSIVE_DATA")}, data_categories=["RENT_PRIVATE", "HEALTH"]),
    VectorCase("intake_notice.allowed", "KSP: Kriminalforsorgen tells the municipality of an intake, so the rented "
               "home can be kept during a short sentence (P5).",
               HORSEROD, P + "IntakeNotice",
               {"cpr": CPR_ADULT, "full_name": "Testperson Alfa", "institution": "Horserød Fængsel",
                "intake_date": date(2026, 11, 27), "custody_basis": "SENTENCE",
                "expected_release_date": date(2027, 1, 26), "sentence_days": 60,
                "housing_situation": "Lejebolig i Helsingør; husleje skal betales under afsoningen."},
               dict(recipients=[HELSINGOR_SOCIAL], context="KSP", cooperation_id="ksp:helsingor",
                    purpose="RELEASE_PLANNING",
                    subject={"age": 35, "convicted": True, "custody_status": "IN_KIF_INSTITUTION",
                             "release_date": date(2027, 1, 26)},
                    necessity="Lejemålet skal bevares under afsoningen."),
               {"kommune:217": ("ALLOW", "P5")}),
    VectorCase("concern_report.allowed", "SSP: the police tell Kalundborg's SSP unit about a 16-year-old arrested "
               "for shoplifting (P1).",
               POLICE, P + "ConcernReport",
               {"cpr": CPR_YOUTH, "full_name": "Testperson Beta", "reported_at": "2026-11-29T21:40:00+01:00",
                "source": "POLICE",
                "reporting_professional": {"name": None, "organisation": "Midt- og Vestsjællands Politi", "phone": None},
                "urgency": "PROMPT", "description": "Anholdt for butikstyveri sammen med ældre venner.",
                "social_indicators": ["SCHOOL_ABSENCE", "NEGATIVE_PEER_GROUP"], "crime_indicators": ["PROPERTY_CRIME"]},
               dict(recipients=[KALUNDBORG_SSP], context="SSP", cooperation_id="ssp:kalundborg",
                    purpose="PREVENTIVE_COORDINATION", subject={"age": 16, "crime_risk": True}, necessity=NECESSARY),
               {"kommune:326": ("ALLOW", "P1")}),
    VectorCase("case_note.allowed", "SSP: the school answers the police with a meeting note (P2).",
               KALUNDBORG_SCHOOL, P + "CaseNote",
               {"cpr": CPR_YOUTH, "full_name": "Testperson Beta", "meeting_date": date(2026, 11, 27),
                "author": "Skolens SSP-kontakt", "participants": ["kommune:326", "politikreds:midt-vestsjaelland"],
                "summary": "Drøftet skolefravær og ny vennekreds; forældrene er bekymrede.",
                "agreed_actions": [{"responsible": "kommune:326", "action": "Tilbyde mentor",
                                    "due_date": date(2026, 12, 11)}]},
               dict(recipients=[POLICE], context="SSP", cooperation_id="ssp:kalundborg",
                    purpose="PREVENTIVE_COORDINATION", subject={"age": 16}, necessity=NECESSARY),
               {"politikreds:midt-vestsjaelland": ("ALLOW", "P2")}),
    VectorCase("case_note.denied_investigation", "The same note asked for by the police for an investigation: "
               "never under § 115 (stk. 2, 2. pkt.).",
               KALUNDBORG_SCHOOL, P + "CaseNote",
               {"cpr": CPR_YOUTH, "full_name": "Testperson Beta", "meeting_date": date(2026, 11, 27),
                "author": "Skolens SSP-kontakt", "participants": ["kommune:326", "politikreds:midt-vestsjaelland"],
                "summary": "Drøftet skolefravær og ny vennekreds."},
               dict(recipients=[POLICE], context="SSP", cooperation_id="ssp:kalundborg",
                    purpose="CRIMINAL_INVESTIGATION", subject={"age": 16}, necessity=NECESSARY),
               {"politikreds:midt-vestsjaelland": ("DENY", "DENY_INVESTIGATION_PURPOSE")}),
    VectorCase("case_note.escalated", "PET asks the police: outside § 115, a legal officer decides (ESCALATE); "
               "nothing is delivered until then.",
               POLICE, P + "CaseNote",
               {"cpr": CPR_YOUTH, "full_name": None, "meeting_date": date(2026, 11, 27), "author": "Politiet",
                "participants": ["politikreds:midt-vestsjaelland"], "summary": "Oplysninger til PET."},
               dict(recipients=[PET], context="PET_REQUEST", purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": 16}),
               {"pet:national": ("ESCALATE", "ESCALATE_OTHER_BASIS")}),
    VectorCase("infohus_referral.allowed", "Infohus: Holbæk's SSP unit refers a concern to the police, on the basis "
               "of SSP (P2).",
               HOLBAEK_SSP, P + "InfohusReferral",
               {"cpr": CPR_YOUTH, "full_name": "Testperson Beta", "referred_at": "2026-11-28T14:00:00+01:00",
                "referring_authority": "kommune:316",
                "step1_concern": {"description": "Deler ekstremistisk propaganda i klassens chatgruppe.",
                                  "observed_since": None, "extremism_indicators": ["SHARES_PROPAGANDA"],
                                  "ideology": "RIGHT_WING", "ideology_details": None},
                "question_to_infohus": "Er der grundlag for en bekymring om radikalisering?"},
               dict(recipients=[POLICE], context="INFOHUS_KOMMUNE", underlying_basis="SSP", cooperation_id=INFOHUS,
                    purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": 16}, necessity=NECESSARY),
               {"politikreds:midt-vestsjaelland": ("ALLOW", "P2")}),
    VectorCase("infohus_assessment.allowed", "Infohus: the police share the assessment with Holbæk's SSP unit (P1).",
               POLICE, P + "InfohusAssessment",
               {"cpr": CPR_YOUTH, "full_name": None, "infohus": INFOHUS, "assessment_date": date(2026, 11, 30),
                "participants": ["politikreds:midt-vestsjaelland", "kommune:316"],
                "step1_concern": {"description": "Deler propaganda.", "extremism_indicators": ["SHARES_PROPAGANDA"]},
                "step2_analysis": {"social_risk_factors": ["Isolation"], "health_risk_factors": [],
                                   "criminal_risk_factors": [], "ideological_risk_factors": ["Højreekstremt online-fællesskab"],
                                   "network_risk_factors": [], "protective_factors": ["Går til fodbold"],
                                   "analysis": "Begyndende bekymring; stærke beskyttende faktorer."},
                "step3_overall": {"concern_level": "MODERATE", "overall_assessment": "Forebyggende indsats anbefales.",
                                  "recommended_focus_areas": ["MENTORING"], "recommendations": None,
                                  "suggested_followers": ["kommune:316"]}},
               dict(recipients=[HOLBAEK_SSP], context="INFOHUS_KOMMUNE", underlying_basis="SSP",
                    cooperation_id=INFOHUS, purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": 16},
                    necessity=NECESSARY),
               {"kommune:316": ("ALLOW", "P1")}),
    VectorCase("measure_initiated.allowed", "SSP: Holbæk tells the police about its own measure (P2).",
               HOLBAEK_SSP, P + "MeasureInitiated",
               {"cpr": CPR_YOUTH, "full_name": None, "deciding_authority": "kommune:316",
                "decided_on": date(2026, 11, 30), "measure_type": "MENTOR",
                "description": "Mentorforløb i seks måneder.", "start_date": date(2026, 12, 7)},
               dict(recipients=[POLICE], context="SSP", cooperation_id="ssp:holbaek",
                    purpose="PREVENTIVE_COORDINATION", subject={"age": 16}, necessity=NECESSARY),
               {"politikreds:midt-vestsjaelland": ("ALLOW", "P2")}),
    VectorCase("aggregate_statistics.allowed", "Infohus network: counts only, no person (A3).",
               POLICE, P + "AggregateStatistics",
               {"police_district": "politikreds:midt-vestsjaelland", "period_start": date(2026, 10, 1),
                "period_end": date(2026, 10, 31), "suppression_threshold": 5,
                "counts": [{"topic": "CONCERN_REPORTS", "breakdown": None, "count": 14}],
                "trends": "Stabilt niveau."},
               dict(recipients=[HOLBAEK_SSP], context="INFOHUS_NETVAERK", cooperation_id=INFOHUS,
                    purpose="STATISTICS"),
               {"kommune:316": ("ALLOW", "A3")}),
]


def _rejected(name: str, description: str, tamper: str, reason: str, **changes: Any) -> VectorCase:
    base = RELEASE_ALLOWED
    values = {**base.__dict__, "name": name, "description": description, "tamper": tamper, "expect": reason,
              "file": "rejected", **changes}
    return VectorCase(**values)


CASES += [
    _rejected("rejected.no_domain_separator", "Signed over the request bytes alone, without the domain separator "
              "'xledger-sig-v1' + 0x00 in front.", "no_domain_separator", "BAD_SIGNATURE"),
    _rejected("rejected.other_signers_key", "Sent in Horserød's name and key id, but signed with another "
              "authority's key.", "other_signers_key", "BAD_SIGNATURE"),
    _rejected("rejected.unknown_key_id", "Signed with a key id the key set does not list for the signer.",
              "unknown_key_id", "UNKNOWN_KEY"),
    _rejected("rejected.signer_without_keys", "Signed and sent by an authority that has no key in the key set.",
              "signer_without_keys", "UNKNOWN_SIGNER", sender=NO_KEYS),
    _rejected("rejected.key_revoked", "Correctly signed with a key that was revoked on 2026-01-01.",
              "key_revoked", "KEY_REVOKED"),
    _rejected("rejected.key_expired", "Correctly signed with a key valid only until 2026-01-01.",
              "key_expired", "KEY_EXPIRED"),
    _rejected("rejected.key_not_yet_valid", "Correctly signed with a key valid only from 2999-01-01.",
              "key_not_yet_valid", "KEY_NOT_YET_VALID"),
    _rejected("rejected.signer_is_not_sender", "Correctly signed by the police, but the request says "
              "Kriminalforsorgen sends it.", "signer_is_not_sender", "SIGNER_MISMATCH"),
    _rejected("rejected.big_endian_fingerprint", "The SignedMessage header carries the fingerprint big-endian "
              "(byte-reversed), as releases before 2026-11-30 wrote it.", "big_endian_fingerprint",
              "UNKNOWN_FINGERPRINT"),
    _rejected("rejected.apache_avro_fingerprint", "The ExchangeRequest header carries Apache avro 1.12's "
              "Schema.fingerprint(), whose canonical form keeps the logicalType of subject.release_date.",
              "apache_avro_fingerprint", "UNKNOWN_FINGERPRINT"),
    _rejected("rejected.trailing_bytes", "One zero byte after the SignedMessage.", "trailing_bytes", "MALFORMED"),
    _rejected("rejected.truncated", "Only the first 8 bytes of the message.", "truncated", "TRUNCATED"),
    _rejected("rejected.not_avro", "Text, not a single-object-encoded record.", "not_avro", "BAD_MARKER"),
    _rejected("rejected.invalid_cpr", "The payload's cpr is not a real date (DDMMYY); the record is invalid.",
              "invalid_cpr", "INVALID_RECORD", payload={**RELEASE_ALLOWED.payload, "cpr": "3113911234"},
              rejected_receipt=True),
    _rejected("rejected.duplicate", "The allowed release notice sent a second time: the same message_id.",
              "none", "DUPLICATE_MESSAGE", after=RELEASE_ALLOWED.name, rejected_receipt=True),
]
