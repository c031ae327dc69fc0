"""The delivery relay: the ledger's notification log is the outbox.

For every decided exchange it publishes the allowed payload, unchanged, to each
allowed recipient's inbox, and a receipt for every recipient to the sender (an
ESCALATE's receipt says it awaits legal review); for every rejected message whose
sender's signature verified, one REJECTED receipt. For every legal officer's verdict
that closes an escalation it does the same with the verdict's result: the payload to
the inbox on approval, and a review receipt either way.
Publishing happens before the bookkeeping, so a crash in between re-sends;
delivery ids are stable, so the receiver recognises the re-send. The bookkeeping of a page
is one ``DeliveryPage`` entry listing its deliveries, recorded with the page's tracking
position in one transaction (and indexed by delivery id, so none is recorded twice).

Each page it recorded is handed, with the events decoded for it, to the read models
(``project``), which then need not decode them again; they catch up by themselves otherwise.
Events are decoded as dicts of their attributes (``ledger.transcoder.event_state``): only
those of the kinds it acts on, no event objects, and without the decisions' policy traces, which
neither the relay nor the read models read (``traces=False``: read as empty lists).

A delivery that cannot be made (the sealed payload does not open or decode, the
broker refuses the record) is quarantined: recorded in the ledger as a
``QuarantinedDelivery`` with its reason and logged as an alert, while the relay
goes on with everything else. ``services.quarantine`` makes it later, under the
same delivery id, once the cause is fixed.
"""

from __future__ import annotations

import re
import threading
import time
from itertools import chain
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Callable, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Notification
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ledger.application import LEDGER_UNAVAILABLE, IntegrityError, Ledger, Tracking
from ledger.domain import Delivery, DeliveryPage, QuarantinedDelivery, delivery_id_text, sealed_message_aad
from ledger.privacy import DecryptionError, LedgerSealer, SubjectErased
from ledger.transcoder import event_state
from schemas.codec import AvroCodec, CodecError
from services import topics
from services.dead_letters import TOO_LARGE
from services.escalations import AWAITING_REVIEW, OPEN, REVIEW_RECEIPT
from services.logging import get_logger

log = get_logger(__name__)
_new = object.__new__

OUTBOX_TRACKING = "outbox:delivery-relay"
# The gate records an exchange as one RequestDecided event; older ledgers hold a Requested and a Decided.
_REQUEST_DECIDED = "Exchange.RequestDecided"
_REQUESTED = "Exchange.Requested"
_DECIDED = "Exchange.Decided"
_REJECTED = "RejectedMessage.Rejected"
_VERDICT = "Exchange.EscalationVerdict"
# How long the relay waits for the broker to confirm a page's records after flushing.
CONFIRM_TIMEOUT_S = 30.0


class Target(NamedTuple):
    """Where one delivery goes; its id is stable, so a re-send is recognised."""

    exchange: str  # the exchange's id, or the rejection's for a REJECTED receipt
    recipient: str  # "" for a REJECTED receipt: it answers the whole request
    kind: str  # "inbox", "receipt", or "review-receipt" (the receipt after a legal officer's verdict)

    @property
    def delivery_id(self) -> str:
        return _delivery_id(self.exchange, self.recipient, self.kind)


@lru_cache(maxsize=8192)
def _delivery_id(exchange: str, recipient: str, kind: str) -> str:
    # A delivery's id is asked for three times on its way (record, header, bookkeeping): a uuid5 each.
    return delivery_id_text(exchange, recipient, kind)


@dataclass(frozen=True)
class Outgoing:
    """One record ready to send, and the delivery it makes."""

    target: Target
    topic: str
    key: bytes
    value: bytes


class Undeliverable(Exception):
    """This one delivery cannot be made now; ``reason`` is a stable code, ``detail`` holds no personal data."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class DecidedExchange:
    """What the relay needs of one exchange: its request's fields (of its RequestDecided event, or of a
    Requested one in older ledgers) and the decision."""

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

    @classmethod
    def of_state(cls, requested: dict[str, Any], decision: dict[str, Any]) -> DecidedExchange:
        """From the request's event's attributes (``event_state``). The relay makes one per exchange:
        its fields are filled as the frozen dataclass's ``__init__`` fills them (the same ``__dict__``,
        in field order), without that ``__init__``'s ``object.__setattr__`` per field."""
        exchange = _new(cls)
        exchange.__dict__.update(
            id=requested["originator_id"], sender=requested["sender"], message_id=requested["message_id"],
            subject=requested["subject"], summary=requested["summary"], sealed_message=requested["sealed_message"],
            decision=decision,
        )
        return exchange

    @cached_property
    def id_text(self) -> str:
        """``str(self.id)``, written out once: each delivery, the inbox copy's aad and the records name it."""
        return str(self.id)


@dataclass(frozen=True)
class RejectedRequest:
    """What the relay needs of a rejection whose sender is known: the event's fields."""

    id: UUID
    sender: str
    message_id: str
    reason: str
    detail: str
    message_digest: str

    @classmethod
    def of(cls, event: Any) -> RejectedRequest | None:
        return cls.of_state(vars(event))

    @classmethod
    def of_state(cls, event: dict[str, Any]) -> RejectedRequest | None:
        """From the Rejected event's attributes (``vars(event)`` or ``event_state``)."""
        sender = event.get("sender")  # absent in rejections recorded before receipts for them
        if not sender:
            return None
        return cls(event["originator_id"], sender, event.get("message_id") or "", event["reason"], event["detail"],
                   event["message_digest"])


# CPR-like digit runs: a detail is built from field names, but this keeps any value out for certain.
_CPR_LIKE = re.compile(r"\d{6}-?\d{4}")
DETAIL_MAX = 500


def receipt_detail(detail: str) -> str:
    """A rejection's detail as a receipt may carry it: bounded, with anything like a CPR number masked."""
    text = _CPR_LIKE.sub("[masked]", detail)
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


class Messages:
    """Builds the records of deliveries: inbox deliveries, receipts and REJECTED receipts."""

    def __init__(self, codec: AvroCodec):
        self.codec = codec

    def open_payload(self, exchange: DecidedExchange, sealer: LedgerSealer) -> dict[str, Any]:
        """The payload as sent; SubjectErased when erased, Undeliverable when it cannot be read."""
        try:
            raw = sealer.open(exchange.subject, exchange.sealed_message, sealed_message_aad(exchange.id_text))
        except SubjectErased:
            raise
        except DecryptionError as exc:
            raise Undeliverable("SEALED_MESSAGE_UNREADABLE", str(exc)) from None
        except ValueError as exc:  # the stored text is not base64
            raise Undeliverable("SEALED_MESSAGE_UNREADABLE", type(exc).__name__) from None
        try:
            signed = self.codec.decode(raw, expect="dk.xledger.SignedMessage").record
            # The whole envelope, read as the gate read it: a reader that skips the other fields
            # follows an array block's byte size, which the full read ignores, so a crafted envelope
            # could give it another payload than the one the gate decided (review, 2026-12-01).
            envelope = self.codec.decode(signed["body"], expect="dk.xledger.ExchangeRequest").record
        except CodecError as exc:
            raise Undeliverable("PAYLOAD_UNDECODABLE", exc.reason) from None
        return {"payload_type": envelope["payload_type"], "payload": envelope["payload"]}

    def inbox(self, exchange: DecidedExchange, result: dict[str, Any], payload: dict[str, Any]) -> Outgoing:
        recipient = result["recipient"]
        target = Target(exchange.id_text, recipient, "inbox")
        s = exchange.summary
        record = {
            "delivery_id": target.delivery_id,
            "exchange_id": target.exchange,
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
        return self._outgoing(target, topics.inbox(recipient), exchange.subject, "dk.xledger.DeliveredExchange", record)

    def receipt(self, exchange: DecidedExchange, result: dict[str, Any], kind: str = "receipt") -> Outgoing:
        target = Target(exchange.id_text, result["recipient"], kind)
        decision = exchange.decision
        warnings = list(result.get("warnings") or [])
        if result["outcome"] == "ESCALATE":
            warnings.append(AWAITING_REVIEW)
        record = {
            "receipt_id": target.delivery_id,
            "exchange_id": target.exchange,
            "message_id": exchange.message_id,
            "recipient": result["recipient"],
            "outcome": result["outcome"],
            "rule": result.get("rule"),
            "via": result.get("via"),
            "reason": result.get("reason"),
            "citation": result.get("citation"),
            "warnings": warnings,
            "policy_version": decision["policy_version"],
            "request_digest": decision["request_digest"],
        }
        return self._outgoing(target, topics.receipts(exchange.sender), exchange.subject, "dk.xledger.DecisionReceipt",
                              record)

    def rejected_receipt(self, rejected: RejectedRequest) -> Outgoing:
        target = Target(str(rejected.id), "", "receipt")
        record = {
            "receipt_id": target.delivery_id,
            "exchange_id": str(rejected.id),
            "message_id": rejected.message_id,
            "recipient": "",
            "outcome": "REJECTED",
            "reason": rejected.reason,
            "detail": receipt_detail(rejected.detail),
            "request_digest": rejected.message_digest,
        }
        # No subject was established for a rejected request: keyed by the sender's message id.
        return self._outgoing(target, topics.receipts(rejected.sender), rejected.message_id,
                              "dk.xledger.DecisionReceipt", record)

    def _outgoing(self, target: Target, topic: str, key: str, schema: str, record: dict[str, Any]) -> Outgoing:
        try:
            # built=True: every record here is built above from the ledger's own events, which the gate
            # wrote from a validated envelope; fastavro's writer still refuses every value of these two
            # schemas it would write wrong, and the codec then names the field (AvroCodec.encode). ~5 µs
            # a record less.
            value = self.codec.encode(schema, record, built=True)
        except CodecError as exc:
            raise Undeliverable("ENCODE_FAILED", exc.reason) from None
        # Outgoing(target, topic, key.encode(), value), filled as its frozen __init__ fills it: one per record.
        out = _new(Outgoing)
        out.__dict__.update(target=target, topic=topic, key=key.encode(), value=value)
        return out


def publish(producer: KafkaProducer, items: list[Outgoing], timeout_s: float = CONFIRM_TIMEOUT_S,
            ) -> list[Undeliverable | None]:
    """Sends every item and waits until the broker stored it: per item None, or why the broker refused it.

    A refusal that may pass (the broker unreachable, a leader moving) raises KafkaError instead:
    the caller sends everything again later, under the same delivery ids.
    """
    futures: list[Any] = []
    for item in items:
        try:
            futures.append(producer.send(item.topic, key=item.key, value=item.value,
                                         headers=[("x-delivery-id", item.target.delivery_id.encode())]))
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise
            futures.append(Undeliverable(_refusal_reason(exc), type(exc).__name__))
    producer.flush(timeout=timeout_s)
    outcomes: list[Undeliverable | None] = []
    for future in futures:
        if isinstance(future, Undeliverable):
            outcomes.append(future)
            continue
        try:
            future.get(timeout=timeout_s)
            outcomes.append(None)
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise
            outcomes.append(Undeliverable(_refusal_reason(exc), type(exc).__name__))
    return outcomes


def _refusal_reason(exc: KafkaError) -> str:
    return "RECORD_TOO_LARGE" if isinstance(exc, TOO_LARGE) else "PUBLISH_REFUSED"


def quarantined(target: Target, failure: Undeliverable) -> QuarantinedDelivery:
    log.error("relay.delivery_quarantined", alert=True, delivery=target.delivery_id, exchange=target.exchange,
              recipient=target.recipient, kind=target.kind, reason=failure.reason, detail=failure.detail)
    return QuarantinedDelivery(delivery=target.delivery_id, exchange=target.exchange, recipient=target.recipient,
                               kind=target.kind, reason=failure.reason, detail=failure.detail)


class Made(NamedTuple):
    """A delivery for the page's bookkeeping: published, or not to be made (the subject was erased)."""

    target: Target
    outcome: str  # "PUBLISHED" or "UNDELIVERABLE_ERASED"
    topic: str = ""

    def entry(self) -> dict[str, str]:
        t = self.target
        return {"delivery_id": t.delivery_id, "exchange": t.exchange, "recipient": t.recipient, "kind": t.kind,
                "topic": self.topic, "outcome": self.outcome}


def delivered(target: Target, outcome: str, topic: str = "") -> Delivery:
    """One delivery's bookkeeping on its own (a quarantine retry that made it)."""
    return Delivery(exchange=target.exchange, recipient=target.recipient, kind=target.kind, topic=topic,
                    outcome=outcome)


def closing_decision(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """What the relay acts on for a verdict that closes an escalation: a decision holding only the
    verdict's result, with the original decision's policy version and digest; None while the
    escalation stays open (an approval that waits for a second officer)."""
    if verdict.get("status", OPEN) == OPEN or not verdict.get("result"):
        return None
    return {"policy_version": verdict["policy_version"], "request_digest": verdict["request_digest"],
            "results": [verdict["result"]]}


def _keeping(mapper: Any, decoded: dict[int, Any] | None) -> Callable[[Notification], dict[str, Any]]:
    """``event_state`` that also keeps each decoded event's attributes in ``decoded`` by notification id."""
    if decoded is None:
        return lambda n: event_state(mapper, n, traces=False)

    def decode(n: Notification) -> dict[str, Any]:
        e = decoded[n.id] = event_state(mapper, n, traces=False)
        return e
    return decode


# What one planned delivery becomes: a record to send, or already its bookkeeping (erased, quarantined).
Planned = Outgoing | Made | QuarantinedDelivery


@dataclass
class DeliveryRelay:
    ledger: Ledger
    producer: KafkaProducer
    sealer: LedgerSealer
    codec: AvroCodec = field(default_factory=AvroCodec)
    page_size: int = 500
    stats: dict[str, int] = field(
        default_factory=lambda: {"inbox": 0, "receipts": 0, "rejected_receipts": 0, "undeliverable": 0,
                                 "quarantined": 0})
    stopping: threading.Event = field(default_factory=threading.Event)
    # Folds new entries into the Merkle tree (signing checkpoints) and the read models:
    # the relay already follows the log, so it keeps what is derived from it current.
    # One bounded step runs whenever the relay is idle, under a backlog every
    # ``maintain_every`` seconds, and after every page while it is behind; so deliveries
    # wait at most one step, and derived data keeps pace with any rate. It returns whether
    # everything derived is current (False: "call me again").
    maintain: Callable[[], Any] | None = None
    maintain_every: float = 1.0
    # Given each recorded page and the events the relay decoded from it (notification id → the
    # event's attributes, ``event_state``),
    # so the read models project them without decoding them again (ReadModels.project_next).
    project: Callable[[list[Notification], dict[int, Any]], Any] | None = None

    def __post_init__(self) -> None:
        self.messages = Messages(self.codec)

    def run_once(self) -> int:
        """Relays one page of the outbox; returns how many notifications it consumed."""
        start = (self.ledger.position(OUTBOX_TRACKING) or 0) + 1
        page = self.ledger.notifications(start, self.page_size)
        if not page:
            return 0  # nothing new in the log, so nothing derived from it can be stale
        decoded: dict[int, Any] = {}
        decided = self._decided(page, decoded)
        resolved = self._resolved(page, decoded)
        allowed = set()  # the subjects whose keys open an inbox copy: a loop, not a generator per exchange
        for ex in chain(decided, resolved):
            for r in ex.decision["results"]:
                if r["outcome"] == "ALLOW":
                    allowed.add(ex.subject)
                    break
        planned: list[Planned] = []
        with self.sealer.batch(allowed, create=False) as sealer:
            for exchange in decided:
                planned.extend(self._relay(exchange, sealer))
            for exchange in resolved:
                planned.extend(self._relay(exchange, sealer, receipt_kind=REVIEW_RECEIPT))
        for rejected in self._rejections(page, decoded):
            planned.append(self._plan(Target(str(rejected.id), "", "receipt"),
                                      lambda r=rejected: self.messages.rejected_receipt(r)))
        made, held = self._send(planned)
        records: list[DeliveryPage | QuarantinedDelivery] = list(held)
        if made:
            records.append(DeliveryPage(start=start, end=page[-1].id, deliveries=[m.entry() for m in made]))
        try:
            self.ledger.record(records, Tracking(OUTBOX_TRACKING, page[-1].id))
        except IntegrityError:
            # Another relay recorded this page: what we re-sent carries the same delivery ids.
            log.warning("relay.page_already_recorded", first=page[0].id, last=page[-1].id)
            return len(page)
        self._count(made, held)
        log.info("relay.page_recorded", first=page[0].id, last=page[-1].id, deliveries=len(made) + len(held))
        if self.project is not None:
            try:
                self.project(page, decoded)
            except LEDGER_UNAVAILABLE:
                pass  # the deliveries are recorded; the read models catch up in maintain
            except Exception as exc:  # noqa: BLE001 - derived data must never stop deliveries
                log.error("relay.projection_failed", alert=True, first=page[0].id, error=type(exc).__name__)
        return len(page)

    def _decided(self, page: list[Notification], decoded: dict[int, Any] | None = None) -> list[DecidedExchange]:
        """The exchanges decided in this page, read from the page's own events.

        The gate records an exchange as one RequestDecided event, which holds both the request and
        the decision. Older ledgers hold a Requested and a Decided event, recorded together, so the
        Requested event is nearly always in the same page; only at a page boundary is it read back
        from the store. No aggregate is reconstructed.
        """
        requested: dict[UUID, Notification] = {}
        out: list[DecidedExchange] = []
        to_state = _keeping(self.ledger.mapper, decoded)
        for n in page:
            if n.topic.endswith(_REQUEST_DECIDED):
                state = to_state(n)
                out.append(DecidedExchange.of_state(state, state["decision"]))
            elif n.topic.endswith(_REQUESTED):
                requested[n.originator_id] = n
            elif n.topic.endswith(_DECIDED):
                first = requested.get(n.originator_id)
                decision = to_state(n)["decision"]
                out.append(DecidedExchange.of_state(to_state(first), decision) if first is not None
                           else DecidedExchange.of(self.ledger.first_event(n.originator_id), decision))
        return out

    def _resolved(self, page: list[Notification], decoded: dict[int, Any] | None = None) -> list[DecidedExchange]:
        """Escalations closed by a verdict in this page, each as an exchange whose decision holds
        only the verdict's result (and the original decision's policy version and digest)."""
        out: list[DecidedExchange] = []
        to_state = _keeping(self.ledger.mapper, decoded)
        for n in page:
            if not n.topic.endswith(_VERDICT):
                continue
            decision = closing_decision(to_state(n)["verdict"])
            if decision is not None:
                out.append(DecidedExchange.of(self.ledger.first_event(n.originator_id), decision))
        return out

    def _rejections(self, page: list[Notification], decoded: dict[int, Any] | None = None) -> list[RejectedRequest]:
        """The rejections in this page whose sender is known (its signature verified)."""
        to_state = _keeping(self.ledger.mapper, decoded)
        found = (RejectedRequest.of_state(to_state(n)) for n in page if n.topic.endswith(_REJECTED))
        return [r for r in found if r is not None]

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

    def _relay(self, exchange: DecidedExchange, sealer: LedgerSealer, receipt_kind: str = "receipt") -> list[Planned]:
        out: list[Planned] = []
        opened: list[Any] = []  # the payload, opened once per exchange: a dict, or why it cannot be

        def payload() -> dict[str, Any]:
            if not opened:
                try:
                    opened.append(self.messages.open_payload(exchange, sealer))
                except (SubjectErased, Undeliverable) as exc:
                    opened.append(exc)
            if isinstance(opened[0], Exception):
                raise opened[0]
            return opened[0]

        xid = exchange.id_text
        for result in exchange.decision["results"]:
            recipient = result["recipient"]
            if result["outcome"] == "ALLOW":
                out.append(self._plan(Target(xid, recipient, "inbox"),
                                      lambda r=result: self.messages.inbox(exchange, r, payload())))
            out.append(self._plan(Target(xid, recipient, receipt_kind),
                                  lambda r=result: self.messages.receipt(exchange, r, receipt_kind)))
        return out

    @staticmethod
    def _plan(target: Target, build: Callable[[], Outgoing]) -> Planned:
        """The record for one delivery, or its bookkeeping when it cannot be built."""
        try:
            return build()
        except SubjectErased:
            log.warning("relay.subject_erased", exchange=target.exchange)
            return Made(target, "UNDELIVERABLE_ERASED")
        except Undeliverable as failure:
            return quarantined(target, failure)
        except LEDGER_UNAVAILABLE:
            raise
        except Exception as exc:  # noqa: BLE001 - one entry must never stop the relay
            return quarantined(target, Undeliverable("INTERNAL_ERROR", type(exc).__name__))

    def _send(self, planned: list[Planned]) -> tuple[list[Made], list[QuarantinedDelivery]]:
        """Publishes what is to be sent; the deliveries for the page, and those quarantined."""
        outgoing = [p for p in planned if isinstance(p, Outgoing)]
        outcomes = iter(publish(self.producer, outgoing))
        made: list[Made] = []
        held: list[QuarantinedDelivery] = []
        for p in planned:
            if isinstance(p, Outgoing):
                failure = next(outcomes)
                if failure is None:
                    made.append(Made(p.target, "PUBLISHED", p.topic))
                else:
                    held.append(quarantined(p.target, failure))
            elif isinstance(p, Made):
                made.append(p)
            else:
                held.append(p)
        return made, held

    def _count(self, made: list[Made], held: list[QuarantinedDelivery]) -> None:
        self.stats["quarantined"] += len(held)
        for m in made:
            if m.outcome == "UNDELIVERABLE_ERASED":
                self.stats["undeliverable"] += 1
            elif m.target.kind == "inbox":
                self.stats["inbox"] += 1
            else:  # a REJECTED receipt answers the whole request: no recipient
                self.stats["receipts" if m.target.recipient else "rejected_receipts"] += 1
