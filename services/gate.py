"""The policy gate: decode → verify the sender → decide → append (with the Kafka offset) → dead-letter what failed.

``GatePipeline`` turns one Kafka record into exactly one ledger aggregate: an
``Exchange`` carrying its decision, or a ``RejectedMessage`` naming what was
wrong. It is pure apart from the ledger lookups, so it is unit-testable.
``GateWorker`` is the Kafka side: one consumer in the gate's group, one ledger
transaction per partition per poll, positions read back from the ledger.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Iterable, NamedTuple, Protocol

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from ledger.application import LEDGER_UNAVAILABLE, IntegrityError, Ledger, Tracking, kafka_tracking_name
from ledger.domain import DirectorySnapshot, Exchange, RejectedMessage, exchange_id, sealed_message_aad
from policies.engine import PolicyEngine
from policies.model import ExchangeRequest, InvalidRequest
from schemas.categories import present_categories
from schemas.codec import AvroCodec, CodecError
from schemas.cpr import NO_SUBJECT, pseudonym_of_valid
from schemas.validation import CPR_FIELD, RecordInvalid, is_payload, validate
from services import topics
from services.dead_letters import DeadLetters, DeadLetterUnavailable
from services.heap import settle_heap  # moved to services.heap (the relay uses it too); still exported here
from services.keyset import REJECTION, KeyState
from services.logging import get_logger
from services.policy_input import to_policy_request
from services.signing import verify

log = get_logger(__name__)

# ExchangeRequest.model_validate without its wrapper: the same validator with the same (default)
# settings; the wrapper's keyword plumbing cost ~2 µs per exchange (measured paired, bench/README.md).
_validate_policy_request = ExchangeRequest.__pydantic_validator__.validate_python

# The gate's youngest generation is collected every 50,000 allocations, not settle_heap's 10,000.
# What the gate allocates is freed by reference counting: over a 5000-message backlog the collector
# found no cyclic garbage at all, so each collection only walked the batch in flight (~30 per 5000
# messages, ~10 µs per message, bench/README.md). At 50,000 it ran about once per 5000 messages; any
# cyclic garbage is still collected, held to about that many objects (a few MB).
GATE_YOUNG_GENERATION = 50_000


def settle_gate_heap() -> None:
    """``settle_heap`` for the gate process (``gate run``), once its workers are built."""
    settle_heap(young_generation=GATE_YOUNG_GENERATION)


class Sealer(Protocol):
    def seal(self, subject: str, data: bytes, aad: bytes = b"") -> str: ...

    def batch(self, subjects: Iterable[str]) -> ContextManager[Sealer]: ...


class AuthorityKeys(Protocol):
    """Which keys may sign for an authority (services.keyset: KeySet or LiveKeySet)."""

    def keys_for(self, org: str, at: datetime | None = None) -> list[KeyState]: ...


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Inbound(NamedTuple):
    """One record as the gate read it. A named tuple rather than a frozen dataclass: the gate makes
    one per message, and a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None

    @property
    def source(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.value).hexdigest()


@dataclass(slots=True)
class Work:
    """What the pipeline has learned about one message so far."""

    msg: Inbound
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))  # when the sender's key is checked
    signed: dict[str, Any] | None = None
    envelope: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    subject: str = ""  # the pseudonym the gate derived from the payload's CPR number
    key_id: str = ""  # the key that verified the signature
    present: frozenset[str] = frozenset()
    # Not the policy request: decide builds it and lets it go. Held by every Work of a batch until the
    # batch was recorded, its ~20 models and lists were freed at the end, long out of the CPU caches,
    # and walked by any young-generation collection in between: the gate's loop stage -3 µs per
    # exchange without it (bench.ceiling.gate_stage_costs, paired with main, 2026-12-01).
    decision: dict[str, Any] | None = None
    # Set once the signature verified: from then on a rejection is the sender's to hear about.
    sender: str | None = None


@dataclass
class GatePipeline:
    engine: PolicyEngine
    sealer: Sealer
    pseudonym_secret: bytes
    keys: AuthorityKeys
    codec: AvroCodec = field(default_factory=AvroCodec)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        # The envelope is validated only after the signature verified, so the sender of an
        # invalid envelope is known and gets a REJECTED receipt.
        self.steps: list[Callable[[Work], None]] = [
            self.decode_signed,
            self.decode_request,
            self.verify_sender,
            self.validate_request,
            self.decode_payload,
            self.categorise,
            self.decide,
        ]

    # -- the steps ------------------------------------------------------------------------

    def decode_signed(self, w: Work) -> None:
        w.signed = self._decode(w.msg.value, "dk.xledger.SignedMessage")

    def decode_request(self, w: Work) -> None:
        w.envelope = self._decode(w.signed["body"], "dk.xledger.ExchangeRequest")

    def validate_request(self, w: Work) -> None:
        self._validate("dk.xledger.ExchangeRequest", w.envelope)

    def verify_sender(self, w: Work) -> None:
        """The signer must be the sender, and sign with a key of theirs that is valid now.

        UNKNOWN_SIGNER: the key set has no key for the signer at all; UNKNOWN_KEY: none with this
        id; BAD_SIGNATURE: the signature does not verify with it. A correct signature by a key
        that is not valid at the time is KEY_REVOKED, KEY_EXPIRED or KEY_NOT_YET_VALID. The time
        is the gate's clock, not the sender's occurred_at, so nobody can backdate a message
        into a key's validity.
        """
        signer, sender, key_id = w.signed["signer"], w.envelope["sender"]["org"], w.signed["key_id"]
        if signer != sender:
            raise Rejected("SIGNER_MISMATCH", f"signed by {signer} but sent in the name of {sender}")
        states = self.keys.keys_for(signer, w.at)
        if not states:
            raise Rejected("UNKNOWN_SIGNER", f"the key set has no key for {signer}")
        for state in states:  # a loop, not a generator per message
            if state.key.key_id == key_id:
                break
        else:
            raise Rejected("UNKNOWN_KEY", f"{signer} has no key {key_id!r} in the key set")
        if not self.signature_valid(w.signed["body"], w.signed["signature"], state.key.public_key):
            raise Rejected("BAD_SIGNATURE", f"signature does not verify with {signer}'s key {key_id!r}")
        if not state.usable:
            raise Rejected(REJECTION[state.status], _key_status_detail(state, w.at))
        w.key_id = key_id

    def signature_valid(self, body: bytes, signature: bytes, public_key: bytes) -> bool:
        """Ed25519 over the body. A method so that re-evaluation (services.audit), which reads bytes
        the ledger already proves unchanged, can say whether it checks them again."""
        return verify(body, signature, [public_key])

    def decode_payload(self, w: Work) -> None:
        payload_type = w.envelope["payload_type"]
        if not is_payload(payload_type):
            raise Rejected("WRONG_TYPE", f"payload_type {payload_type!r} is not a payload record")
        payload = self._decode(w.envelope["payload"], payload_type)
        self._validate(payload_type, payload)
        w.subject = self.subject_of(payload_type, payload)
        w.payload = payload

    def subject_of(self, payload_type: str, payload: dict[str, Any]) -> str:
        """The subject pseudonym the exchange is sealed under. A method so that re-evaluation
        (services.audit), which never seals, can leave it out."""
        # The gate alone holds the pseudonym secret; a v1 sender's subject.pseudonym is ignored.
        cpr_field = CPR_FIELD.get(payload_type)
        if not cpr_field:
            return NO_SUBJECT
        # decode_payload has just validated the payload, CPR number included (schemas.validation's Cpr).
        return pseudonym_of_valid(payload[cpr_field], self.pseudonym_secret)

    def categorise(self, w: Work) -> None:
        schema = self.codec.registry.latest(w.envelope["payload_type"]).raw
        w.present = present_categories(schema, w.payload)

    def decide(self, w: Work) -> None:
        try:
            request = _validate_policy_request(to_policy_request(w.envelope))
            w.decision = self.engine.decide(request, w.present).to_dict()
            # Which key verified the sender, and when: part of the decision record itself.
            w.decision["signer_key_id"] = w.key_id
            w.decision["verified_at"] = w.at.isoformat()
            # The directory decided with, beside the bundle's policy version (its snapshot is in
            # the ledger: GateWorker records it once), so an audit re-decides under the same facts.
            w.decision["directory_version"] = self.engine.directory.version
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise Rejected("INVALID_REQUEST", fields) from None
        except InvalidRequest as exc:
            raise Rejected("INVALID_REQUEST", f"{exc.field}: {exc.message}") from None

    # -- running them ---------------------------------------------------------------------

    def process(self, msg: Inbound) -> Exchange | RejectedMessage:
        return self.process_batch([msg])[0]

    def process_batch(self, msgs: list[Inbound]) -> list[Exchange | RejectedMessage]:
        """Runs the steps on every message, then seals the decided ones with the batch's keys read at once."""
        worked = self._run_batch(msgs)
        subjects = {w.subject for w in worked if isinstance(w, Work)}
        with self.sealer.batch(subjects) as sealer:
            return [self._exchange(w, sealer) if isinstance(w, Work) else w for w in worked]

    def _run_steps(self, msg: Inbound) -> Work | RejectedMessage:
        return self._run_batch([msg])[0]

    def _run_batch(self, msgs: list[Inbound]) -> list[Work | RejectedMessage]:
        """Every message through the steps, in order, until one rejects it; step by step across the
        batch rather than message by message. Each message gets the same steps and the same result
        either way, but one step run over the whole batch keeps its code and tables (Avro, pydantic,
        the policy engine) in the CPU caches: run message by message, the gate's steps cost up to
        twice what they cost on their own (bench/README.md)."""
        # ``at`` is set again when each message's key is checked (below); nothing reads it before.
        taken = self.clock()
        out: list[Work | RejectedMessage] = [Work(m, at=taken) for m in msgs]
        for step in self.steps:
            verifies = step == self.verify_sender
            for i, w in enumerate(out):
                if not isinstance(w, Work):
                    continue  # rejected by an earlier step
                try:
                    if verifies:
                        # The key is judged at the time it is checked, as one at a time: not when the
                        # batch was taken, before the steps decoded all of it (a revocation in force by
                        # now must refuse the message).
                        w.at = self.clock()
                    step(w)
                    if verifies:
                        w.sender = w.envelope["sender"]["org"]
                except Rejected as r:
                    out[i] = self._rejected(w, r.reason, r.detail)
                except Exception as exc:  # a poison message must not block its partition: record it, never drop it
                    out[i] = self._internal_error(w, step.__name__, exc)
        return out

    def _internal_error(self, w: Work, step_name: str, exc: Exception) -> RejectedMessage:
        log.error("gate.unexpected_error", step=step_name, error=type(exc).__name__, **w.msg.source)
        return self._rejected(w, "INTERNAL_ERROR", f"{step_name}: {type(exc).__name__}")

    @staticmethod
    def _rejected(w: Work, reason: str, detail: str) -> RejectedMessage:
        msg = w.msg
        return RejectedMessage(
            source=msg.source, reason=reason, detail=detail, message_digest=msg.digest, size=len(msg.value),
            sender=w.sender, message_id=_bounded(w.envelope["message_id"]) if w.sender else None,
        )

    def _exchange(self, w: Work, sealer: Sealer) -> Exchange | RejectedMessage:
        try:
            return self._build_exchange(w, sealer)
        except LEDGER_UNAVAILABLE:
            raise  # transient: the batch is retried, the message must not be rejected for it
        except Exception as exc:
            return self._internal_error(w, "seal", exc)

    def _build_exchange(self, w: Work, sealer: Sealer) -> Exchange:
        env = w.envelope
        summary = {
            "occurred_at": env["occurred_at"],
            "sender": env["sender"],
            "recipients": env["recipients"],
            "context": env["context"],
            "underlying_basis": env["underlying_basis"],
            "cooperation_id": env["cooperation_id"],
            "purpose": env["purpose"],
            "declared_categories": sorted(env["data_categories"]),
            "present_categories": sorted(w.present),
            "payload_type": env["payload_type"],
            "mandatory": env["mandatory"],
            "has_consent": env["consent"] is not None,
            "has_provenance": env["provenance"] is not None,
            "signer_key_id": w.signed["key_id"],
        }
        subject, sender, message_id = w.subject, env["sender"]["org"], env["message_id"]
        xid = exchange_id(sender, message_id)
        return Exchange.decided(
            w.decision,
            id=xid,
            sender=sender,
            message_id=message_id,
            source=w.msg.source,
            summary=summary,
            subject=subject,
            message_digest=w.msg.digest,
            sealed_message=sealer.seal(subject, w.msg.value, sealed_message_aad(xid)),
        )

    def _decode(self, data: bytes, expect: str) -> dict[str, Any]:
        try:
            return self.codec.decode(data, expect=expect).record
        except CodecError as exc:
            raise Rejected(exc.reason, f"{expect}: {exc.message}") from None

    @staticmethod
    def _validate(name: str, record: dict[str, Any]) -> None:
        try:
            validate(name, record)
        except RecordInvalid as exc:
            raise Rejected("INVALID_RECORD", str(exc)) from None


def _key_status_detail(state: KeyState, at: datetime) -> str:
    key = state.key
    when = {"KEY_REVOKED": f"revoked at {key.revoked_at.isoformat() if key.revoked_at else '?'}",
            "KEY_EXPIRED": f"valid until {key.valid_to}", "KEY_NOT_YET_VALID": f"valid from {key.valid_from}"}
    return f"{key.org}'s key {key.key_id!r} is {when[REJECTION[state.status]]}; checked at {at.isoformat()}"


def _bounded(message_id: str, limit: int = 128) -> str:
    # An envelope that failed validation may carry any message id; its receipt quotes at most
    # the length a valid one may have, marked as cut.
    return message_id if len(message_id) <= limit else message_id[: limit - 1] + "…"


def _connected(consumer: KafkaConsumer) -> bool:
    """Whether the consumer holds any broker connection (kafka-python 3's bootstrap_connected()
    is only true while bootstrapping, so it cannot tell idle from unreachable)."""
    counts = [v for group in consumer.metrics().values() for k, v in group.items() if k == "connection-count"]
    return any(c > 0 for c in counts)


class GateWorker:
    """One member of the gate's consumer group."""

    def __init__(
        self,
        pipeline: GatePipeline,
        ledger: Ledger,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        *,
        topic: str = topics.REQUESTS,
        name: str = "gate",
    ):
        self.pipeline = pipeline
        self.ledger = ledger
        self.consumer = consumer
        self.producer = producer
        self.dead_letters = DeadLetters(producer)
        self.topic = topic
        self.name = name
        self.stopping = threading.Event()
        self.stats = {"decided": 0, "rejected": 0, "duplicates": 0, "batches": 0, "polls": 0}
        self._positions: dict[TopicPartition, int] = {}
        self._broker_lost = False
        self._last_watch = 0.0
        self._directory_recorded = False  # the engine's directory snapshot is known to be in the ledger
        # Every decision names the directory's version, a hash of its whole snapshot computed once
        # (a cached property): ~12 ms, here at start-up rather than inside the first batch.
        pipeline.engine.directory.version  # noqa: B018

    # -- group membership ------------------------------------------------------------------

    def start(self) -> None:
        from kafka import ConsumerRebalanceListener

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                for tp in revoked:
                    worker._positions.pop(tp, None)

            def on_partitions_assigned(self, assigned):
                for tp in assigned:
                    try:
                        worker._resume(tp)
                    except LEDGER_UNAVAILABLE as exc:
                        # Without its ledger position the partition is not read: handle_batch
                        # resumes it first (from the ledger, never from Kafka's committed offset).
                        log.warning("gate.ledger_unavailable", worker=worker.name, partition=tp.partition,
                                    error=type(exc).__name__)

        self.consumer.subscribe([self.topic], listener=Listener())

    def _resume(self, tp: TopicPartition) -> None:
        # The ledger, not Kafka's committed offset, says where this partition stands.
        position = self.ledger.position(kafka_tracking_name(tp.topic, tp.partition)) or 0
        self._positions[tp] = position
        self.consumer.seek(tp, position)
        log.info("gate.partition_assigned", worker=self.name, partition=tp.partition, resume_offset=position)

    # -- the loop --------------------------------------------------------------------------

    def run(self, *, idle_stop_after: float | None = None) -> dict[str, int]:
        self.start()
        idle_since = time.monotonic()
        backoff = retry_backoff = 0.5
        while not self.stopping.is_set():
            try:
                polled = self.consumer.poll(timeout_ms=200)
                self.stats["polls"] += 1
                backoff = 0.5
            except KafkaError as exc:
                log.warning("gate.broker_unavailable", worker=self.name, error=type(exc).__name__, retry_in_s=backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if not polled:
                self._watch_broker(idle_since)
                if idle_stop_after is not None and time.monotonic() - idle_since > idle_stop_after:
                    break
                continue
            if self._broker_lost:
                log.info("gate.broker_reachable_again", worker=self.name)
                self._broker_lost = False
            idle_since = time.monotonic()
            for tp, records in polled.items():
                try:
                    self.handle_batch(tp, records)
                    retry_backoff = 0.5
                    continue
                except LEDGER_UNAVAILABLE as exc:
                    log.warning("gate.ledger_unavailable", worker=self.name, partition=tp.partition,
                                error=type(exc).__name__, retry_in_s=retry_backoff)
                except DeadLetterUnavailable as exc:
                    log.warning("gate.dead_letter_unavailable", worker=self.name, partition=tp.partition,
                                error=str(exc), retry_in_s=retry_backoff)
                except Exception as exc:  # noqa: BLE001 - a fault of ours must not end the gate or lose the batch
                    log.error("gate.batch_failed", alert=True, worker=self.name, partition=tp.partition,
                              first_offset=records[0].offset, error=type(exc).__name__, retry_in_s=retry_backoff)
                # Nothing of the batch was recorded: read it again after a pause.
                self._rewind(tp, records[0].offset)
                self.stopping.wait(retry_backoff)
                retry_backoff = min(retry_backoff * 2, 10.0)
        return self.stats

    def _rewind(self, tp: TopicPartition, first_offset: int) -> None:
        """After a failed batch: read it again, and re-read the position from the ledger first.

        The consumer has moved past the batch, so it seeks back to it; the position held in
        memory is forgotten, because a commit that failed ambiguously may have landed, and
        handle_batch resumes from what the ledger says before deciding anything.
        """
        known = self._positions.pop(tp, None)
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, first_offset if known is None else min(known, first_offset))

    def stop(self) -> None:
        self.stopping.set()

    def _watch_broker(self, idle_since: float) -> None:
        # kafka-python's poll returns nothing both when idle and when the broker is gone; say which.
        if time.monotonic() - idle_since < 10 or time.monotonic() - self._last_watch < 10:
            return
        self._last_watch = time.monotonic()
        reachable = _connected(self.consumer)
        if not reachable and not self._broker_lost:
            log.warning("gate.broker_unreachable", worker=self.name, idle_s=round(time.monotonic() - idle_since))
        elif reachable and self._broker_lost:
            log.info("gate.broker_reachable_again", worker=self.name)
        self._broker_lost = not reachable

    def handle_batch(self, tp: TopicPartition, records: list) -> None:
        if tp not in self._positions:
            # Assigned while the ledger was unavailable, or rewound after a failure: start from
            # the ledger's position; these records are fetched again from there.
            self._resume(tp)
            return
        position = self._positions[tp]
        fresh = [r for r in records if r.offset >= position]
        if not fresh:
            return
        results = self.pipeline.process_batch([Inbound(r.topic, r.partition, r.offset, r.value or b"", r.key) for r in fresh])
        results = self._reject_duplicates(results, fresh)
        rejected = [r for r in results if isinstance(r, RejectedMessage)]
        # Dead letters first, each stored before anything is recorded: a crash or a refusal
        # before the ledger commit sends them again, never loses them.
        self.dead_letters.publish([(r, rec.key, rec.value or b"") for r, rec in zip(results, fresh)
                                   if isinstance(r, RejectedMessage)])
        next_offset = fresh[-1].offset + 1
        try:
            # the directory the decisions name, stored with the first ones (not with rejections only)
            snapshot = self._directory_snapshot() if len(rejected) < len(results) else []
            self.ledger.record(snapshot + results, Tracking(kafka_tracking_name(tp.topic, tp.partition), next_offset))
            self._directory_recorded = self._directory_recorded or bool(snapshot)
        except IntegrityError:
            # Another member recorded this range first (a rebalance overlapped): resume from the ledger.
            log.warning("gate.batch_already_recorded", worker=self.name, partition=tp.partition, first_offset=fresh[0].offset)
            self._resume(tp)
            return
        self._positions[tp] = next_offset
        self.stats["batches"] += 1
        self.stats["rejected"] += len(rejected)
        self.stats["duplicates"] += sum(r.reason == "DUPLICATE_MESSAGE" for r in rejected)
        self.stats["decided"] += len(results) - len(rejected)
        log.info(
            "gate.batch_recorded", worker=self.name, partition=tp.partition, first_offset=fresh[0].offset,
            next_offset=next_offset, decided=len(results) - len(rejected), rejected=len(rejected),
        )
        try:
            self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})
        except KafkaError as exc:  # informational only: the ledger holds the real position
            log.warning("gate.commit_failed", worker=self.name, error=type(exc).__name__)

    def _directory_snapshot(self) -> list:
        """The directory snapshot to store with this batch: only the first time, in the same
        transaction as the first decisions that name it. Another gate storing it first makes
        this batch's record fail with IntegrityError; it is then retried and finds it."""
        if self._directory_recorded:
            return []
        directory = self.pipeline.engine.directory
        snapshot = DirectorySnapshot(directory_version=directory.version, content=directory.snapshot())
        if self.ledger.existing([snapshot.id]):
            self._directory_recorded = True
            return []
        return [snapshot]

    def _reject_duplicates(self, results: list, records: list) -> list:
        """A message id seen before (in the ledger or earlier in this batch) is recorded as a duplicate."""
        ids = [r.id for r in results if isinstance(r, Exchange)]
        known = self.ledger.existing(ids)
        out = []
        for r, rec in zip(results, records):
            if isinstance(r, Exchange):
                if r.id in known:
                    r = RejectedMessage(
                        source=r.source, reason="DUPLICATE_MESSAGE",
                        detail=f"message_id already recorded for {r.sender}", message_digest=r.message_digest,
                        size=len(rec.value or b""), sender=r.sender, message_id=r.message_id,
                    )
                else:
                    known.add(r.id)
            out.append(r)
        return out


__all__ = ["GatePipeline", "GateWorker", "Inbound", "Rejected", "settle_gate_heap", "settle_heap"]
