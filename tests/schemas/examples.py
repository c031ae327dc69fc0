"""Valid example records for every payload and envelope, in the shape the codec writes and reads."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from schemas.codec import AvroCodec
from schemas.cpr import pseudonym

SECRET = b"test-deployment-secret"
CPR_ADULT = "0101901234"  # 1 Jan 1990, fictitious
CPR_YOUTH = "1203094321"  # 12 Mar 2009 (7th digit 4, yy <= 36)

PAYLOADS: dict[str, dict[str, Any]] = {
    "dk.xledger.payload.ReleaseNotice": {
        "cpr": CPR_ADULT,
        "full_name": "Jens Hansen",
        "institution": "Fængslet Horserød",
        "release_date": date(2026, 12, 11),
        "release_type": "PAROLE",
        "conditions": ["Tilsyn i 2 år", "Misbrugsbehandling"],
        "housing_need": "Har ingen bolig ved løsladelse",
        "treatment_need": "Fortsat ambulant alkoholbehandling",
        "contact_officer": "Kirsten Larsen, KIF Horserød",
        "municipality_contact": "Peter Holm, Kalundborg Kommune, 59 53 44 00",
    },
    "dk.xledger.payload.IntakeNotice": {
        "cpr": CPR_ADULT,
        "full_name": "Jens Hansen",
        "institution": "Arresthuset i Holbæk",
        "intake_date": date(2026, 3, 2),
        "custody_basis": "SENTENCE",
        "expected_release_date": date(2026, 11, 20),
        "sentence_days": 365,
        "housing_situation": "Lejebolig; husleje kan ikke betales under afsoning",
        "employment_or_education": "Lagermedarbejder, afskediget",
        "treatment_need": "Metadonbehandling skal fortsætte",
        "dependent_children": [{"first_name": "Emma", "birth_year": 2015, "lives_with_subject": True}],
        "contact_officer": "Ole Berg",
    },
    "dk.xledger.payload.ConcernReport": {
        "cpr": CPR_YOUTH,
        "full_name": "Ali Jensen",
        "reported_at": "2026-03-02T09:15:00+01:00",
        "source": "SCHOOL",
        "reporting_professional": {"name": "Lise Møller", "organisation": "Kalundborg Gymnasium", "phone": None},
        "reporting_citizen": None,
        "urgency": "PROMPT",
        "description": "Eleven har siden jul trukket sig fra klassen og udtaler sig nedsættende om demokratiet.",
        "social_indicators": ["SCHOOL_ABSENCE", "SOCIAL_ISOLATION"],
        "health_indicators": [],
        "health_observations": None,
        "crime_indicators": [],
        "extremism_indicators": ["SHARES_PROPAGANDA"],
        "extremism_details": "Deler videoer fra et militant netværk i klassens chat.",
        "persons_involved": [],
    },
    "dk.xledger.payload.CaseNote": {
        "cpr": CPR_YOUTH,
        "full_name": None,
        "case_reference": "SSP-2026-0113",
        "meeting_date": date(2026, 3, 10),
        "author": "SSP-konsulent Anne Friis",
        "participants": ["kommune:326", "politikreds:midt-vestsjaelland"],
        "summary": "Drøftet skolefravær og nyt netværk; forældrene er bekymrede.",
        "health_information": None,
        "criminal_information": "Butikstyveri i januar.",
        "beliefs_information": None,
        "third_party_information": None,
        "agreed_actions": [{"responsible": "kommune:326", "action": "Tilbyde mentor", "due_date": date(2026, 4, 1)}],
        "next_meeting": date(2026, 4, 14),
    },
    "dk.xledger.payload.InfohusReferral": {
        "cpr": CPR_YOUTH,
        "full_name": "Ali Jensen",
        "referred_at": "2026-03-11T14:00:00+01:00",
        "referring_authority": "kommune:326",
        "referring_caseworker": "Anne Friis, 59 53 44 00",
        "step1_concern": {
            "description": "Deler propaganda og har kontakt til en kendt person i et militant miljø.",
            "observed_since": date(2025, 12, 1),
            "extremism_indicators": ["SHARES_PROPAGANDA", "CONTACT_WITH_EXTREMISTS"],
            "ideology": "MILITANT_ISLAMISM",
            "ideology_details": None,
        },
        "measures_already_taken": "Samtale med forældrene",
        "question_to_infohus": "Er der grundlag for en bekymring om radikalisering, og hvilke tiltag anbefales?",
        "persons_involved": [{"name": None, "relation": "ven fra klubben", "role_in_concern": "introducerede til gruppen"}],
    },
    "dk.xledger.payload.InfohusAssessment": {
        "cpr": CPR_YOUTH,
        "full_name": None,
        "infohus": "Infohus Midt- og Vestsjællands Politi",
        "assessment_date": date(2026, 3, 20),
        "participants": ["politikreds:midt-vestsjaelland", "kommune:326", "region:sjaelland"],
        "referral_exchange_id": "ex-0001",
        "step1_concern": {"description": "Deler propaganda og søger kontakt til miljøet.",
                          "extremism_indicators": ["SHARES_PROPAGANDA"]},
        "step2_analysis": {
            "social_risk_factors": ["Skolefravær: 40 % siden august"],
            "health_risk_factors": [],
            "criminal_risk_factors": [],
            "ideological_risk_factors": ["Accept af vold: udtalelser i klassen"],
            "network_risk_factors": [],
            "protective_factors": ["Stabil relation til morbror", "Spiller fodbold"],
            "analysis": "Bekymringsfaktorerne vejer tungest, men der er stærke trivselsfaktorer at bygge på.",
        },
        "step3_overall": {
            "concern_level": "MODERATE",
            "overall_assessment": "Moderat bekymring; tidlig indsats anbefales.",
            "recommended_focus_areas": ["MENTORING", "SCHOOL_EDUCATION"],
            "recommendations": "Mentor via SSP; skolen følger fraværet tæt.",
            "suggested_followers": ["kommune:326"],
        },
        "next_review": date(2026, 6, 1),
    },
    "dk.xledger.payload.MeasureInitiated": {
        "cpr": CPR_YOUTH,
        "full_name": None,
        "deciding_authority": "kommune:326",
        "decided_on": date(2026, 3, 25),
        "measure_type": "MENTOR",
        "legal_basis": "barnets lov § 32",
        "description": "Mentorforløb to gange om ugen i seks måneder.",
        "start_date": date(2026, 4, 1),
        "end_date": date(2026, 9, 30),
        "health_details": None,
        "responsible_caseworker": "Anne Friis",
        "related_exchange_id": "ex-0002",
    },
    "dk.xledger.payload.AggregateStatistics": {
        "police_district": "politikreds:midt-vestsjaelland",
        "period_start": date(2026, 1, 1),
        "period_end": date(2026, 3, 31),
        "suppression_threshold": 5,
        "counts": [
            {"topic": "CONCERN_REPORTS", "breakdown": "alder 15-17", "count": 12},
            {"topic": "INFOHUS_ASSESSMENTS", "breakdown": None, "count": None},
            {"topic": "EXIT_PROGRAMMES", "breakdown": None, "count": 0},
        ],
        "trends": "Flere henvendelser om online radikalisering blandt unge.",
    },
}


def payload(name: str, **changes: Any) -> dict[str, Any]:
    rec = copy.deepcopy(PAYLOADS[name])
    rec.update(changes)
    return rec


def envelope(payload_type: str, codec: AvroCodec) -> dict[str, Any]:
    rec = PAYLOADS[payload_type]
    pseud = pseudonym(rec["cpr"], SECRET) if "cpr" in rec else "0" * 64
    return {
        "message_id": "3f0c8d5e-1b7a-4c2e-9a51-7d2f6c1e0b42",
        "occurred_at": "2026-03-20T10:00:00+01:00",
        "sender": {"org": "kommune:326", "role": "MUNI_SSP_UNIT"},
        "recipients": [{"org": "politikreds:midt-vestsjaelland", "role": "POLICE"}],
        "context": "SSP",
        "underlying_basis": None,
        "cooperation_id": "ssp:kalundborg",
        "purpose": "PREVENTIVE_COORDINATION",
        "subject": {"pseudonym": pseud, "age": 17, "socially_vulnerable": False, "crime_risk": True,
                    "convicted": False, "custody_status": "NONE", "release_date": None,
                    "radicalisation_assessed": False},
        "data_categories": ["IDENTITY", "RENT_PRIVATE"],
        "necessity": "Skolen og politiet skal koordinere den forebyggende indsats.",
        "third_party_justification": None,
        "mandatory": False,
        "provenance": None,
        "consent": None,
        "payload_type": payload_type,
        "payload": codec.encode(payload_type, rec),
    }


def signed(payload_type: str, codec: AvroCodec) -> bytes:
    body = codec.encode("dk.xledger.ExchangeRequest", envelope(payload_type, codec))
    return codec.encode("dk.xledger.SignedMessage",
                        {"signer": "kommune:326", "key_id": "k1", "signature": b"\x00" * 64, "body": body})
