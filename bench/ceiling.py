"""The limit on this machine: the raw cost of every step an exchange cannot do without, and where the rest goes.

Every exchange must at least be consumed (kafka-python), have its signature verified (Ed25519),
have its three Avro layers decoded (fastavro), be decided (the policy engine), be appended once
in a batch (eventsourcing, one tracking record per 500) with one Merkle leaf (sha256 of the leaf
and of one interior node), and give two records (the inbox copy and the receipt) that are
encoded (fastavro) and produced (kafka-python). ``raw_step_costs`` measures each of these in this
process, in µs per exchange, over the same messages the end-to-end run sends; their sum is the
CPU one exchange needs at the least, and ``cores / sum`` the limit on this machine.

Each library is configured as the services configure it (the producer from
``services.kafka.producer_config``, eventsourcing with the ledger's transcoder, PostgreSQL parameter
and insert, and called the way ``Ledger.record`` calls it): measured with defaults that cost more,
a raw step would be no floor for the code that does the same work for less.

The servers' share is not in these client-side costs. ``ServerShare`` measures it over the same
calls: the broker process's CPU during the raw consume and produce (``/proc/<pid>/stat``), and that
of PostgreSQL's backends serving the benchmark's connections during the raw steps that read or write
the ledger (SERVER_STEPS); the required floor with the servers' share adds them.

``gate_stage_costs`` runs a whole GateWorker (consumer, pipeline steps, sealing, duplicate check,
ledger append, offset commit) in this process over the same backlog and splits the process's CPU
into stages that add up to it, so the gate's CPU per exchange from /proc can be explained stage by
stage and laid beside the raw steps.
"""
from __future__ import annotations

import gc
import hashlib
import io
import os
import statistics
import threading
import time
from typing import Any

from bench.common import paired_rates

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The unavoidable steps, in pipeline order, with what each measures.
RAW_STEPS = {  # each in CPU µs of the benchmark process (all its threads) per exchange
    "consume": "kafka-python consume of one record (4 partitions, client side)",
    "ed25519_verify": "cryptography Ed25519 verify (key pre-loaded)",
    "avro_decode": "fastavro schemaless_reader: signed message + envelope + payload",
    "decide": "PolicyEngine.decide on the validated request",
    "append_and_leaf": "eventsourcing append as the ledger configures and calls it, 1 aggregate per exchange, "
                       "1 tracking record per 500; + sha256 leaf and node",
    "encode_and_produce": "fastavro encode + kafka-python produce (the services' producer_config) of 2 records "
                          "(inbox copy, receipt), flushed per 500",
}

# The servers' CPU that raw and required steps cause, measured over the same calls (ServerShare), µs per
# exchange: the embedded broker's process, and PostgreSQL's client backends serving the benchmark's
# connections (none on SQLite: the library is the database there, in RAW_STEPS already). The broker's
# share of consuming includes what each round's fresh consumer asks it to set up (metadata, fetch sessions).
SERVER_STEPS = {
    "broker": ("consume", "encode_and_produce"),
    "postgres": ("append", "decision_in_event", "outbox_select", "read_model_rows", "merkle_nodes"),
}


# Work the system must do by its own binding requirements beyond the list, each with its reason.
# Summed with RAW_STEPS, it is "the required floor" (bench/README.md). Measured like RAW_STEPS: the library
# alone, CPU µs of the benchmark process per exchange, over the same backlog.
REQUIRED_STEPS = {
    "seal_payload": "AES-256-GCM seal of the signed message + base64, the subject's data key unwrapped once per "
                    "subject per batch of 500: personal data is stored sealed per subject so erasure can shred it "
                    "(ledger.privacy.LedgerSealer.seal)",
    "message_digest": "sha256 of the message as received, recorded with each exchange (Inbound.digest, "
                      "Exchange.message_digest); the canonical request's digest, recorded with each decision, is "
                      "computed by PolicyEngine.decide and so is in the raw decide step already",
    "decision_in_event": "the gate's decision record in the exchange's one event (Exchange.RequestDecided, "
                         "built by Exchange.decided): eventsourcing append as the ledger configures and calls it "
                         "(RawAsLedger) of 1 event per exchange holding the message and the decision, less 1 "
                         "holding the message alone",
    "open_payload": "AES-256-GCM open of the sealed message (base64 decode, key unwrapped once per subject per "
                    "page) for each inbox copy: the relay reads only what the ledger holds sealed",
    "outbox_select": "the outbox read in pages of 500 as Ledger.notifications reads it (eventsourcing's "
                     "select_notifications; on PostgreSQL its statement with the rows in binary): the relay "
                     "publishes only what is durable in the ledger",
    "event_decode": "orjson decode of the RequestDecided events the relay publishes from",
    "read_model_rows": "insert of the read models' rows into tables of the same shape (one statement per table, "
                       "one transaction per relay page): the status pages, subject register (GDPR art. 15) and "
                       "review queue read them",
    "merkle_nodes": "insert of the Merkle rows written (every leaf and interior node, the leaf index; one statement "
                    "per table, one transaction per integrate step): inclusion and consistency proofs read them",
}

# Which library work (RAW_STEPS and REQUIRED_STEPS, some split into their parts) lies inside which stage
# of the gate (gate_stage_costs) and of the relay (relay_stage_costs). A key is one stage or several whose
# work cannot be split between them (kafka-python's poll and its I/O thread; the relay's encode and
# produce); the parts: avro_{signed,envelope,payload} are avro_decode layer by layer, append and merkle_leaf
# the two halves of append_and_leaf (the leaf is hashed when the relay integrates, not at the gate).
STAGE_FLOOR = {
    "gate": {
        ("consume", "kafka_io_thread"): ("consume",),
        ("decode_signed",): ("avro_signed",),
        ("decode_request",): ("avro_envelope",),
        ("verify_sender",): ("ed25519_verify",),
        ("decode_payload",): ("avro_payload",),
        ("decide",): ("decide",),
        ("seal",): ("seal_payload", "message_digest"),
        ("ledger_record",): ("append", "decision_in_event"),
    },
    "relay": {
        ("notifications",): ("outbox_select",),
        ("decode",): ("event_decode",),
        ("plan_and_encode", "publish"): ("open_payload", "encode_and_produce"),
        ("merkle",): ("merkle_leaf", "merkle_nodes"),
        ("read_models",): ("read_model_rows",),
    },
}


def stage_groups(process: str, stages: list[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(stages, library parts) in stage order: the STAGE_FLOOR groups, and every other stage on its own with none."""
    groups = STAGE_FLOOR[process]
    out, seen = [], set()
    for st in stages:
        if st in seen:
            continue
        key = next((k for k in groups if st in k), (st,))
        seen.update(key)
        out.append((key, groups.get(key, ())))
    return out


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- the gate, in process


def gate_pipeline():
    from policies.engine import PolicyEngine
    from schemas.codec import AvroCodec
    from services.config import Settings
    from services.gate import GatePipeline
    from services.keyset import DEV_KEYSET, KeySet

    settings = Settings.development()
    # The sealer is given per batch (gate_stage_costs); the steps before sealing do not use it.
    return GatePipeline(PolicyEngine.load_default(), None, settings.pseudonym_secret.encode(),
                        KeySet.load(DEV_KEYSET), AvroCodec(legacy_fingerprints=False)), settings


def worked(backlog) -> list:
    """Each message of the backlog run through the gate's steps (a Work, decided)."""
    from services.gate import Inbound, Work

    pipeline, _ = gate_pipeline()
    out = []
    for i, (key, value, _mid) in enumerate(backlog):
        w = pipeline._run_steps(Inbound("exchange.requests", i % 4, i // 4, value, key))
        if not isinstance(w, Work):
            raise RuntimeError(f"benchmark message {i} was rejected: {w.reason} {w.detail}")
        out.append(w)
    return out


# The gate process's CPU per exchange, stage by stage (gate_stage_costs), with what each covers.
GATE_STAGES = {
    "consume": "KafkaConsumer.poll: fetch responses parsed into records (main thread)",
    "decode_signed": "the SignedMessage layer decoded",
    "decode_request": "the ExchangeRequest envelope decoded",
    "verify_sender": "the signer's key looked up, Ed25519 verified",
    "validate_request": "the envelope validated",
    "decode_payload": "the payload decoded and validated, the pseudonym derived",
    "categorise": "the data categories present in the payload",
    "decide": "the policy request built and decided, the decision record",
    "subject_keys": "the batch's subject keys read (and new ones made) in one transaction",
    "seal": "each message sealed under its subject's key, the Exchange aggregate and its RequestDecided event built",
    "duplicates_check": "message ids already in the ledger looked up",
    "directory_snapshot": "the directory snapshot the decisions name (stored once)",
    "dead_letters": "rejected messages published to the dead-letter topic",
    "ledger_record": "the batch appended with its tracking record (one transaction)",
    "kafka_commit": "the informational offset commit to Kafka",
    "gc": "Python's cyclic garbage collector, run by the gate's thread",
    "loop": "the rest of the gate's thread: the poll loop, building Inbound records, counters, logging",
    "kafka_io_thread": "kafka-python's background threads (network I/O, heartbeats)",
}


class _StageClock:
    """Exclusive CPU time of nested stages on one thread: entering a stage pauses the one it is called from.

    Each timed call costs a few µs of its own (two thread-CPU clock reads), about half of it
    landing in the stage and half in its caller; ``corrected`` takes that out again, as measured
    by ``calibrate`` on an empty call, so the stages add up to what the untimed process spends."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}  # timed calls in, or made from, each stage
        self._stack: list[str] = []
        self._t = 0.0
        self.on = False
        self.per_call = 0.0

    def wrap(self, stage: str, fn):
        import functools

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            self._switch()
            calls = self.calls
            calls[self._stack[-1]] = calls.get(self._stack[-1], 0) + 1
            calls[stage] = calls.get(stage, 0) + 1
            self._stack.append(stage)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch()
                self._stack.pop()
        return timed

    def _switch(self) -> None:
        now = time.thread_time()
        if self._stack:
            top = self._stack[-1]
            self.spent[top] = self.spent.get(top, 0.0) + now - self._t
        self._t = now

    def start(self) -> None:
        self.thread = threading.get_ident()
        self.on, self._t = True, time.thread_time()
        self._stack = ["loop"]

    def stop(self) -> None:
        self._switch()
        self.on = False

    def collecting(self, phase: str, info: dict) -> None:
        """A gc.callbacks hook: a collection on this thread is a stage of its own."""
        if not self.on or threading.get_ident() != self.thread:
            return
        self._switch()
        if phase == "start":
            self.calls[self._stack[-1]] = self.calls.get(self._stack[-1], 0) + 1
            self._stack.append("gc")
        else:
            self._stack.pop()

    def calibrate(self, n: int = 20000) -> None:
        """The clock's own CPU per timed call: an empty call, timed and not."""
        probe = _StageClock()
        empty = lambda: None  # noqa: E731
        timed = probe.wrap("probe", empty)
        probe.start()
        t0 = time.thread_time()
        for _ in range(n):
            timed()
        t1 = time.thread_time()
        for _ in range(n):
            empty()
        t2 = time.thread_time()
        probe.stop()
        self.per_call = max(0.0, ((t1 - t0) - (t2 - t1)) / n)

    def corrected(self) -> dict[str, float]:
        return {k: max(0.0, v - self.per_call / 2 * self.calls.get(k, 0)) for k, v in self.spent.items()}


def _timed_enter(wrap, stage: str, make_cm):
    """``make_cm`` (a context-manager factory) whose ``__enter__`` is timed as ``stage``."""

    class Timed:
        def __init__(self, *args, **kwargs):
            self.cm = make_cm(*args, **kwargs)

        def __enter__(self):
            return wrap(stage, self.cm.__enter__)()

        def __exit__(self, *exc):
            return self.cm.__exit__(*exc)

    return Timed


def gate_stage_costs(backlog, ledger_url: str, bootstrap: str, *, timeout: float = 300) -> dict[str, float]:
    """CPU µs per exchange of every part of the gate process, measured in this process: a GateWorker
    built as ``xledger gate run`` builds it (Runtime.gate_worker) consumes the backlog from the broker
    at ``bootstrap`` (topics created here) into a fresh ledger at ``ledger_url``.

    Each stage is the gate thread's exclusive CPU time in it (GATE_STAGES); ``loop`` is the rest of
    that thread and ``kafka_io_thread`` the process's other threads, so the stages add up to the
    process's CPU over the backlog. Counted from the first poll that returns records (group join and
    start-up are left out). PostgreSQL's own work is not in it."""
    from bench.messages import RECIPIENT, SENDER
    from services import topics
    from services.config import Settings
    from services.gate import settle_gate_heap
    from services.kafka import make_producer
    from services.runtime import Runtime

    settings = Settings.development(ledger_url=ledger_url).with_embedded_broker(bootstrap)
    rt = Runtime(settings)
    rt.create_topics([SENDER[0], RECIPIENT[0]])
    producer = make_producer(settings, client_id="bench-gate-stages")
    for key, value, _mid in backlog:
        producer.send(topics.REQUESTS, key=key, value=value)
    producer.flush()
    producer.close()
    worker = rt.gate_worker("bench-gate-stages")
    clock = _StageClock()
    clock.calibrate()
    pipeline, ledger, consumer = worker.pipeline, worker.ledger, worker.consumer
    for step in list(pipeline.steps):
        setattr(pipeline, step.__name__, clock.wrap(step.__name__, step))
    pipeline.__post_init__()  # the steps list again, now of the timed methods
    pipeline._exchange = clock.wrap("seal", pipeline._exchange)
    pipeline.sealer.batch = _timed_enter(clock.wrap, "subject_keys", pipeline.sealer.batch)
    worker._reject_duplicates = clock.wrap("duplicates_check", worker._reject_duplicates)
    worker._directory_snapshot = clock.wrap("directory_snapshot", worker._directory_snapshot)
    worker.dead_letters.publish = clock.wrap("dead_letters", worker.dead_letters.publish)
    ledger.record = clock.wrap("ledger_record", ledger.record)
    consumer.commit = clock.wrap("kafka_commit", consumer.commit)
    poll = clock.wrap("consume", consumer.poll)
    n = len(backlog)
    window = {}

    def polling(*args, **kwargs):
        records = poll(*args, **kwargs)
        if records and not clock.on:
            clock.start()
            window["process"] = time.process_time()
        return records

    consumer.poll = polling
    handle_batch = worker.handle_batch

    def handling(tp, records):
        handle_batch(tp, records)
        s = worker.stats
        if s["decided"] + s["rejected"] >= n:
            clock.stop()
            window["process"] = time.process_time() - window["process"]
            worker.stop()

    worker.handle_batch = handling
    deadline = threading.Timer(timeout, worker.stop)
    deadline.start()
    threshold = gc.get_threshold()
    settle_gate_heap()  # as `gate run` does once its workers are built
    gc.callbacks.append(clock.collecting)
    try:
        worker.run()
    finally:
        gc.callbacks.remove(clock.collecting)
        gc.unfreeze()
        gc.set_threshold(*threshold)
        deadline.cancel()
        consumer.close()
        worker.producer.close()
        rt.close()
    s = worker.stats
    if s["decided"] + s["rejected"] < n:
        raise RuntimeError(f"the gate recorded {s['decided'] + s['rejected']} of {n} messages in {timeout} s")
    # The other threads: the process's CPU less the gate thread's (clock overhead included in both).
    spent = {"kafka_io_thread": max(0.0, window["process"] - sum(clock.spent.values()))}
    spent.update((k, v) for k, v in clock.corrected().items() if k in GATE_STAGES)
    spent = {k: spent.get(k, 0.0) for k in GATE_STAGES}
    return {k: v / n * 1e6 for k, v in spent.items()}


# --------------------------------------------------------------------------- the raw steps


def raw_step_costs(backlog, bootstrap: str, repeat: int = 3, broker: ServerShare | None = None
                   ) -> dict[str, float]:
    """µs per exchange of the unavoidable steps measured here, interleaved round by round: all of
    RAW_STEPS but ``consume`` and the append (the end-to-end baselines measure those; the append per
    back-end), plus ``merkle_leaf``. ``bootstrap``: a broker with the receipt and inbox topics;
    ``broker``: its CPU, noted over each round of ``encode_and_produce`` (the warm-up is noted too)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    from bench.messages import SENDER
    from schemas.codec import HEADER_LEN, AvroCodec
    from services.config import Settings
    from services.delivery import DecidedExchange, Messages
    from services.kafka import make_producer
    from services.keyset import DEV_KEYSET, KeySet
    from services.signing import DOMAIN

    codec = AvroCodec()
    reg = codec.registry
    values = [v for _, v, _ in backlog]
    works = worked(backlog)
    parsed: dict[str, Any] = {}

    def schema(name: str):
        if name not in parsed:
            parsed[name] = parse_schema(reg.latest(name).raw)
        return parsed[name]

    signed_s, env_s = schema("dk.xledger.SignedMessage"), schema("dk.xledger.ExchangeRequest")

    def avro_decode() -> int:
        for v in values:
            s = schemaless_reader(io.BytesIO(v[HEADER_LEN:]), signed_s, signed_s)
            e = schemaless_reader(io.BytesIO(s["body"][HEADER_LEN:]), env_s, env_s)
            ps = schema(e["payload_type"])
            schemaless_reader(io.BytesIO(e["payload"][HEADER_LEN:]), ps, ps)
        return len(values)

    # avro_decode layer by layer, for the gate's three decode stages (STAGE_FLOOR).
    bodies = [schemaless_reader(io.BytesIO(v[HEADER_LEN:]), signed_s, signed_s)["body"] for v in values]
    envelopes = [schemaless_reader(io.BytesIO(b[HEADER_LEN:]), env_s, env_s) for b in bodies]
    payloads = [(e["payload"], schema(e["payload_type"])) for e in envelopes]

    def avro_signed() -> int:
        for v in values:
            schemaless_reader(io.BytesIO(v[HEADER_LEN:]), signed_s, signed_s)
        return len(values)

    def avro_envelope() -> int:
        for b in bodies:
            schemaless_reader(io.BytesIO(b[HEADER_LEN:]), env_s, env_s)
        return len(bodies)

    def avro_payload() -> int:
        for p, ps in payloads:
            schemaless_reader(io.BytesIO(p[HEADER_LEN:]), ps, ps)
        return len(payloads)

    pub = Ed25519PublicKey.from_public_bytes(KeySet.load(DEV_KEYSET).keys_for(SENDER[0])[0].key.public_key)
    signed = [(w.signed["signature"], DOMAIN + w.signed["body"]) for w in works]

    def ed25519() -> int:
        for sig, data in signed:
            pub.verify(sig, data)
        return len(signed)

    from policies.engine import PolicyEngine

    engine = PolicyEngine.load_default()
    from services.gate import _validate_policy_request
    from services.policy_input import to_policy_request

    decisions = [(_validate_policy_request(to_policy_request(w.envelope)), w.present) for w in works]

    def decide() -> int:
        for request, present in decisions:
            engine.decide(request, present)
        return len(decisions)

    leaves = values

    def merkle_leaf() -> int:
        sha = hashlib.sha256
        for v in leaves:
            h = sha(b"\x00" + v).digest()
            sha(b"\x01" + h + h).digest()
        return len(leaves)

    def message_digest() -> int:
        sha = hashlib.sha256
        for v in values:
            sha(v).hexdigest()
        return len(values)

    seal_payload, open_payload = _sealing(works)

    # The two records an exchange gives, as the relay builds them; encoded here with bare fastavro.
    messages = Messages(codec)
    out_records: list[tuple[str, bytes, str, dict, str, dict]] = []
    allow = next(w for w in works if w.decision["results"][0]["outcome"] == "ALLOW")
    for w in works:
        src = w if w.decision["results"][0]["outcome"] == "ALLOW" else allow
        ex = DecidedExchange(_exchange_uuid(src), src.envelope["sender"]["org"], src.envelope["message_id"], src.subject,
                             _summary(src), "", src.decision)
        result = ex.decision["results"][0]
        inbox = messages.inbox(ex, result, {"payload_type": src.envelope["payload_type"],
                                            "payload": src.envelope["payload"]})
        receipt = messages.receipt(ex, result)
        out_records.append((inbox.topic, inbox.key, "dk.xledger.DeliveredExchange",
                            codec.decode(inbox.value).record, receipt.topic, codec.decode(receipt.value).record))
    # The single-object header (marker + fingerprint) of each record type, as the codec writes it.
    header_bytes = {name: codec.encode(name, out_records[0][i])[:HEADER_LEN]
                    for name, i in (("dk.xledger.DeliveredExchange", 3), ("dk.xledger.DecisionReceipt", 5))}
    inbox_s, receipt_s = schema("dk.xledger.DeliveredExchange"), schema("dk.xledger.DecisionReceipt")
    # The relay's producer (Runtime.relay: make_producer), so that this is the library as the relay uses it:
    # idempotent, lingering, large batches, the key's hash remembered (services.kafka.producer_config).
    producer = make_producer(Settings.development().with_embedded_broker(bootstrap), client_id="bench-raw-produce")
    h_inbox, h_receipt = header_bytes["dk.xledger.DeliveredExchange"], header_bytes["dk.xledger.DecisionReceipt"]

    def encode_and_produce() -> int:
        for i, (inbox_topic, key, _, inbox_rec, receipt_topic, receipt_rec) in enumerate(out_records):
            buf = io.BytesIO()
            buf.write(h_inbox)
            schemaless_writer(buf, inbox_s, inbox_rec)
            producer.send(inbox_topic, key=key, value=buf.getvalue())
            buf = io.BytesIO()
            buf.write(h_receipt)
            schemaless_writer(buf, receipt_s, receipt_rec)
            producer.send(receipt_topic, key=key, value=buf.getvalue())
            if i % 500 == 499:
                producer.flush()
        producer.flush()
        return len(out_records)

    if broker is not None:
        encode_and_produce = broker.wrap("encode_and_produce", encode_and_produce)
    try:
        fns = {"avro_decode": avro_decode, "ed25519_verify": ed25519, "decide": decide,
               "merkle_leaf": merkle_leaf, "encode_and_produce": encode_and_produce,
               "avro_signed": avro_signed, "avro_envelope": avro_envelope, "avro_payload": avro_payload,
               "message_digest": message_digest, "seal_payload": seal_payload, "open_payload": open_payload}
        for fn in fns.values():
            fn()  # warm up
        # CPU time of this process (kafka-python's I/O thread included): the limit is what the cores can
        # do, and on a shared machine CPU time is what other load disturbs least.
        rates = paired_rates(fns, repeat, clock=time.process_time)
    finally:
        producer.close()
    us = {k: 1e6 / v for k, v in rates.items()}
    # open_payload counts only the exchanges that have an inbox copy; per exchange of the backlog.
    us["open_payload"] *= sum(_allowed(w) for w in works) / len(works)
    return us


def _allowed(w) -> bool:
    return any(r["outcome"] == "ALLOW" for r in w.decision["results"])


def _sealing(works, batch: int = 500, page: int = 500):
    """The gate's seal and the relay's open of each message, with cryptography's AESGCM alone.

    What ledger.privacy and ledger.subject_crypto do, without their checks and objects: the gate
    seals the signed message as received under its subject's data key (aad naming the exchange)
    and stores it base64 in the RequestDecided event; the data key is stored wrapped under the master
    key and unwrapped once per subject per batch (CachingCipher). The relay, for each inbox copy,
    opens it again, unwrapping once per subject per page (a page of 500 notifications holds about
    500 exchanges: one RequestDecided event each)."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from ledger.domain import sealed_message_aad
    from ledger.subject_crypto import generate_master_key

    master = AESGCM(generate_master_key())
    wrapped = {}
    for w in works:
        if w.subject not in wrapped:
            nonce = os.urandom(12)
            wrapped[w.subject] = nonce + master.encrypt(nonce, AESGCM.generate_key(bit_length=256), w.subject.encode())
    items = [(w.subject, w.msg.value, sealed_message_aad(_exchange_uuid(w))) for w in works]

    def keys(chunk) -> dict:
        out = {}
        for subject, *_ in chunk:
            if subject not in out:
                k = wrapped[subject]
                out[subject] = AESGCM(master.decrypt(k[:12], k[12:], subject.encode()))
        return out

    def seal_all() -> list[tuple[str, str, bytes]]:
        b64 = base64.b64encode
        out = []
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            ks = keys(chunk)
            for subject, value, aad in chunk:
                nonce = os.urandom(12)
                out.append((subject, b64(nonce + ks[subject].encrypt(nonce, value, aad)).decode(), aad))
        return out

    def seal_payload() -> int:
        return len(seal_all())

    to_open = [s for s, w in zip(seal_all(), works) if _allowed(w)]

    def open_payload() -> int:
        b64 = base64.b64decode
        for i in range(0, len(to_open), page):
            chunk = to_open[i:i + page]
            ks = keys(chunk)
            for subject, text, aad in chunk:
                blob = b64(text)
                ks[subject].decrypt(blob[:12], blob[12:], aad)
        return max(1, len(to_open))

    return seal_payload, open_payload


def step_costs(raw: dict[str, float], consume_rate: float, append_rate: float) -> dict[str, float]:
    """RAW_STEPS in µs per exchange, from ``raw_step_costs`` and the two rates (per CPU second)."""
    return {
        "consume": 1e6 / consume_rate,
        "ed25519_verify": raw["ed25519_verify"],
        "avro_decode": raw["avro_decode"],
        "decide": raw["decide"],
        "append_and_leaf": 1e6 / append_rate + raw["merkle_leaf"],
        "encode_and_produce": raw["encode_and_produce"],
    }


def _exchange_uuid(w):
    from ledger.domain import exchange_id

    return exchange_id(w.envelope["sender"]["org"], w.envelope["message_id"])


def _summary(w) -> dict[str, Any]:
    env = w.envelope
    return {"occurred_at": env["occurred_at"], "sender": env["sender"], "context": env["context"],
            "cooperation_id": env["cooperation_id"], "purpose": env["purpose"]}


# --------------------------------------------------------------------------- CPU of processes


def proc_cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat (or of one
    thread, with ``pid`` "self/task/<tid>")."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class ServerShare:
    """A server's CPU over chosen calls of raw steps, per item they did.

    ``reading()`` gives the CPU seconds of the server's processes by pid (``/proc/<pid>/stat``); between
    two readings a process that appeared counts from zero, and one that exited is lost, so readings are
    taken while the benchmark's connections are open. ``wrap`` notes every call of a step (a function
    that returns how many items it did); ``us`` is µs per item over the calls noted after the first
    ``skip`` (the warm-up), summed rather than a median: a call is a few clock ticks of the server."""

    def __init__(self, reading):
        self.reading = reading
        self.calls: dict[str, list[tuple[float, int]]] = {}

    def note(self, step: str, before: dict[int, float], items: int) -> None:
        after = self.reading()
        spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        self.calls.setdefault(step, []).append((spent, items))

    def wrap(self, step: str, fn):
        def noted() -> int:
            before = self.reading()
            items = fn()
            self.note(step, before, items)
            return items
        return noted

    def us(self, step: str, skip: int = 0) -> float:
        calls = self.calls.get(step, [])[skip:]
        return sum(spent for spent, _ in calls) / max(1, sum(items for _, items in calls)) * 1e6


def process_reading(pid: int):
    """A ServerShare reading of one process (all its threads): the embedded broker."""
    return lambda: {pid: proc_cpu_seconds(pid)}


def _pg_monitor(ledger_url: str, application_name: str):
    """An autocommit connection to the ledger's PostgreSQL database, for reading its backends; and the
    database's name, which ``pg_stat_activity`` lists them under."""
    import psycopg

    from ledger.url import persistence_env

    env = persistence_env(ledger_url)
    conn = psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"] or None, dbname=env["POSTGRES_DBNAME"], autocommit=True,
                           application_name=application_name)
    return conn, env["POSTGRES_DBNAME"]


class PgClientBackends:
    """A ServerShare reading of PostgreSQL: CPU seconds by pid of the client backends connected to the
    ledger's database (``pg_stat_activity``, this reader's own left out; autovacuum and the server's
    background processes are not client backends), from /proc as PgBackendCpu reads them. The
    benchmark is the database's only client while the raw steps run, so these serve its connections."""

    def __init__(self, ledger_url: str):
        self.conn, self.dbname = _pg_monitor(ledger_url, "xlbench-floor-reader")

    def __call__(self) -> dict[int, float]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                                 "AND backend_type = 'client backend'", (self.dbname,)).fetchall()
        out = {}
        for (pid,) in rows:
            try:
                out[pid] = proc_cpu_seconds(pid)
            except OSError:  # exited between the listing and the read
                continue
        return out

    def close(self) -> None:
        self.conn.close()


class SystemCpu:
    """The whole machine's CPU between two readings of the first line of /proc/stat: busy (user,
    nice, system, irq, softirq), idle (idle and iowait: a core waiting for I/O is a core left idle)
    and steal (taken by the hypervisor), in core-seconds. Measured, so that cores left idle are a
    reading and not the remainder of a subtraction, and CPU spent by processes the benchmark does not
    name (kernel threads, other services) shows as what it is."""

    FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

    @classmethod
    def read(cls) -> dict[str, float]:
        with open("/proc/stat") as f:
            values = f.readline().split()[1:1 + len(cls.FIELDS)]
        # /proc/stat counts in USER_HZ, the unit of CLK_TCK on Linux.
        return {name: int(v) / CLK_TCK for name, v in zip(cls.FIELDS, values)}

    @classmethod
    def between(cls, start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
        """busy, idle and steal core-seconds from one ``read()`` to a later one."""
        d = {k: end[k] - start[k] for k in cls.FIELDS}
        return {"busy": d["user"] + d["nice"] + d["system"] + d["irq"] + d["softirq"],
                "idle": d["idle"] + d["iowait"], "steal": d["steal"]}


class PgBackendCpu(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving one database between ``start_window()`` and
    ``stop_window()``, split by ``application_name``: the benchmark's own connections (``harness``,
    the name it gives them through PGAPPNAME) and everything else (the services').

    Backends are the pids ``pg_stat_activity`` lists for the database (this sampler's own left
    out), read from /proc/<pid>/stat (world-readable; the server must run on this machine). A
    backend already there at the start counts from its reading then; one that appears later
    started inside the window and counts from zero. Backends are re-listed every ``every``
    seconds, and one that exits counts up to its last reading: at most ``every`` of its CPU is
    lost (the services keep pooled connections, so exits inside the window are rare)."""

    def __init__(self, ledger_url: str, harness: str, every: float = 0.25):
        super().__init__(daemon=True)
        self.harness, self.every = harness, every
        self.conn, self.dbname = _pg_monitor(ledger_url, "xlbench-pg-sampler")
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.app: dict[int, str] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def _sample(self, baseline: bool = False) -> None:
        rows = self.conn.execute("SELECT pid, application_name FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,)).fetchall()
        with self.lock:
            for pid, app in rows:
                try:
                    cpu = proc_cpu_seconds(pid)
                except OSError:  # exited between the listing and the read
                    continue
                if pid not in self.first:
                    self.first[pid] = cpu if baseline else 0.0
                    self.app[pid] = app or ""
                self.last[pid] = cpu

    def start_window(self) -> None:
        self._sample(baseline=True)
        self.start()

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.every):
                self._sample()
        except BaseException as exc:  # noqa: BLE001 - reported by stop_window
            self.error = exc

    def stop_window(self) -> dict[str, float]:
        self.stopping.set()
        self.join(timeout=10)
        if self.error is not None:
            raise RuntimeError(f"sampling PostgreSQL's backends failed: {self.error!r}")
        self._sample()
        self.conn.close()
        out = {"postgres": 0.0, "harness": 0.0}
        with self.lock:
            for pid, first in self.first.items():
                out["harness" if self.app[pid] == self.harness else "postgres"] += self.last[pid] - first
        return out


# --------------------------------------------------------------------------- the relay, in process


def relay_stage_costs(ledger_url: str, bootstrap: str, exchanges: int) -> dict[str, float]:
    """CPU µs per exchange of the relay's stages over a ledger the gate filled (``gate_stage_costs``),
    run in this process against the broker at ``bootstrap``: reading pages, decoding the decided
    exchanges, planning and encoding the records, publishing them, recording the deliveries, then
    folding everything into the Merkle tree and the read models."""
    from services.config import Settings
    from services.runtime import Runtime

    from services.heap import settle_heap

    rt = Runtime(Settings.development(ledger_url=ledger_url).with_embedded_broker(bootstrap))
    relay = rt.relay()
    threshold = gc.get_threshold()
    settle_heap()  # as `relay run` does once the relay is built
    spent: dict[str, float] = {"notifications": 0.0, "decode": 0.0, "plan_and_encode": 0.0, "publish": 0.0,
                               "record": 0.0, "merkle": 0.0, "read_models": 0.0}

    in_page = [False]  # only the relay's own calls count: the read models read and record through the same ledger

    def timed(stage: str, fn):
        def wrapper(*args, **kwargs):
            if not in_page[0]:
                return fn(*args, **kwargs)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - t0
        return wrapper

    ledger = rt.ledger
    ledger.notifications = timed("notifications", ledger.notifications)
    ledger.record = timed("record", ledger.record)
    for name in ("_decided", "_resolved", "_rejections"):
        setattr(relay, name, timed("decode", getattr(relay, name)))
    relay._send = timed("publish", relay._send)
    project = getattr(relay, "project", None)
    if project is not None:  # the read models, projected from the pages the relay decoded

        def projecting(*args):
            in_page[0] = False  # what the projection reads and writes is the read models' cost
            t0 = time.process_time()
            try:
                return project(*args)
            finally:
                spent["read_models"] += time.process_time() - t0
                in_page[0] = True
        relay.project = projecting
    try:
        total = 0.0
        while True:
            t0 = time.process_time()
            in_page[0] = True
            consumed = relay.run_once()
            in_page[0] = False
            total += time.process_time() - t0
            if not consumed:
                break
        spent["plan_and_encode"] = total - sum(spent[k] for k in ("notifications", "decode", "publish", "record",
                                                                   "read_models"))
        t0 = time.process_time()
        while rt.integrate().appended:
            pass
        spent["merkle"] = time.process_time() - t0
        t0 = time.process_time()
        rt.read_models.catch_up()
        spent["read_models"] += time.process_time() - t0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        relay.producer.close()
        rt.close()
    return {k: v / exchanges * 1e6 for k, v in spent.items()}


# --------------------------------------------------------------------------- the required floor, in the ledger


def required_ledger_costs(ledger_url: str, exchanges: int, repeat: int = 3, page: int = 500,
                          server: ServerShare | None = None) -> dict[str, float]:
    """µs per exchange of the required steps that read or write the ledger's database (REQUIRED_STEPS
    outbox_select, event_decode, read_model_rows, merkle_nodes), over a ledger the gate and the relay
    filled (``relay_stage_costs``): the same notifications, read models and Merkle rows, the library alone
    (the outbox read as ``Ledger.notifications`` does it, orjson, sqlite3 or psycopg: ``_insert_copies``),
    CPU time of this process (the database server's own work is not in it), median of ``repeat`` rounds,
    interleaved. ``server``: PostgreSQL's backends (PgClientBackends), noted over each round of the three
    steps that reach the database."""
    import orjson

    from ledger.application import Ledger
    from services.runtime import INTEGRATE_STEP

    ledger = Ledger(ledger_url)
    try:
        def select() -> int:
            # Ledger.notifications, as the relay reads the outbox: on PostgreSQL eventsourcing's statement with
            # the rows in binary (its own select sends each event's state as hex, which costs more). One page
            # held at a time, as the relay holds it: keeping the whole outbox cost ~3 µs more per exchange.
            read, start = 0, 1
            while batch := ledger.notifications(start, page):
                read += len(batch)
                start = batch[-1].id + 1
            return read

        published = [n.state for n in ledger.all_notifications(page_size=page)
                     if n.topic.endswith((".RequestDecided", ".Requested", ".Decided"))]
        conn, ph = _raw_connection(ledger_url)
    except BaseException:
        ledger.close()
        raise
    try:
        models = _copy_tables(conn, ledger_url, "xl_rm_")
        merkle = _copy_tables(conn, ledger_url, "xl_merkle_")
        spent: dict[str, list[float]] = {k: [] for k in ("outbox_select", "event_decode", "read_model_rows",
                                                          "merkle_nodes")}
        leaves = next((len(t[2]) for t in merkle if t[0] == "xl_merkle_leaves"), 0)
        pages = max(1, -(-leaves // page))  # the relay's pages: one transaction each for the read models
        steps = max(1, -(-leaves // INTEGRATE_STEP))  # integrate steps: one transaction each for the Merkle rows
        for _ in range(repeat):
            before = server.reading() if server is not None else {}
            t0 = time.process_time()
            select()
            spent["outbox_select"].append(time.process_time() - t0)
            if server is not None:
                server.note("outbox_select", before, exchanges)
            t0 = time.process_time()
            for state in published:
                orjson.loads(state)
            spent["event_decode"].append(time.process_time() - t0)
            spent["read_model_rows"].append(_insert_copies(conn, ph, models, pages, server, "read_model_rows",
                                                           exchanges))
            spent["merkle_nodes"].append(_insert_copies(conn, ph, merkle, steps, server, "merkle_nodes", exchanges))
        for name, *_ in models + merkle:
            conn.execute(f"DROP TABLE IF EXISTS xlraw_{name}")
        conn.commit()
    finally:
        conn.close()
        ledger.close()
    return {k: statistics.median(v) / exchanges * 1e6 for k, v in spent.items()}


def _raw_connection(ledger_url: str):
    """A plain DB-API connection to the ledger's database (its schema on PostgreSQL), and its placeholder."""
    from urllib.parse import parse_qs, urlparse

    if ledger_url.startswith("sqlite:///"):
        import sqlite3

        return sqlite3.connect(ledger_url[len("sqlite:///"):]), "?"
    import psycopg

    parsed = urlparse(ledger_url)
    conn = psycopg.connect(ledger_url.split("?", 1)[0])
    schema = parse_qs(parsed.query).get("schema")
    if schema:
        conn.execute(f'SET search_path TO "{schema[0]}"')
        conn.commit()
    return conn, "%s"


def _copy_tables(conn, ledger_url: str, prefix: str) -> list[tuple[str, list[str], list[tuple]]]:
    """Each table whose name starts with ``prefix``: (name, columns, rows), with an empty table
    ``xlraw_<name>`` of the same shape (columns, keys, indexes) made beside it."""
    sqlite = ledger_url.startswith("sqlite:")
    if sqlite:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
                                            (prefix + "%",)).fetchall()]
    else:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name LIKE %s", (prefix + "%",)).fetchall()]
    out = []
    for name in sorted(names):
        copy = f"xlraw_{name}"
        conn.execute(f"DROP TABLE IF EXISTS {copy}")
        if sqlite:
            for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                                       "ORDER BY type DESC", (name,)).fetchall():  # the table, then its indexes
                ddl = sql.replace(name, copy)
                if ddl.upper().startswith("CREATE INDEX") or ddl.upper().startswith("CREATE UNIQUE INDEX"):
                    ddl = ddl.replace(" INDEX ", " INDEX IF NOT EXISTS ", 1).replace("IF NOT EXISTS IF NOT EXISTS",
                                                                                    "IF NOT EXISTS")
                conn.execute(ddl)
        else:
            conn.execute(f"CREATE TABLE {copy} (LIKE {name} INCLUDING ALL)")
        cur = conn.execute(f"SELECT * FROM {name}")
        cols = [d[0] for d in cur.description]
        rows = [tuple(r) for r in cur.fetchall()]
        types = None
        if not sqlite:
            types = dict(conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                      "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                                      (name,)).fetchall())
        out.append((name, cols, rows, types))
    conn.commit()
    return out


def _insert_copies(conn, ph: str, tables, transactions: int, server: ServerShare | None = None, step: str = "",
                   exchanges: int = 1) -> float:
    """CPU seconds of inserting every table's rows into its copy, spread over ``transactions``
    transactions, each with one statement per table: sqlite3's executemany (one prepared statement
    stepped in C); on PostgreSQL one ``INSERT ... SELECT FROM unnest`` of a binary array per column
    (psycopg's executemany sends a statement per row, far slower). The copies are emptied afterwards.
    ``server``: noted as ``step`` over the inserts, per ``exchanges``."""
    chunks = []
    for t in range(transactions):
        chunk = []
        for name, cols, rows, types in tables:
            lo, hi = len(rows) * t // transactions, len(rows) * (t + 1) // transactions
            if hi <= lo:
                continue
            if types is None:
                chunk.append((f"INSERT INTO xlraw_{name} ({', '.join(cols)}) VALUES ({', '.join([ph] * len(cols))})",
                              rows[lo:hi], True))
            else:
                arrays = ", ".join(f"%b::{types[c]}[]" for c in cols)
                chunk.append((f"INSERT INTO xlraw_{name} ({', '.join(cols)}) SELECT * FROM unnest({arrays})",
                              rows[lo:hi], False))
        chunks.append(chunk)
    before = server.reading() if server is not None else {}
    t0 = time.process_time()
    for chunk in chunks:
        cur = conn.cursor()
        for sql, rows, many in chunk:
            if many:
                cur.executemany(sql, rows)
            else:
                cur.execute(sql, [list(column) for column in zip(*rows)])
        conn.commit()
    spent = time.process_time() - t0
    if server is not None:
        server.note(step, before, exchanges)
    for name, *_ in tables:
        conn.execute(f"DELETE FROM xlraw_{name}")
    conn.commit()
    return spent


# --------------------------------------------------------------------------- the ledger's JSON


def transcoder_rates(ledger_url: str, repeat: int = 9) -> dict[str, float]:
    """Events/s of the ledger's transcoder (ledger.transcoder, orjson) and of eventsourcing's own
    JSONTranscoder, encoding and decoding the stored events of a ledger the gate filled, interleaved."""
    from eventsourcing.persistence import JSONTranscoder

    from ledger.application import Ledger

    ledger = Ledger(ledger_url)
    try:
        ours = ledger.mapper.transcoder
        plain = JSONTranscoder()
        ledger.register_transcodings(plain)
        states = [n.state for n in ledger.all_notifications()]
    finally:
        ledger.close()
    objects = [plain.decode(s) for s in states]

    def run(fn, items):
        def go() -> int:
            for x in items:
                fn(x)
            return len(items)
        return go

    return paired_rates({"decode": run(ours.decode, states), "decode_plain": run(plain.decode, states),
                         "encode": run(ours.encode, objects), "encode_plain": run(plain.encode, objects)}, repeat)
