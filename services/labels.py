"""Danish and English labels for the codes the ledger records: outcomes, reasons, purposes,
cooperation contexts, data categories, rules and user roles, and authorities by their names.

What a person reads (the review app, `xledger subject report`) shows these labels; the codes
stay in exports meant for machines (CSV and JSON keep both). Danish first: the first text of each
pair is Danish, the second English. A code without a label is shown as itself, so a new code
is visible rather than hidden; tests/test_labels.py checks that every code of the vocabulary and
the bundles has one.

Imports: policies (the vocabulary and the directory) only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

LANGS = ("da", "en")

OUTCOME = {
    "ALLOW": ("Tilladt", "Allowed"),
    "DENY": ("Afvist", "Denied"),
    "ESCALATE": ("Til juridisk vurdering", "Escalated to a legal officer"),
}

REASON = {
    "DENY_CONSENT_INVALID": ("Samtykket er ugyldigt", "Consent is invalid"),
    "DENY_EXCESSIVE_DATA": ("Flere oplysninger end anmeldt eller nødvendigt", "More data than declared or necessary"),
    "DENY_INVESTIGATION_PURPOSE": ("Formålet er efterforskning af en straffesag", "The purpose is a criminal investigation"),
    "DENY_NECESSITY_NOT_DOCUMENTED": ("Nødvendigheden er ikke dokumenteret", "Necessity is not documented"),
    "DENY_NO_115_BASIS_FOR_INFOHUS": ("Infohus uden underliggende § 115-grundlag",
                                      "Infohus without an underlying § 115 basis"),
    "DENY_NO_LEGAL_BASIS": ("Ingen hjemmel til videregivelsen", "No legal basis for the disclosure"),
    "DENY_ONWARD_PURPOSE_CHANGE": ("Videregivelse videre til et andet formål", "Onward disclosure for another purpose"),
    "DENY_PERSONAL_DATA_IN_NETWORK_FORUM": ("Personoplysninger i infohusets netværk",
                                            "Personal data in the infohus network forum"),
    "DENY_PRIVATE_RECIPIENT": ("Modtageren er en privat virksomhed, forening eller NGO",
                               "The recipient is a private company, association or NGO"),
    "DENY_PURPOSE_OUT_OF_SCOPE": ("Formålet ligger uden for samarbejdets formål",
                                  "The purpose is outside the cooperation's purposes"),
    "DENY_RECIPIENT_NOT_PARTICIPANT": ("Modtageren deltager ikke i samarbejdet",
                                       "The recipient does not take part in the cooperation"),
    "DENY_REFUSED_ON_REVIEW": ("Afvist ved juridisk kontrol", "Refused on legal review"),
    "DENY_ROLE_NOT_IN_COOPERATION": ("Myndighedens rolle er ikke omfattet af samarbejdet",
                                     "The authority's role is not part of the cooperation"),
    "DENY_SENDER_NOT_PARTICIPANT": ("Afsenderen deltager ikke i samarbejdet",
                                    "The sender does not take part in the cooperation"),
    "DENY_SUBJECT_OUT_OF_SCOPE": ("Personen er uden for samarbejdets personkreds",
                                  "The person is outside the cooperation's scope"),
    "DENY_UNKNOWN_OR_EXPIRED_ORG": ("Ukendt eller ophørt myndighed", "Unknown or expired authority"),
    "ESCALATE_NO_BASIS_FOUND": ("Intet hjemmelsgrundlag fundet: juridisk vurdering",
                                "No legal basis found: legal assessment"),
    "ESCALATE_ONWARD_COMPATIBILITY": ("Videregivelse videre: foreneligt formål vurderes",
                                      "Onward disclosure: compatibility of purpose to be assessed"),
    "ESCALATE_OTHER_BASIS": ("Anden hjemmel (PET eller udlændingemyndighed): juridisk vurdering",
                             "Another legal basis (PET or immigration authority): legal assessment"),
    "WARN_CONSENT_INVALID": ("Samtykket er ugyldigt og kan ikke bruges som grundlag",
                             "The consent is invalid and cannot serve as a basis"),
    "WARN_NO_DUTY_UNDER_115": ("Der er ingen pligt til at videregive efter § 115",
                               "There is no duty to disclose under § 115"),
}

PURPOSE = {
    "PREVENTIVE_COORDINATION": ("Forebyggende samarbejde", "Preventive coordination"),
    "SUPPORT_PLANNING": ("Planlægning af støtte", "Support planning"),
    "RELEASE_PLANNING": ("Planlægning af løsladelse", "Release planning"),
    "EXTREMISM_RISK_ASSESSMENT": ("Vurdering af risiko for ekstremisme", "Extremism risk assessment"),
    "CRIMINAL_INVESTIGATION": ("Efterforskning", "Criminal investigation"),
    "PROSECUTION": ("Retsforfølgning", "Prosecution"),
    "CHILD_WELFARE_NOTIFICATION": ("Underretning om et barn", "Child welfare notification"),
    "OTHER_ADMIN": ("Anden forvaltningsopgave", "Other administrative task"),
    "STATISTICS": ("Statistik", "Statistics"),
}

CONTEXT = {
    "SSP": ("SSP (skole, socialforvaltning og politi)", "SSP (schools, social services and police)"),
    "PSP": ("PSP (psykiatri, socialforvaltning og politi)", "PSP (psychiatry, social services and police)"),
    "KSP": ("KSP (kriminalforsorg, socialforvaltning og politi)", "KSP (prison and probation, social services and police)"),
    "INFOHUS_KOMMUNE": ("Infohus (kommune)", "Infohus (municipality)"),
    "INFOHUS_NETVAERK": ("Infohusets netværk", "Infohus network"),
    "UNDERRETNING": ("Underretning", "Notification"),
    "PET_REQUEST": ("Anmodning fra PET", "Request from PET"),
    "NONE": ("Intet samarbejde", "No cooperation"),
}

CATEGORY = {
    "IDENTITY": ("Identitet", "Identity"),
    "ORDINARY": ("Almindelige personoplysninger", "Ordinary personal data"),
    "RENT_PRIVATE": ("Rent private forhold", "Purely private matters"),
    "HEALTH": ("Helbredsoplysninger", "Health data"),
    "BELIEFS_POLITICAL_RELIGIOUS": ("Politisk eller religiøs overbevisning", "Political or religious beliefs"),
    "CRIMINAL": ("Strafbare forhold", "Criminal offences"),
    "THIRD_PARTY": ("Oplysninger om tredjemand", "Data about third parties"),
    "AGGREGATE_NON_PERSONAL": ("Aggregerede, ikke-personhenførbare oplysninger", "Aggregate, non-personal data"),
}

# Rules that allow (P, A and L) and the steps that decide a DENY or an ESCALATE.
RULE = {
    "P1": ("SSP: politiet videregiver", "SSP: the police disclose"),
    "P2": ("SSP: en anden deltagende myndighed videregiver", "SSP: another participating authority discloses"),
    "P3": ("PSP: politiet videregiver", "PSP: the police disclose"),
    "P4": ("PSP: en anden deltagende myndighed videregiver", "PSP: another participating authority discloses"),
    "P5": ("KSP, litra a: dømt og anbragt i kriminalforsorgens institution",
           "KSP, (a): convicted and held in a prison and probation institution"),
    "P6": ("KSP, litra b: dømt under 18 år og anbragt efter § 78, stk. 2",
           "KSP, (b): convicted under 18 and placed under section 78(2)"),
    "P7": ("KSP, litra c: varetægtsfængslet og vurderet for radikalisering",
           "KSP, (c): remanded in custody and assessed for radicalisation"),
    "P8": ("Selvejende institution (§ 115, stk. 3)", "Self-governing institution (section 115(3))"),
    "P9": ("Infohus i kommunen", "Infohus in the municipality"),
    "A1": ("Gyldigt, udtrykkeligt samtykke", "Valid, explicit consent"),
    "A2": ("Underretning om et barn under 18", "Notification about a child under 18"),
    "A3": ("Kun aggregerede, ikke-personhenførbare oplysninger", "Only aggregate, non-personal data"),
    "L1": ("Afgjort ved juridisk kontrol", "Decided on legal review"),
    "C1": ("Deltager i samarbejdet", "Takes part in the cooperation"),
    "C2": ("Rollen er omfattet af samarbejdet", "The role is part of the cooperation"),
    "C3": ("Personkreds", "Scope of persons"),
    "C4": ("Nødvendighed og dataminimering", "Necessity and data minimisation"),
    "C5": ("Ingen private modtagere", "No private recipients"),
    "C6": ("Ingen pligt til videregivelse", "No duty to disclose"),
    "C7": ("Kendt og gyldig myndighed", "Known and valid authority"),
    "C8": ("Samarbejdets formål", "The cooperation's purposes"),
    "D0": ("Intet andet hjemmelsgrundlag", "No other legal basis"),
    "E1": ("PET er part", "PET is a party"),
    "E2": ("En udlændingemyndighed er part", "An immigration authority is a party"),
    "H1": ("Forbud mod efterforskning", "No disclosure for investigation"),
    "H2": ("Infohusets netværk udveksler ingen personoplysninger", "No personal data in the infohus network"),
    "H3": ("Videregivelse videre", "Onward disclosure"),
}

ROLE = {
    "legal_officer": ("Jurist", "Legal officer"),
    "auditor": ("Revisor", "Auditor"),
    "admin": ("Administrator", "Administrator"),
    "agency": ("Myndighedsbruger", "Agency user"),
}

KINDS = {"outcome": OUTCOME, "reason": REASON, "purpose": PURPOSE, "context": CONTEXT, "cooperation": CONTEXT,
         "category": CATEGORY, "rule": RULE, "role": ROLE}


def _index(lang: str) -> int:
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)} (got {lang!r})")
    return LANGS.index(lang)


def label(kind: str, code: str | None, lang: str = "da") -> str:
    """The label of ``code`` of this kind (outcome, reason, purpose, context, category, rule, role),
    or the code itself when it has none (empty for None)."""
    if not code:
        return ""
    if kind == "role" and code.startswith("agency:"):
        return f"{ROLE['agency'][_index(lang)]}: {authority(code[len('agency:'):])}"
    pair = KINDS[kind].get(code)
    return pair[_index(lang)] if pair else code


def labels(kind: str, codes: str | Iterable[str], lang: str = "da", sep: str = ", ") -> str:
    """Several codes (a list or a comma-separated string, as the read models keep categories)."""
    items = [c.strip() for c in codes.split(",")] if isinstance(codes, str) else list(codes)
    return sep.join(label(kind, c, lang) for c in items if c)


@lru_cache(maxsize=1)
def _directory():
    from policies.directory import Directory

    return Directory.load()


def authority(org_id: str | None) -> str:
    """An authority's name from the directory ("Kalundborg Kommune" for kommune:326); the id
    itself for an authority the directory does not know (an inline party of an old exchange)."""
    if not org_id:
        return ""
    org = _directory().org(org_id)
    return org.name if org else org_id


__all__ = ["LANGS", "OUTCOME", "REASON", "PURPOSE", "CONTEXT", "CATEGORY", "RULE", "ROLE", "label", "labels",
           "authority"]
