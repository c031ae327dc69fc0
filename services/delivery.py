"""The delivery relay: the ledger's notification log is the outbox.

For every decided exchange it publishes the allowed payload, unchanged, to each
allowed recipient's inbox, and a receipt for every recipient to the sender (an
ESCALATE's receipt says it awaits legal review). For every legal officer's verdict
that closes an escalation it does the same with the verdict's result: the payload to
the inbox on approval, and a review receipt either way.
Publishing happens before the bookkeeping, so a crash in between re-sends;
delivery ids are stable, so the receiver recognises the re-send.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from uuid import UUID

from eventsourcing.persistence import Notification
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ledger.application import LEDGER_UNAVAILABLE, IntegrityError, Ledger, Tracking
from ledger.domain import Delivery, delivery_id, sealed_message_aad
from ledger.privacy import LedgerSealer, SubjectErased
from schemas.codec import AvroCodec
from services import topics
from services.escalations import AWAITING_REVIEW, OPEN, REVIEW_RECEIPT
from services.logging import get_logger

log = get_logger(__name__)

OUTBOX_TRACKING = "outbox:delivery-relay"
_REQUESTED = "Exchange.Requested"
_DECIDED = "Exchange.Decided"
_VERDICT = "Exchange.EscalationVerdict"


@dataclass(frozen=True)
class DecidedExchange:
    """What the relay needs of one exchange: its Requested event's fields and the decision."""

    id: UUID
    sender: str
    message_id: str
    subject: str
    summary: dict[str, Any]
    sealed_message: str
    decision: dict[str, Any]

    @classmethod
    def of(cls, requested: Any, decision: dict[str, Any]) -> DecidedExchange:
        return cls(requested.originator_id, requested.sender, requested.message_id, requested.subject,
                   requested.summary, requested.sealed_message, decision)


@dataclass
class DeliveryRelay:
    ledger: Ledger
    producer: KafkaProducer
    sealer: LedgerSealer
    codec: AvroCodec = field(default_factory=AvroCodec)
    page_size: int = 500
    stats: dict[str, int] = field(default_factory=lambda: {"inbox": 0, "receipts": 0, "undeliverable": 0})
    stopping: threading.Event = field(default_factory=threading.Event)
    # Folds new entries into the Merkle tree (signing checkpoints) and the read models:
    # the relay already follows the log, so it keeps what is derived from it current.
    # One bounded step runs whenever the relay is idle, under a backlog every
    # ``maintain_every`` seconds, and after every page while it is behind; so deliveries
    # wait at most one step, and derived data keeps pace with any rate. It returns whether
    # everything derived is current (False: "call me again").
    maintain: Callable[[], Any] | None = None
    maintain_every: float = 1.0

    def run_once(self) -> int:
        """Relays one page of the outbox; returns how many notifications it consumed."""
        start = (self.ledger.position(OUTBOX_TRACKING) or 0) + 1
        page = self.ledger.notifications(start, self.page_size)
        if not page:
            return 0  # nothing new in the log, so nothing derived from it can be stale
        decided = self._decided(page)
        resolved = self._resolved(page)
        allowed = {ex.subject for ex in decided + resolved
                   if any(r["outcome"] == "ALLOW" for r in ex.decision["results"])}
        deliveries: list[Delivery] = []
        with self.sealer.batch(allowed, create=False) as sealer:
            for exchange in decided:
                deliveries.extend(self._relay(exchange, sealer))
            for exchange in resolved:
                deliveries.extend(self._relay(exchange, sealer, receipt_kind=REVIEW_RECEIPT))
        self.producer.flush()
        try:
            self.ledger.record(deliveries, Tracking(OUTBOX_TRACKING, page[-1].id))
        except IntegrityError:
            # Another relay recorded this page: what we re-sent carries the same delivery ids.
            log.warning("relay.page_already_recorded", first=page[0].id, last=page[-1].id)
            return len(page)
        log.info("relay.page_recorded", first=page[0].id, last=page[-1].id, deliveries=len(deliveries))
        return len(page)

    def _decided(self, page: list[Notification]) -> list[DecidedExchange]:
        """The exchanges decided in this page, read from the page's own events.

        The gate records an exchange's Requested and Decided events together, so the
        Requested event is nearly always in the same page; only at a page boundary is it
        read back from the store. No aggregate is reconstructed.
        """
        requested: dict[UUID, Notification] = {}
        out: list[DecidedExchange] = []
        to_event = self.ledger.mapper.to_domain_event
        for n in page:
            if n.topic.endswith(_REQUESTED):
                requested[n.originator_id] = n
            elif n.topic.endswith(_DECIDED):
                first = requested.get(n.originator_id)
                req = to_event(first) if first is not None else self.ledger.first_event(n.originator_id)
                out.append(DecidedExchange.of(req, to_event(n).decision))
        return out

    def _resolved(self, page: list[Notification]) -> list[DecidedExchange]:
        """Escalations closed by a verdict in this page, each as an exchange whose decision holds
        only the verdict's result (and the original decision's policy version and digest)."""
        out: list[DecidedExchange] = []
        to_event = self.ledger.mapper.to_domain_event
        for n in page:
            if not n.topic.endswith(_VERDICT):
                continue
            verdict = to_event(n).verdict
            if verdict.get("status", OPEN) == OPEN or not verdict.get("result"):
                continue  # an approval that waits for a second officer
            decision = {"policy_version": verdict["policy_version"], "request_digest": verdict["request_digest"],
                        "results": [verdict["result"]]}
            out.append(DecidedExchange.of(self.ledger.first_event(n.originator_id), decision))
        return out

    def run(self, *, idle_stop_after: float | None = None, poll_interval: float = 0.1) -> dict[str, int]:
        idle_since = time.monotonic()
        backoff = 0.5
        stale, behind, maintained_at = True, False, time.monotonic()
        while not self.stopping.is_set():
            try:
                consumed = self.run_once()
                backoff = 0.5
            except (KafkaError, *LEDGER_UNAVAILABLE) as exc:
                # Nothing of the page was recorded: it is read and sent again (same delivery ids).
                log.warning("relay.broker_unavailable" if isinstance(exc, KafkaError) else "relay.ledger_unavailable",
                            error=type(exc).__name__, retry_in_s=backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            stale = stale or bool(consumed)
            # Idle, a step left over from last time, or a second since the last step: one bounded step.
            if self.maintain is not None and stale and (
                    not consumed or behind or time.monotonic() - maintained_at >= self.maintain_every):
                try:
                    behind = self.maintain() is False
                    stale, maintained_at = behind, time.monotonic()
                except LEDGER_UNAVAILABLE as exc:
                    log.warning("relay.ledger_unavailable", error=type(exc).__name__, retry_in_s=backoff)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            if consumed:
                idle_since = time.monotonic()
                continue
            if idle_stop_after is not None and time.monotonic() - idle_since > idle_stop_after:
                break
            self.stopping.wait(poll_interval)
        return self.stats

    def stop(self) -> None:
        self.stopping.set()

    # -- one decided exchange ------------------------------------------------------------

    def _relay(self, exchange: DecidedExchange, sealer: LedgerSealer, receipt_kind: str = "receipt") -> list[Delivery]:
        decision = exchange.decision
        out: list[Delivery] = []
        payload: dict[str, Any] | None = None
        for result in decision["results"]:
            recipient = result["recipient"]
            if result["outcome"] == "ALLOW":
                if payload is None:
                    payload = self._open_payload(exchange, sealer)
                if payload is None:
                    self.stats["undeliverable"] += 1
                    out.append(self._bookkeep(exchange, recipient, "inbox", "UNDELIVERABLE_ERASED"))
                else:
                    out.append(self._deliver(exchange, result, payload))
            out.append(self._receipt(exchange, result, decision, receipt_kind))
        return out

    def _open_payload(self, exchange: DecidedExchange, sealer: LedgerSealer) -> dict[str, Any] | None:
        try:
            raw = sealer.open(exchange.subject, exchange.sealed_message, sealed_message_aad(exchange.id))
        except SubjectErased:
            log.warning("relay.subject_erased", exchange=str(exchange.id))
            return None
        signed = self.codec.decode(raw, expect="dk.xledger.SignedMessage").record
        envelope = self.codec.decode(signed["body"], expect="dk.xledger.ExchangeRequest").record
        return {"payload_type": envelope["payload_type"], "payload": envelope["payload"]}

    def _deliver(self, exchange: DecidedExchange, result: dict[str, Any], payload: dict[str, Any]) -> Delivery:
        recipient = result["recipient"]
        did = str(delivery_id(exchange.id, recipient, "inbox"))
        s = exchange.summary
        record = {
            "delivery_id": did,
            "exchange_id": str(exchange.id),
            "message_id": exchange.message_id,
            "sender": {"org": s["sender"]["org"], "role": s["sender"]["role"]},
            "recipient": recipient,
            "context": s["context"],
            "cooperation_id": s["cooperation_id"],
            "purpose": s["purpose"],
            "occurred_at": s["occurred_at"],
            "rule": result["rule"],
            "via": result.get("via"),
            "citation": result["citation"],
            "warnings": list(result.get("warnings") or []),
            "policy_version": exchange.decision["policy_version"],
            "subject_pseudonym": exchange.subject,
            "payload_type": payload["payload_type"],
            "payload": payload["payload"],
        }
        topic = topics.inbox(recipient)
        self.producer.send(
            topic, key=exchange.subject.encode(), value=self.codec.encode("dk.xledger.DeliveredExchange", record),
            headers=[("x-delivery-id", did.encode())],
        )
        self.stats["inbox"] += 1
        return self._bookkeep(exchange, recipient, "inbox", "PUBLISHED", topic)

    def _receipt(self, exchange: DecidedExchange, result: dict[str, Any], decision: dict[str, Any],
                 kind: str = "receipt") -> Delivery:
        recipient = result["recipient"]
        rid = str(delivery_id(exchange.id, recipient, kind))
        warnings = list(result.get("warnings") or [])
        if result["outcome"] == "ESCALATE":
            warnings.append(AWAITING_REVIEW)
        record = {
            "receipt_id": rid,
            "exchange_id": str(exchange.id),
            "message_id": exchange.message_id,
            "recipient": recipient,
            "outcome": result["outcome"],
            "rule": result.get("rule"),
            "via": result.get("via"),
            "reason": result.get("reason"),
            "citation": result.get("citation"),
            "warnings": warnings,
            "policy_version": decision["policy_version"],
            "request_digest": decision["request_digest"],
        }
        topic = topics.receipts(exchange.sender)
        self.producer.send(
            topic, key=exchange.subject.encode(), value=self.codec.encode("dk.xledger.DecisionReceipt", record),
            headers=[("x-delivery-id", rid.encode())],
        )
        self.stats["receipts"] += 1
        return self._bookkeep(exchange, recipient, kind, "PUBLISHED", topic)

    @staticmethod
    def _bookkeep(exchange: DecidedExchange, recipient: str, kind: str, outcome: str, topic: str = "") -> Delivery:
        return Delivery(exchange=str(exchange.id), recipient=recipient, kind=kind, topic=topic, outcome=outcome)
