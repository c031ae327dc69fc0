"""The ledger's domain model: plain eventsourcing aggregates, no I/O.

Ids are derived from what identifies the thing in the outside world (the
sender's message id, the Kafka coordinates, the delivery target), so a
message that arrives twice maps onto the same aggregate and cannot be
recorded twice.
"""

from __future__ import annotations

import re
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

_NS = uuid5(NAMESPACE_URL, "https://exchange-ledger.dk/ledger")
_NS_BYTES = _NS.bytes
# sha1 already fed the namespace: each id copies it and hashes only its own name.
_NS_SHA1 = sha1(_NS_BYTES)
# uuid5's version (5) and RFC 4122 variant bits, set in the hash's first 16 bytes.
_KEEP, _SET = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF, 0x00000000_0000_5000_8000_000000000000
_new, _set, _from_bytes, _UNKNOWN = object.__new__, object.__setattr__, int.from_bytes, SafeUUID.unknown
# A UUID as str(UUID) writes it: what the relay's delivery ids name their exchange by.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _uuid5_int(name: str) -> int:
    """``uuid5(_NS, name).int``: the namespace's hash copied, the name hashed, the version and variant set."""
    h = _NS_SHA1.copy()
    h.update(name.encode())
    return (_from_bytes(h.digest()[:16], "big") & _KEEP) | _SET


def _uuid5(name: str) -> UUID:
    """``uuid5(_NS, name)``, the same UUID at about half the cost: the gate derives one per message
    and the relay one per delivery, and uuid.uuid5 hashes the namespace again and goes through UUID's
    generic constructor (its argument checks, then the version bits) each time. The UUID is made as
    ``UUID(int=...)`` makes it (both slots set, ``is_safe`` unknown), without the checks: the value
    is in range by construction. tests/ledger/test_domain_ids.py holds it to uuid.uuid5."""
    u = _new(UUID)
    _set(u, "int", _uuid5_int(name))
    _set(u, "is_safe", _UNKNOWN)
    return u


def exchange_id(sender: str, message_id: str) -> UUID:
    return _uuid5(f"exchange|{sender}|{message_id}")


def rejection_id(topic: str, partition: int, offset: int) -> UUID:
    return _uuid5(f"rejected|{topic}|{partition}|{offset}")


def delivery_id(exchange: UUID, recipient: str, kind: str) -> UUID:
    return _uuid5(f"delivery|{exchange}|{recipient}|{kind}")


def delivery_id_text(exchange: str, recipient: str, kind: str) -> str:
    """``str(delivery_id(UUID(exchange), recipient, kind))``: the relay names every delivery by it.
    An exchange id already written as str(UUID) writes it is hashed as it is, not parsed into a UUID
    and written out again; any other spelling UUID accepts (upper case, braces, a urn) is first
    written that way, and one it refuses raises its ValueError, as before."""
    if _CANONICAL_UUID(exchange) is None:
        exchange = str(UUID(exchange))
    # str(_uuid5(name)) as UUID.__str__ writes it, without making the UUID object.
    x = "%032x" % _uuid5_int(f"delivery|{exchange}|{recipient}|{kind}")
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def delivery_page_id(start: int) -> UUID:
    # By the page's first position: two relays that read the outbox from the same position
    # (the same page, or one longer than the other) map onto the same aggregate.
    return _uuid5(f"delivery-page|{start}")


def directory_snapshot_id(version: str) -> UUID:
    # Content-addressed: one aggregate per directory version, however many gates record it.
    return _uuid5(f"directory|{version}")


def sealed_message_aad(exchange: UUID | str) -> bytes:
    # Binds a sealed message to its exchange, so a blob moved to another event fails to open. The id
    # as a UUID, or as str(UUID) writes it (the relay has that text already).
    return f"exchange:{exchange}".encode()


class Exchange(Aggregate):
    """One disclosure request and what became of it: requested and decided (one ``RequestDecided``
    event; ``Requested`` then ``Decided`` in ledgers written before it), reviewed, and for an
    escalated recipient the legal officers' verdicts."""

    @staticmethod
    def create_id(sender: str, message_id: str, **_: Any) -> UUID:
        return exchange_id(sender, message_id)

    # Ledgers written before RequestDecided hold an exchange as these two events: Exchange(...) and
    # .decide() still make them (and replay them), so those ledgers load, verify and re-evaluate.
    @event("Requested")
    def __init__(
        self,
        *,
        sender: str,
        message_id: str,
        source: dict[str, Any],
        summary: dict[str, Any],
        subject: str,
        message_digest: str,
        sealed_message: str,
    ) -> None:
        # source: Kafka coordinates; summary: the request without personal data;
        # sealed_message: the signed bytes as received, encrypted under the subject's key.
        self.sender = sender
        self.message_id = message_id
        self.source = source
        self.summary = summary
        self.subject = subject
        self.message_digest = message_digest
        self.sealed_message = sealed_message
        self.decision: dict[str, Any] | None = None
        self.reviews: list[dict[str, Any]] = []
        self.verdicts: list[dict[str, Any]] = []

    @event("Decided")
    def decide(self, decision: dict[str, Any]) -> None:
        if self.decision is not None:
            raise ValueError("exchange is already decided")
        self.decision = decision

    class RequestDecided(Aggregate.Created):
        """The request and the gate's decision in one event: what the gate records per exchange.

        The state it makes is the state ``Requested`` then ``Decided`` make (``__init__``'s
        attributes, then the decision), at version 1 instead of 2: one ledger entry, one append,
        one Merkle leaf and one notification per exchange instead of two. A second creation event
        class: ``Exchange(...)`` still makes ``Requested``; this one is made by ``Exchange.decided``,
        or through eventsourcing as ``Exchange._create(Exchange.RequestDecided, ...)``.
        """

        sender: str
        message_id: str
        source: dict[str, Any]
        summary: dict[str, Any]
        subject: str
        message_digest: str
        sealed_message: str
        decision: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            # After __init__ (called with the request's attributes), as decide() sets it.
            aggregate.decision = self.decision

    @classmethod
    def decided(cls, decision: dict[str, Any], *, id: UUID, sender: str, message_id: str,  # noqa: A002
                source: dict[str, Any], summary: dict[str, Any], subject: str, message_digest: str,
                sealed_message: str) -> Exchange:
        """``Exchange._create(Exchange.RequestDecided, id=id, **request, decision=decision)``: the same
        aggregate with the same pending event, its attributes in the same order, built directly.

        The gate builds one per message. eventsourcing's path (binding the arguments to
        ``__init__``'s signature, the frozen dataclass's per-field ``object.__setattr__``, the
        ``mutate`` call) costs several times what the objects themselves do (bench/README.md). So
        the event's and the aggregate's attribute dicts are filled here, in the order eventsourcing
        fills them: that order is the stored JSON's, and ``tests/ledger/test_stored_bytes.py`` holds
        both paths to the same bytes and attributes. A new attribute of ``__init__`` or
        ``RequestDecided`` must be added here too (that test fails until it is). ``id`` must be
        ``exchange_id(sender, message_id)``: the gate has it already, for the sealed message's aad.
        """
        if not isinstance(id, UUID):  # what DomainEvent.__post_init__ checks
            raise TypeError(f"Exchange.decided was given a non-UUID id: {id!r}")
        event_cls = cls.RequestDecided
        # Each object's attribute dict is built whole and set as its __dict__ (as eventsourcing's own
        # _create_aggregate does), not built as keywords and then copied into an empty one.
        created_on = event_cls.create_timestamp()
        created = _new(event_cls)
        _set(created, "__dict__", {
            "originator_id": id, "originator_version": cls.INITIAL_VERSION, "timestamp": created_on,
            "originator_topic": get_topic(cls), "sender": sender, "message_id": message_id, "source": source,
            "summary": summary, "subject": subject, "message_digest": message_digest, "sealed_message": sealed_message,
            "decision": decision,
        })
        exchange = _new(cls)
        # Aggregate.__base_init__'s attributes, then __init__'s (decision among them), as mutate sets them.
        _set(exchange, "__dict__", {
            "_id": id, "_version": cls.INITIAL_VERSION, "_created_on": created_on, "_modified_on": created_on,
            "_pending_events": [created], "sender": sender, "message_id": message_id, "source": source,
            "summary": summary, "subject": subject, "message_digest": message_digest, "sealed_message": sealed_message,
            "decision": decision, "reviews": [], "verdicts": [],
        })
        return exchange

    @event("Reviewed")
    def review(self, review: dict[str, Any]) -> None:
        self.reviews.append(review)

    @event("EscalationVerdict")
    def record_verdict(self, verdict: dict[str, Any]) -> None:
        """A legal officer's approval or refusal of an escalated recipient. The verdict says
        whether it closes the escalation and, if so, the result the relay acts on."""
        self.verdicts.append(verdict)


class RejectedMessage(Aggregate):
    """A message that could not be decided: undecodable, invalid, unsigned, forged or a duplicate.

    ``sender`` and ``message_id`` are set only when the sender's signature verified: that
    sender is then told (a REJECTED receipt). A message nobody can be held to has neither.
    """

    @staticmethod
    def create_id(source: dict[str, Any], **_: Any) -> UUID:
        return rejection_id(source["topic"], source["partition"], source["offset"])

    # Not keyword-only: eventsourcing treats every keyword-only argument as required, and
    # events recorded before sender and message_id existed must still reconstruct.
    @event("Rejected")
    def __init__(self, source: dict[str, Any], reason: str, detail: str, message_digest: str, size: int,
                 sender: str | None = None, message_id: str | None = None) -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        self.message_digest = message_digest
        self.size = size
        self.sender = sender
        self.message_id = message_id


class Delivery(Aggregate):
    """One message published: an allowed payload to an inbox, or a receipt to the sender.

    Recorded by a quarantine retry that made the delivery (``services.quarantine``), and by the
    relay, one per delivery, in ledgers written before ``DeliveryPage``.
    """

    @staticmethod
    def create_id(exchange: str, recipient: str, kind: str, **_: Any) -> UUID:
        return delivery_id(UUID(exchange), recipient, kind)

    @event("Published")
    def __init__(self, *, exchange: str, recipient: str, kind: str, topic: str, outcome: str) -> None:
        self.exchange = exchange
        self.recipient = recipient
        self.kind = kind
        self.topic = topic
        self.outcome = outcome


DELIVERY_FIELDS = ("delivery_id", "exchange", "recipient", "kind", "topic", "outcome")


class DeliveryPage(Aggregate):
    """What the relay published for one page of the outbox (notifications ``start``..``end``), in one
    event: per delivery its id, exchange, recipient, kind (``inbox``, ``receipt``, ``review-receipt``),
    topic ("" when nothing was sent) and outcome (``PUBLISHED``, or ``UNDELIVERABLE_ERASED`` when the
    subject was erased). One ledger entry per page instead of one per delivery; a delivery that
    could not be made is a ``QuarantinedDelivery`` of its own instead.
    """

    @staticmethod
    def create_id(start: int, **_: Any) -> UUID:
        return delivery_page_id(start)

    @event("Recorded")
    def __init__(self, *, start: int, end: int, deliveries: list[dict[str, str]]) -> None:
        self.start = start
        self.end = end
        self.deliveries = deliveries


def quarantine_id(delivery: UUID) -> UUID:
    return _uuid5(f"quarantine|{delivery}")


class QuarantinedDelivery(Aggregate):
    """A delivery the relay could not make: the payload would not open or decode, or the broker refused it.

    Recorded in place of the delivery with its reason, so one bad entry never stops the
    relay. A retry that succeeds records the ``Delivery`` under the same delivery id, and
    ``released`` here, in one transaction; one that fails again is recorded as a failed retry.
    """

    @staticmethod
    def create_id(delivery: str, **_: Any) -> UUID:
        return quarantine_id(UUID(delivery))

    @event("Quarantined")
    def __init__(self, *, delivery: str, exchange: str, recipient: str, kind: str, reason: str, detail: str) -> None:
        self.delivery = delivery
        self.exchange = exchange
        self.recipient = recipient
        self.kind = kind
        self.reason = reason
        self.detail = detail
        self.attempts = 1
        self.released = False

    @event("RetryFailed")
    def retry_failed(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        self.attempts += 1

    @event("Released")
    def release(self, outcome: str) -> None:
        if self.released:
            raise ValueError("quarantined delivery is already released")
        self.released = True
        self.outcome = outcome


def erasure_id(subject: str, key_id: str) -> UUID:
    # One erasure per destroyed key generation: re-running an interrupted erasure maps onto
    # the same aggregate, and a subject seen again (new key) can be erased again.
    return _uuid5(f"erasure|{subject}|{key_id}")


class SubjectErasure(Aggregate):
    """A subject's data key was destroyed (crypto-shredding).

    Holds no personal data beyond the pseudonym: which key generation was destroyed and
    why, in words that must not identify anyone.
    """

    @staticmethod
    def create_id(subject: str, key_id: str, **_: Any) -> UUID:
        return erasure_id(subject, key_id)

    @event("Erased")
    def __init__(self, *, subject: str, key_id: str, reason: str) -> None:
        self.subject = subject
        self.key_id = key_id
        self.reason = reason


class DirectorySnapshot(Aggregate):
    """The organisation directory a gate decided with, stored the first time a decision names its
    version (``decision["directory_version"]``), so every decision can be re-decided under the
    directory in force when it was made. Public facts only: no personal data."""

    # ``directory_version``, not ``version``: an aggregate's ``version`` is its event count.
    @staticmethod
    def create_id(directory_version: str, **_: Any) -> UUID:
        return directory_snapshot_id(directory_version)

    @event("Recorded")
    def __init__(self, *, directory_version: str, content: dict[str, Any]) -> None:
        self.directory_version = directory_version
        self.content = content
