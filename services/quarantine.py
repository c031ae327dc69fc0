"""Quarantined deliveries: list them, and make them once the cause is fixed.

The relay records a ``QuarantinedDelivery`` for a delivery it could not make (see
``services.delivery``). ``retry`` rebuilds each record from the ledger exactly as the
relay would have, publishes it under the same delivery id, and records the ``Delivery``
together with the quarantine's release in one transaction. A retry that fails again is
recorded as such; the delivery stays in quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable
from uuid import UUID

from eventsourcing.utils import get_topic
from kafka import KafkaProducer

from ledger.application import IntegrityError, Ledger
from ledger.domain import QuarantinedDelivery, quarantine_id
from ledger.privacy import LedgerSealer, SubjectErased
from schemas.codec import AvroCodec
from services.delivery import (DecidedExchange, Messages, Outgoing, RejectedRequest, Target, Undeliverable,
                               closing_decision, delivered, publish)
from services.escalations import REVIEW_RECEIPT
from services.logging import get_logger

log = get_logger(__name__)

_TOPICS = [get_topic(QuarantinedDelivery.Quarantined), get_topic(QuarantinedDelivery.RetryFailed),
           get_topic(QuarantinedDelivery.Released)]


@dataclass
class Quarantined:
    """One delivery in quarantine: where it should go, why it did not, since when."""

    delivery: str
    exchange: str
    recipient: str
    kind: str
    reason: str
    detail: str
    attempts: int
    since: datetime
    last_attempt: datetime

    @property
    def target(self) -> Target:
        return Target(self.exchange, self.recipient, self.kind)

    def to_dict(self) -> dict:
        return {"delivery_id": self.delivery, "exchange_id": self.exchange, "recipient": self.recipient,
                "kind": self.kind, "reason": self.reason, "detail": self.detail, "attempts": self.attempts,
                "since": self.since.isoformat(), "last_attempt": self.last_attempt.isoformat()}


def in_quarantine(ledger: Ledger) -> list[Quarantined]:
    """The deliveries quarantined and not yet made, oldest first (read from the log, nothing else)."""
    found: dict[UUID, Quarantined] = {}
    to_event = ledger.mapper.to_domain_event
    for n in ledger.all_notifications(topics=_TOPICS):
        e = to_event(n)
        if n.topic == _TOPICS[0]:
            found[n.originator_id] = Quarantined(e.delivery, e.exchange, e.recipient, e.kind, e.reason, e.detail, 1,
                                                 e.timestamp, e.timestamp)
        elif n.topic == _TOPICS[1] and n.originator_id in found:
            q = found[n.originator_id]
            q.reason, q.detail, q.attempts, q.last_attempt = e.reason, e.detail, q.attempts + 1, e.timestamp
        else:
            found.pop(n.originator_id, None)
    return list(found.values())


@dataclass
class RetryReport:
    delivered: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)  # the subject was erased meanwhile: nothing to deliver
    failed: list[tuple[str, str]] = field(default_factory=list)  # (delivery id, reason)
    already: list[str] = field(default_factory=list)  # made meanwhile by another retry

    @property
    def ok(self) -> bool:
        return not self.failed


class QuarantineRetry:
    def __init__(self, ledger: Ledger, producer: KafkaProducer, sealer: LedgerSealer, codec: AvroCodec):
        self.ledger, self.producer, self.sealer = ledger, producer, sealer
        self.messages = Messages(codec)

    def retry(self, deliveries: Iterable[str] | None = None) -> RetryReport:
        """Retries every quarantined delivery, or only those with these delivery ids."""
        wanted = None if deliveries is None else set(deliveries)
        report = RetryReport()
        for q in in_quarantine(self.ledger):
            if wanted is None or q.delivery in wanted:
                self._retry(q, report)
        return report

    def _retry(self, q: Quarantined, report: RetryReport) -> None:
        quarantine = self.ledger.repository.get(quarantine_id(UUID(q.delivery)))
        try:
            outgoing = self._rebuild(q.target)
            failure = publish(self.producer, [outgoing])[0]
        except SubjectErased:
            outgoing, failure = None, None
        except Undeliverable as exc:
            outgoing, failure = None, exc
        if failure is not None:
            quarantine.retry_failed(failure.reason, failure.detail)
            self.ledger.record([quarantine])
            log.error("relay.retry_failed", alert=True, delivery=q.delivery, reason=failure.reason,
                      detail=failure.detail)
            report.failed.append((q.delivery, failure.reason))
            return
        outcome = "PUBLISHED" if outgoing is not None else "UNDELIVERABLE_ERASED"
        quarantine.release(outcome)
        try:
            self.ledger.record([delivered(q.target, outcome, outgoing.topic if outgoing else ""), quarantine])
        except IntegrityError:
            report.already.append(q.delivery)
            return
        log.info("relay.quarantine_released", delivery=q.delivery, outcome=outcome)
        (report.delivered if outgoing is not None else report.erased).append(q.delivery)

    @staticmethod
    def _decision_for(aggregate, target: Target) -> dict:
        """The decision the relay acted on for this delivery: the gate's, or for a review receipt and
        for an inbox delivery after approval, the closing verdict's result for that recipient."""
        if target.kind == "receipt":
            return aggregate.decision
        for verdict in reversed(aggregate.verdicts):
            closing = closing_decision(verdict)
            if closing is not None and closing["results"][0]["recipient"] == target.recipient:
                return closing
        return aggregate.decision

    def _rebuild(self, target: Target) -> Outgoing:
        """The record the relay would have sent for this delivery, from the ledger."""
        first = self.ledger.first_event(UUID(target.exchange))
        if target.kind == "receipt" and target.recipient == "":
            rejected = RejectedRequest.of(first)
            if rejected is None:
                raise Undeliverable("NOT_ATTRIBUTABLE", "the rejection names no verified sender")
            return self.messages.rejected_receipt(rejected)
        aggregate = self.ledger.get_exchange(UUID(target.exchange))
        exchange = DecidedExchange.of(first, self._decision_for(aggregate, target))
        result = next((r for r in exchange.decision["results"] if r["recipient"] == target.recipient), None)
        if result is None:
            raise Undeliverable("NO_SUCH_RECIPIENT", "the decision has no result for this recipient")
        if target.kind in ("receipt", REVIEW_RECEIPT):
            return self.messages.receipt(exchange, result, target.kind)
        with self.sealer.batch({exchange.subject}, create=False) as sealer:
            return self.messages.inbox(exchange, result, self.messages.open_payload(exchange, sealer))
