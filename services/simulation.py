"""A scripted, realistic week of exchanges in one police district (Midt- og Vestsjælland) and its municipalities.

Every case says which rule the gate should apply, so the demo can show the
gate doing what the law says: lawful SSP, PSP and KSP exchanges and infohus
cases, hotline referrals, and the unlawful ones the gate must stop
(investigation purposes, subjects out of scope, onward disclosure, excessive
data, personal data in the network forum, forged and broken messages).
All persons and CPR numbers are synthetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable

from services.agencies import ASSESSMENT, CASE_NOTE, CONCERN, INTAKE, MEASURE, REFERRAL, RELEASE, STATISTICS

POLICE = ("politikreds:midt-vestsjaelland", "POLICE")
HORSEROD = ("kriminalforsorgen:horserod", "KRIMINALFORSORGEN")  # Horserød Fængsel, Nordsjællands Politi
# The district's Kriminalforsorgen i Frihed: Kriminalforsorgen's KSP partner in Midt- og Vestsjælland.
KIF = ("kriminalforsorgen:kif-midt-vestsjaelland", "KRIMINALFORSORGEN")
KIF_AREA = ("kriminalforsorgen:omraade-sjaelland", "KRIMINALFORSORGEN")
PSYCH = ("region:sjaelland", "TREATMENT_PSYCH")
SOCIAL_PSYCH = ("region:sjaelland", "SOCIAL_PSYCH")
HOTLINE = ("hotline-radikalisering:national", "OTHER_AUTHORITY")
PET = ("pet:national", "PET")
IMMIGRATION = ("udlaendingestyrelsen:national", "IMMIGRATION_AUTH")
UNGEHUSET = ("selvejende:ungehuset-kalundborg", "SELF_GOV_SOCIAL")
MENTOR = ("privat:mentorhuset-test", "PRIVATE_ENTITY")
DISTRICT = "politikreds:midt-vestsjaelland"
INFOHUS = "infohus:midt-vestsjaelland"
# four of the district's ten municipalities (Slagelse and Sorø belong to Sydsjællands og Lolland-Falsters Politi)
MUNICIPALITIES = {"326": "kalundborg", "316": "holbaek", "329": "ringsted", "265": "roskilde"}


def muni(code: str, role: str) -> tuple[str, str]:
    return (f"kommune:{code}", role)


@dataclass
class Case:
    label: str
    expect: str  # the rule (ALLOW) or reason code (DENY/ESCALATE) the gate should give
    sender: tuple[str, str]
    request: dict[str, Any]
    tamper: str | None = None  # "forge" (wrong key) or "garbage" (undecodable bytes)
    # what a later bundle gives where it differs (bundle name -> rule or reason), for weeks it decides
    expect_by_bundle: dict[str, str] = field(default_factory=dict)
    resolve: str | None = None  # for an escalation: "approve" or "refuse", what the demo's legal officer does

    def expected(self, bundle_name: str) -> str:
        return self.expect_by_bundle.get(bundle_name, self.expect)


@dataclass
class Week:
    start: date
    cases: list[tuple[datetime, Case]] = field(default_factory=list)


class People:
    """Synthetic citizens with valid-looking CPR numbers and a fixed age at the exchange."""

    def __init__(self, rng: random.Random, today: date):
        self.rng, self.today, self.n = rng, today, 0

    def person(self, age: int) -> tuple[str, str, int]:
        self.n += 1
        born = date(self.today.year - age, 1 + self.n % 12, 1 + self.n % 27)
        if (born.month, born.day) > (self.today.month, self.today.day):
            born = born.replace(year=born.year - 1)  # keep the age exact at the exchange
        real_age = self.today.year - born.year - ((self.today.month, self.today.day) < (born.month, born.day))
        century_digit = 4 if born.year >= 2000 else 1
        cpr = f"{born:%d%m%y}{century_digit}{self.rng.randint(0, 999):03d}"
        return cpr, f"Syntetisk Person {self.n:03d}", real_age


def _concern(cpr: str, name: str, source: str, text: str, *, extremism: bool = False, crime: bool = False,
             health: bool = False) -> dict[str, Any]:
    return {
        "cpr": cpr, "full_name": name, "reported_at": "2026-11-23T09:00:00+01:00", "source": source,
        "reporting_professional": {"name": None, "organisation": source.lower(), "phone": None},
        "urgency": "PROMPT", "description": text,
        "social_indicators": ["SCHOOL_ABSENCE", "NEGATIVE_PEER_GROUP"],
        "health_indicators": ["SUBSTANCE_ABUSE"] if health else [],
        "crime_indicators": ["PROPERTY_CRIME"] if crime else [],
        "extremism_indicators": ["SHARES_PROPAGANDA"] if extremism else [],
        "extremism_details": None,
    }


def _case_note(cpr: str, name: str, day: date, author: str, *, crime: bool = False, health: bool = False,
               third_party: bool = False) -> dict[str, Any]:
    return {
        "cpr": cpr, "full_name": name, "meeting_date": day, "author": author,
        "participants": [DISTRICT, "kommune:326"],
        "summary": "Drøftelse af bekymring og fælles indsats.",
        "criminal_information": "Sigtet for butikstyveri i oktober." if crime else None,
        "health_information": "Er i ambulant behandling." if health else None,
        "third_party_information": "Ældre bror har samme vennekreds." if third_party else None,
        "agreed_actions": [{"responsible": "Skolen", "action": "Mentorforløb", "due_date": None}],
    }


def _release(cpr: str, name: str, release: date) -> dict[str, Any]:
    return {
        "cpr": cpr, "full_name": name, "institution": "Horserød Fængsel", "release_date": release,
        "release_type": "PAROLE", "conditions": ["Tilsyn af Kriminalforsorgen i frihed"],
        "housing_need": "Har ingen bolig efter løsladelse.", "treatment_need": "Fortsat misbrugsbehandling.",
    }


def _referral(cpr: str, name: str, referrer: str) -> dict[str, Any]:
    return {
        "cpr": cpr, "full_name": name, "referred_at": "2026-11-24T10:00:00+01:00", "referring_authority": referrer,
        "step1_concern": {"description": "Deler ekstremistisk propaganda i klassens chatgruppe.",
                          "observed_since": None, "extremism_indicators": ["SHARES_PROPAGANDA"],
                          "ideology": "RIGHT_WING", "ideology_details": None},
        "question_to_infohus": "Er der grundlag for en bekymring om radikalisering?",
    }


def _assessment(cpr: str, name: str, day: date) -> dict[str, Any]:
    return {
        "cpr": cpr, "full_name": name, "infohus": INFOHUS, "assessment_date": day, "participants": [DISTRICT, "kommune:316"],
        "step1_concern": {"description": "Deler propaganda.", "extremism_indicators": ["SHARES_PROPAGANDA"]},
        "step2_analysis": {"social_risk_factors": ["Isolation"], "health_risk_factors": [], "criminal_risk_factors": [],
                           "ideological_risk_factors": ["Højreekstrem online-fællesskab"], "network_risk_factors": [],
                           "protective_factors": ["Tæt på sin mor", "Går til fodbold"],
                           "analysis": "Begyndende bekymring; stærke beskyttende faktorer."},
        "step3_overall": {"concern_level": "MODERATE", "overall_assessment": "Forebyggende indsats anbefales.",
                          "recommended_focus_areas": ["MENTORING", "SCHOOL_EDUCATION"], "recommendations": None,
                          "suggested_followers": ["kommune:326"]},
    }


def _measure(cpr: str, name: str, day: date, authority: str) -> dict[str, Any]:
    return {"cpr": cpr, "full_name": name, "deciding_authority": authority, "decided_on": day,
            "measure_type": "MENTOR", "description": "Mentorforløb i 6 måneder.", "start_date": day}


def _statistics(day: date) -> dict[str, Any]:
    return {"police_district": DISTRICT, "period_start": day - timedelta(days=30), "period_end": day,
            "counts": [{"topic": "CONCERN_REPORTS", "breakdown": None, "count": 14}], "trends": "Stabilt niveau."}


NECESSARY = "Nødvendigt for at koordinere en tidlig forebyggende indsats over for den unge."


def build_week(today: date, seed: int = 7) -> list[tuple[date, Case]]:
    """About sixty-five exchanges over the seven days up to today, in a fixed, seeded order."""
    rng = random.Random(seed)
    people = People(rng, today)
    cases: list[Case] = []
    add = cases.append

    for code, slug in MUNICIPALITIES.items():
        ssp, psp, ksp = f"ssp:{slug}", f"psp:{slug}", f"ksp:{slug}"
        # SSP: police tells the SSP unit about a 15-year-old arrested for shoplifting (P1), the school answers (P2).
        cpr, name, age = people.person(15)
        add(Case(f"SSP {slug}: police → SSP unit", "P1", POLICE, dict(
            payload_type=CONCERN, payload=_concern(cpr, name, "POLICE", "Anholdt for butikstyveri med ældre venner.", crime=True),
            recipients=[muni(code, "MUNI_SSP_UNIT")], context="SSP", cooperation_id=ssp,
            purpose="PREVENTIVE_COORDINATION", subject={"age": age, "crime_risk": True}, necessity=NECESSARY)))
        add(Case(f"SSP {slug}: school → police", "P2", muni(code, "MUNI_SCHOOL"), dict(
            payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Skolen"),
            recipients=[POLICE], context="SSP", cooperation_id=ssp, purpose="PREVENTIVE_COORDINATION",
            subject={"age": age}, necessity=NECESSARY)))
        # The same school asked for the investigation: never under § 115 (stk. 2, 2. pkt.).
        add(Case(f"SSP {slug}: school → police for investigation", "DENY_INVESTIGATION_PURPOSE",
                 muni(code, "MUNI_SCHOOL"), dict(
            payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Skolen", third_party=True),
            recipients=[POLICE], context="SSP", cooperation_id=ssp, purpose="CRIMINAL_INVESTIGATION",
            subject={"age": age}, necessity=NECESSARY, third_party_justification="Broderens rolle er relevant.")))
        # Necessity not documented.
        cpr2, name2, age2 = people.person(14)
        add(Case(f"SSP {slug}: SSP unit → school, no necessity", "DENY_NECESSITY_NOT_DOCUMENTED",
                 muni(code, "MUNI_SSP_UNIT"), dict(
            payload_type=CASE_NOTE, payload=_case_note(cpr2, name2, today, "SSP"),
            recipients=[muni(code, "MUNI_SCHOOL")], context="SSP", cooperation_id=ssp,
            purpose="PREVENTIVE_COORDINATION", subject={"age": age2}, necessity="Til orientering.")))
        # PSP: psychiatry warns the police about a vulnerable patient drifting into crime (P4); police answer (P3).
        cpr3, name3, age3 = people.person(rng.randint(24, 50))
        add(Case(f"PSP {slug}: psychiatry → police", "P4", PSYCH, dict(
            payload_type=CONCERN, payload=_concern(cpr3, name3, "PSYCHIATRY", "Udskrevet uden bolig; truer naboer.",
                                                   health=True, crime=True),
            recipients=[POLICE], context="PSP", cooperation_id=psp, purpose="PREVENTIVE_COORDINATION",
            subject={"age": age3, "socially_vulnerable": True, "crime_risk": True}, necessity=NECESSARY)))
        add(Case(f"PSP {slug}: police → social psychiatry", "P3", POLICE, dict(
            payload_type=CASE_NOTE, payload=_case_note(cpr3, name3, today, "Politiet", crime=True),
            recipients=[SOCIAL_PSYCH], context="PSP", cooperation_id=psp, purpose="SUPPORT_PLANNING",
            subject={"age": age3, "socially_vulnerable": True, "crime_risk": True}, necessity=NECESSARY)))
        # PSP about someone who is not socially vulnerable: out of scope.
        cpr4, name4, age4 = people.person(40)
        add(Case(f"PSP {slug}: psychiatry → police, not vulnerable", "DENY_SUBJECT_OUT_OF_SCOPE", PSYCH, dict(
            payload_type=CONCERN, payload=_concern(cpr4, name4, "PSYCHIATRY", "Bekymring.", health=True),
            recipients=[POLICE], context="PSP", cooperation_id=psp, purpose="PREVENTIVE_COORDINATION",
            subject={"age": age4, "crime_risk": True}, necessity=NECESSARY)))
        # PSP passed on for a suspect's investigation.
        add(Case(f"PSP {slug}: psychiatry → police, suspect", "DENY_INVESTIGATION_PURPOSE", PSYCH, dict(
            payload_type=CONCERN, payload=_concern(cpr3, name3, "PSYCHIATRY", "Mistænkt for vold.", health=True),
            recipients=[POLICE], context="PSP", cooperation_id=psp, purpose="CRIMINAL_INVESTIGATION",
            subject={"age": age3, "socially_vulnerable": True, "crime_risk": True}, necessity=NECESSARY)))
        # KSP: release in three weeks (P5) to social services and police; four years left (out of scope).
        cpr5, name5, age5 = people.person(rng.randint(22, 45))
        release = today + timedelta(days=rng.randint(10, 40))
        add(Case(f"KSP {slug}: KiF → municipality + police, release soon", "P5", KIF, dict(
            payload_type=RELEASE, payload=_release(cpr5, name5, release),
            recipients=[muni(code, "MUNI_SOCIAL_ADULT"), POLICE], context="KSP", cooperation_id=ksp,
            purpose="RELEASE_PLANNING", subject={"age": age5, "convicted": True, "custody_status": "IN_KIF_INSTITUTION",
                                                 "release_date": release},
            necessity="Bolig og misbrugsbehandling skal være klar på løsladelsesdagen.")))
        far = today + timedelta(days=4 * 365)
        add(Case(f"KSP {slug}: KiF → municipality, four years left", "DENY_SUBJECT_OUT_OF_SCOPE", KIF, dict(
            payload_type=RELEASE, payload=_release(cpr5, name5, far),
            recipients=[muni(code, "MUNI_SOCIAL_ADULT")], context="KSP", cooperation_id=ksp,
            purpose="RELEASE_PLANNING", subject={"age": age5, "convicted": True, "custody_status": "IN_KIF_INSTITUTION",
                                                 "release_date": far},
            necessity="Planlægning af løsladelse om fire år.")))
        # Onward: the municipality passes PSP data to the jobcentre for an administrative case.
        add(Case(f"Onward {slug}: social → jobcentre", "DENY_ONWARD_PURPOSE_CHANGE", muni(code, "MUNI_SOCIAL_ADULT"),
                 expect_by_bundle={"dk-115-2026-12-15": "ESCALATE_ONWARD_COMPATIBILITY"}, request=dict(
            payload_type=CASE_NOTE, payload=_case_note(cpr3, name3, today, "Socialforvaltningen", health=True),
            recipients=[muni(code, "MUNI_JOBCENTER")], context="NONE", purpose="OTHER_ADMIN",
            subject={"age": age3}, provenance={"exchange_id": None, "context": "PSP", "purpose": "PREVENTIVE_COORDINATION"})))

    # Kalundborg only: KSP litra b and c, self-governing institution (P8), consent, excessive data.
    cpr, name, age = people.person(16)
    rel = today + timedelta(days=30)
    add(Case("KSP kalundborg: 16-year-old placed under § 78, stk. 2", "P6", KIF_AREA, dict(
        payload_type=RELEASE, payload=_release(cpr, name, rel), recipients=[POLICE], context="KSP",
        cooperation_id="ksp:kalundborg", purpose="RELEASE_PLANNING",
        subject={"age": age, "convicted": True, "custody_status": "PLACED_78_2", "release_date": rel},
        necessity="Skole og fritidstilbud skal være på plads ved udslusning.")))
    cpr, name, age = people.person(27)
    rel = today - timedelta(days=5)
    add(Case("KSP kalundborg: released from remand, radicalisation assessed", "P7", POLICE, dict(
        payload_type=CONCERN, payload=_concern(cpr, name, "POLICE", "Løsladt fra varetægt.", extremism=True),
        recipients=[muni("326", "MUNI_SOCIAL_ADULT")], context="KSP", cooperation_id="ksp:kalundborg",
        purpose="EXTREMISM_RISK_ASSESSMENT",
        subject={"age": age, "custody_status": "REMAND_CH70", "release_date": rel, "radicalisation_assessed": True},
        necessity="Kommunen skal kunne tilbyde exitprogram straks efter løsladelsen.")))
    cpr, name, age = people.person(41)
    later = today + timedelta(days=180)
    add(Case("KSP kalundborg: KiF → municipality, release in six months", "DENY_SUBJECT_OUT_OF_SCOPE", KIF,
             expect_by_bundle={"dk-115-2026-12-15": "P5"}, request=dict(
        payload_type=RELEASE, payload=_release(cpr, name, later), recipients=[muni("326", "MUNI_SOCIAL_ADULT")],
        context="KSP", cooperation_id="ksp:kalundborg", purpose="RELEASE_PLANNING",
        subject={"age": age, "convicted": True, "custody_status": "IN_KIF_INSTITUTION", "release_date": later},
        necessity="En bolig skal findes i god tid før løsladelsen.")))
    cpr, name, age = people.person(14)
    add(Case("SSP kalundborg: the municipal youth club → police", "DENY_ROLE_NOT_IN_COOPERATION",
             muni("326", "MUNI_OTHER"), expect_by_bundle={"dk-115-2026-12-15": "P2"}, request=dict(
        payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Ungdomsklubben"), recipients=[POLICE],
        context="SSP", cooperation_id="ssp:kalundborg", purpose="PREVENTIVE_COORDINATION", subject={"age": age},
        necessity=NECESSARY)))
    cpr, name, age = people.person(17)
    add(Case("SSP kalundborg: Ungehuset (selvejende) → SSP unit", "P8", UNGEHUSET, dict(
        payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Ungehuset"),
        recipients=[muni("326", "MUNI_SSP_UNIT")], context="SSP", cooperation_id="ssp:kalundborg",
        purpose="PREVENTIVE_COORDINATION", subject={"age": age}, necessity=NECESSARY)))
    add(Case("NONE: social → private mentor with the custody holder's consent", "A1", muni("326", "MUNI_SOCIAL_CHILD"), dict(
        payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Børn og unge"),
        recipients=[MENTOR], context="NONE", purpose="SUPPORT_PLANNING", subject={"age": age},
        consent={"explicit": True, "given_by": "CUSTODY_HOLDER", "recipients": [MENTOR[0]],
                 "purposes": ["SUPPORT_PLANNING"], "categories": ["IDENTITY", "ORDINARY", "RENT_PRIVATE"],
                 "withdrawn_at": None})))
    add(Case("SSP kalundborg: police → SSP unit, undeclared criminal data", "DENY_EXCESSIVE_DATA", POLICE, dict(
        payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Politiet", crime=True),
        recipients=[muni("326", "MUNI_SSP_UNIT")], context="SSP", cooperation_id="ssp:kalundborg",
        purpose="PREVENTIVE_COORDINATION", subject={"age": age}, necessity=NECESSARY,
        data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE"])))

    # Infohus: the hotline refers a concern about a 16-year-old; an infohus case follows.
    cpr, name, age = people.person(16)
    add(Case("Hotline → children's services (duty to notify)", "A2", HOTLINE, dict(
        payload_type=CONCERN, payload=_concern(cpr, name, "NATIONAL_HOTLINE", "Forælder ringer: sønnen deler propaganda.",
                                               extremism=True),
        recipients=[muni("316", "MUNI_SOCIAL_CHILD")], context="UNDERRETNING", purpose="CHILD_WELFARE_NOTIFICATION",
        subject={"age": age})))
    add(Case("Hotline → police (a notification never goes to the police)", "DENY_NO_LEGAL_BASIS", HOTLINE, dict(
        payload_type=CONCERN, payload=_concern(cpr, name, "NATIONAL_HOTLINE", "Forælder ringer.", extremism=True),
        recipients=[POLICE], context="UNDERRETNING", purpose="CHILD_WELFARE_NOTIFICATION", subject={"age": age})))
    add(Case("Infohus: municipality refers the case (basis SSP)", "P2", muni("316", "MUNI_SSP_UNIT"), dict(
        payload_type=REFERRAL, payload=_referral(cpr, name, "kommune:316"), recipients=[POLICE],
        context="INFOHUS_KOMMUNE", underlying_basis="SSP", cooperation_id=INFOHUS,
        purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": age}, necessity=NECESSARY)))
    add(Case("Infohus: police shares the assessment (basis SSP)", "P1", POLICE, dict(
        payload_type=ASSESSMENT, payload=_assessment(cpr, name, today), recipients=[muni("316", "MUNI_SSP_UNIT")],
        context="INFOHUS_KOMMUNE", underlying_basis="SSP", cooperation_id=INFOHUS,
        purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": age}, necessity=NECESSARY)))
    add(Case("Infohus: referral without an underlying basis", "DENY_NO_115_BASIS_FOR_INFOHUS", muni("329", "MUNI_SSP_UNIT"),
             dict(payload_type=REFERRAL, payload=_referral(cpr, name, "kommune:329"), recipients=[POLICE],
                  context="INFOHUS_KOMMUNE", cooperation_id=INFOHUS, purpose="EXTREMISM_RISK_ASSESSMENT",
                  subject={"age": age}, necessity=NECESSARY)))
    add(Case("Municipality records its own measure after infohus", "P2", muni("316", "MUNI_SSP_UNIT"), dict(
        payload_type=MEASURE, payload=_measure(cpr, name, today, "kommune:316"), recipients=[POLICE],
        context="SSP", cooperation_id="ssp:holbaek", purpose="PREVENTIVE_COORDINATION", subject={"age": age},
        necessity=NECESSARY)))
    add(Case("Infohus network: monthly statistics", "A3", POLICE, dict(
        payload_type=STATISTICS, payload=_statistics(today), recipients=[muni(c, "MUNI_SSP_UNIT") for c in MUNICIPALITIES],
        context="INFOHUS_NETVAERK", cooperation_id=INFOHUS, purpose="STATISTICS")))
    add(Case("Infohus network: a named person (never in the network forum)", "DENY_PERSONAL_DATA_IN_NETWORK_FORUM",
             POLICE, dict(payload_type=CONCERN, payload=_concern(cpr, name, "POLICE", "Navngiven person.", extremism=True),
                          recipients=[muni("329", "MUNI_SSP_UNIT")], context="INFOHUS_NETVAERK",
                          cooperation_id=INFOHUS, purpose="STATISTICS", subject={"age": age})))
    add(Case("PET asks the police (outside § 115: manual review, approved)", "ESCALATE_OTHER_BASIS", POLICE, dict(
        payload_type=CASE_NOTE, payload=_case_note(cpr, name, today, "Politiet"), recipients=[PET],
        context="PET_REQUEST", purpose="EXTREMISM_RISK_ASSESSMENT", subject={"age": age}), resolve="approve"))
    add(Case("Udlændingestyrelsen → police (outside § 115: manual review, refused)", "ESCALATE_OTHER_BASIS",
             IMMIGRATION, dict(
        payload_type=CONCERN, payload=_concern(cpr, name, "OTHER", "Oplysninger til brug for en sag om opholdstilladelse."),
        recipients=[POLICE], context="NONE", purpose="OTHER_ADMIN", subject={"age": age}), resolve="refuse"))
    cpr, name, age = people.person(35)
    add(Case("KSP: intake notice, short sentence", "P5", KIF, dict(
        payload_type=INTAKE, payload={"cpr": cpr, "full_name": name, "institution": "Horserød Fængsel",
                                      "intake_date": today, "custody_basis": "SENTENCE",
                                      "expected_release_date": today + timedelta(days=60), "sentence_days": 60,
                                      "housing_situation": "Lejebolig i Ringsted."},
        recipients=[muni("329", "MUNI_SOCIAL_ADULT")], context="KSP", cooperation_id="ksp:ringsted",
        purpose="RELEASE_PLANNING",
        subject={"age": age, "convicted": True, "custody_status": "IN_KIF_INSTITUTION",
                 "release_date": today + timedelta(days=60)}, necessity="Lejemålet skal bevares under afsoningen.")))
    # Broken and forged messages: dead-lettered and recorded, never decided.
    add(Case("Forged: signed with another authority's key", "BAD_SIGNATURE", POLICE, cases[0].request, tamper="forge"))
    add(Case("Garbage bytes on the request topic", "BAD_MARKER", POLICE, cases[0].request, tamper="garbage"))

    days = [today - timedelta(days=6 - i) for i in range(7)]
    return [(days[i * 7 // len(cases)], c) for i, c in enumerate(cases)]


def occurred(day: date, index: int) -> datetime:
    """Office hours, Danish winter time."""
    cet = timezone(timedelta(hours=1))
    return datetime.combine(day, time(8 + index % 8, (index * 7) % 60), cet)


def declared_categories(codec, request: dict[str, Any]) -> list[str]:
    from schemas.categories import present_categories

    schema = codec.registry.latest(request["payload_type"]).raw
    return sorted(present_categories(schema, request["payload"]))


Builder = Callable[[date], list[tuple[date, Case]]]
