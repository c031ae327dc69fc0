"""The kinds of authority in the prevention model, as data: which roles each acts in and which events it sends.

An ``AgencyService`` is one authority's connection to the exchange: it publishes
the event types its kind may send (signed with its own key), and reads its inbox
and its receipts. Which kind an authority is comes from the shipped directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer

from policies.directory import Directory
from schemas.codec import AvroCodec
from services import topics
from services.agency import Inbox, Publisher, Sent, assign_from_start

P = "dk.xledger.payload."
RELEASE, INTAKE = P + "ReleaseNotice", P + "IntakeNotice"
CONCERN, CASE_NOTE, MEASURE = P + "ConcernReport", P + "CaseNote", P + "MeasureInitiated"
REFERRAL, ASSESSMENT, STATISTICS = P + "InfohusReferral", P + "InfohusAssessment", P + "AggregateStatistics"


@dataclass(frozen=True)
class AgencyKind:
    name: str
    description: str
    roles: tuple[str, ...]
    sends: tuple[str, ...]


KINDS: dict[str, AgencyKind] = {
    k.name: k
    for k in (
        AgencyKind("police_district", "Politikreds: SSP, PSP and KSP partner, convenes infohus",
                   ("POLICE",), (CONCERN, CASE_NOTE, REFERRAL, ASSESSMENT, MEASURE, STATISTICS)),
        AgencyKind("municipality", "Kommune: social services, schools, SSP unit, jobcentre, infohus coordinator",
                   ("MUNI_SOCIAL_CHILD", "MUNI_SOCIAL_ADULT", "MUNI_SCHOOL", "MUNI_SSP_UNIT", "MUNI_JOBCENTER",
                    "MUNI_OTHER"),
                   (CONCERN, CASE_NOTE, REFERRAL, ASSESSMENT, MEASURE, STATISTICS)),
        AgencyKind("kriminalforsorgen_prison", "Kriminalforsorgen: prison (… Fængsel)",
                   ("KRIMINALFORSORGEN",), (RELEASE, INTAKE, CASE_NOTE, MEASURE)),
        AgencyKind("kriminalforsorgen_arrest", "Kriminalforsorgen: remand prison (… Arrest)",
                   ("KRIMINALFORSORGEN",), (RELEASE, INTAKE, CASE_NOTE, MEASURE)),
        AgencyKind("kriminalforsorgen_kif", "Kriminalforsorgen i Frihed (KiF): probation, the usual KSP partner",
                   ("KRIMINALFORSORGEN",), (RELEASE, INTAKE, CASE_NOTE, MEASURE)),
        AgencyKind("kriminalforsorgen_area", "Kriminalforsorgen: area office",
                   ("KRIMINALFORSORGEN",), (RELEASE, INTAKE, CASE_NOTE, MEASURE)),
        AgencyKind("region", "Region: social and treatment psychiatry",
                   ("SOCIAL_PSYCH", "TREATMENT_PSYCH"), (CONCERN, CASE_NOTE, MEASURE)),
        AgencyKind("selvejende", "Self-governing institution doing public social, education or employment tasks",
                   ("SELF_GOV_SOCIAL", "SELF_GOV_EDU", "SELF_GOV_EMPLOY", "SELF_GOV_PSYCH"), (CONCERN, CASE_NOTE)),
        AgencyKind("national", "National actor (hotline, CDE, Rigspolitiet, …)",
                   ("POLICE", "PET", "OTHER_AUTHORITY", "IMMIGRATION_AUTH"), (CONCERN, STATISTICS)),
        AgencyKind("privat", "Private organisation (never a § 115 participant)", ("PRIVATE_ENTITY",), (CONCERN,)),
    )
}


class AgencyError(ValueError):
    pass


@dataclass
class AgencyService:
    """One authority acting in one of its roles."""

    org: str
    role: str
    kind: AgencyKind
    publisher: Publisher
    codec: AvroCodec = field(default_factory=AvroCodec)

    @classmethod
    def create(cls, directory: Directory, publisher: Publisher) -> "AgencyService":
        """The service for the publisher's authority and role, refused unless the directory has the
        authority, its kind has a service, and it acts in that role."""
        org, role = publisher.org, publisher.role
        entry = directory.org(org)
        if entry is None:
            raise AgencyError(f"{org!r} is not in the directory of authorities")
        kind = KINDS.get(entry.kind or "")
        if kind is None:
            raise AgencyError(f"{org!r} has kind {entry.kind!r}, which has no agency service")
        if role not in {r.value for r in entry.roles}:
            raise AgencyError(f"{org!r} does not act as {role} (its roles: {sorted(r.value for r in entry.roles)})")
        return cls(org, role, kind, publisher, publisher.codec)

    def publish(self, **request: Any) -> Sent:
        self._check_sends(request.get("payload_type"))
        return self.publisher.publish(**request)

    def send(self, **request: Any):
        self._check_sends(request.get("payload_type"))
        return self.publisher.send(**request)

    def _check_sends(self, payload_type: Any) -> None:
        if payload_type not in self.kind.sends:
            raise AgencyError(
                f"a {self.kind.name} does not send {payload_type!r}; it sends {[t.rsplit('.', 1)[1] for t in self.kind.sends]}"
            )


def open_inbox(org: str, consumer: KafkaConsumer, codec: AvroCodec | None = None) -> Inbox:
    inbox = Inbox(org, consumer, codec or AvroCodec())
    inbox.assign_from_start()
    return inbox


def open_receipts(org: str, consumer: KafkaConsumer) -> KafkaConsumer:
    return assign_from_start(consumer, topics.receipts(org))
