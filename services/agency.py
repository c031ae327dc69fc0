"""An authority's side of the exchange: publish signed requests, read the inbox and the receipts.

One class per role of the conversation, not per authority type: a police
district, a municipality or Kriminalforsorgen all publish through ``Publisher``
and read through ``Inbox``; what differs between them is data (org id, role,
payload types), which ``services.simulators`` supplies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.codec import AvroCodec
from schemas.cpr import ordering_key
from schemas.validation import CPR_FIELD
from services import topics
from services.logging import get_logger
from services.signing import sign

log = get_logger(__name__)

SUBJECT_FACTS = (
    "age", "socially_vulnerable", "crime_risk", "convicted", "custody_status", "release_date", "radicalisation_assessed",
)


@dataclass(frozen=True)
class Sent:
    message_id: str
    ordering_key: str | None  # the Kafka key: schemas.cpr.ordering_key of the CPR number, None without one
    partition: int
    offset: int


class Publisher:
    """Publishes signed exchange requests for one authority acting in one role.

    It holds the authority's signing key and nothing else secret: the gate derives the subject
    pseudonym, and the Kafka key is the public ordering bucket of the CPR number.
    """

    def __init__(
        self,
        org: str,
        role: str,
        *,
        producer: KafkaProducer,
        key: Ed25519PrivateKey,
        key_id: str,
        codec: AvroCodec | None = None,
    ):
        self.org, self.role = org, role
        self.producer = producer
        self.key, self.key_id = key, key_id
        self.codec = codec or AvroCodec()

    def envelope(
        self,
        *,
        payload_type: str,
        payload: dict[str, Any],
        recipients: Iterable[tuple[str, str]],
        context: str,
        purpose: str,
        data_categories: Iterable[str],
        subject: dict[str, Any] | None = None,
        cooperation_id: str | None = None,
        underlying_basis: str | None = None,
        necessity: str | None = None,
        third_party_justification: str | None = None,
        mandatory: bool = False,
        provenance: dict[str, Any] | None = None,
        consent: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        facts = {k: v for k, v in (subject or {}).items() if k in SUBJECT_FACTS}
        unknown = set(subject or {}) - set(SUBJECT_FACTS)
        if unknown:
            raise ValueError(f"unknown subject facts: {sorted(unknown)}")
        return {
            "message_id": message_id or str(uuid.uuid4()),
            "occurred_at": (occurred_at or datetime.now(timezone.utc)).isoformat(),
            "sender": {"org": self.org, "role": self.role},
            "recipients": [{"org": org, "role": role} for org, role in recipients],
            "context": context,
            "underlying_basis": underlying_basis,
            "cooperation_id": cooperation_id,
            "purpose": purpose,
            "subject": facts,
            "data_categories": list(data_categories),
            "necessity": necessity,
            "third_party_justification": third_party_justification,
            "mandatory": mandatory,
            "provenance": provenance,
            "consent": consent,
            "payload_type": payload_type,
            "payload": self.codec.encode(payload_type, payload),
        }

    def signed_bytes(self, envelope: dict[str, Any]) -> bytes:
        body = self.codec.encode("dk.xledger.ExchangeRequest", envelope)
        return self.codec.encode(
            "dk.xledger.SignedMessage",
            {"signer": self.org, "key_id": self.key_id, "signature": sign(body, self.key), "body": body},
        )

    def publish(self, **request: Any) -> Sent:
        """Publishes one request and waits until the broker has it."""
        message_id, key, future = self.send(**request)
        meta = future.get(timeout=30)
        log.info("agency.published", org=self.org, message_id=message_id, partition=meta.partition, offset=meta.offset)
        return Sent(message_id, key, meta.partition, meta.offset)

    def send(self, **request: Any):
        """Publishes without waiting; returns (message_id, Kafka key, future). Call producer.flush() after a burst."""
        envelope = self.envelope(**request)
        key = request_key(envelope["payload_type"], request["payload"])
        future = self.producer.send(topics.REQUESTS, key=key.encode() if key else None,
                                    value=self.signed_bytes(envelope))
        return envelope["message_id"], key, future


def request_key(payload_type: str, payload: dict[str, Any]) -> str | None:
    """The Kafka key of a request: the CPR number's ordering bucket, so one person's requests stay in
    order; none for a payload about no person (any partition will do)."""
    cpr_field = CPR_FIELD.get(payload_type)
    return ordering_key(payload[cpr_field]) if cpr_field else None


@dataclass
class Received:
    delivery_id: str
    record: dict[str, Any]
    payload_type: str
    payload: dict[str, Any]


@dataclass
class Inbox:
    """Reads one authority's inbox and ignores deliveries it has already seen (delivery ids are stable)."""

    org: str
    consumer: KafkaConsumer
    codec: AvroCodec = field(default_factory=AvroCodec)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0

    @property
    def topic(self) -> str:
        return topics.inbox(self.org)

    def assign_from_start(self) -> None:
        assign_from_start(self.consumer, self.topic)

    def poll(self, timeout_ms: int = 500) -> list[Received]:
        out: list[Received] = []
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            for msg in batch:
                record = self.codec.decode(msg.value, expect="dk.xledger.DeliveredExchange").record
                if record["delivery_id"] in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add(record["delivery_id"])
                payload = self.codec.decode(record["payload"]).record
                out.append(Received(record["delivery_id"], record, record["payload_type"], payload))
        return out


def assign_from_start(consumer: KafkaConsumer, topic: str) -> KafkaConsumer:
    """Reads every partition of ``topic`` from its beginning, outside any consumer group."""
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


def read_receipts(consumer: KafkaConsumer, org: str, codec: AvroCodec | None = None, timeout_ms: int = 500) -> list[dict]:
    codec = codec or AvroCodec()
    out = []
    for batch in consumer.poll(timeout_ms=timeout_ms).values():
        for msg in batch:
            out.append(codec.decode(msg.value, expect="dk.xledger.DecisionReceipt").record)
    return out


def today_utc() -> date:
    return datetime.now(timezone.utc).date()
