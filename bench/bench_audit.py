"""The auditors' tools at scale: ``audit reevaluate``, ``policy impact`` and ``replay`` over ledgers of
100k (and, with ``--full``, 1M) entries, on SQLite and PostgreSQL.

How the ledgers are built (no hand-made entries). Every exchange is a signed KSP release notice
with its own message id and one of ~6,500 subjects, decided by the gate's own ``GatePipeline``
(decode, Ed25519, Avro, policy, seal under the subject's key read per batch) and appended with
``Ledger.record`` in batches of 250 with a tracking record, as ``xledger gate run`` does; two
builder processes write at once, as two gates do. What is left out is Kafka: the messages go
to the pipeline in process instead of through the broker (the e2e bench measures that path).
For each decision the relay's own bookkeeping events are appended (``services.delivery.delivered``:
an inbox delivery per allowed recipient and a receipt per recipient), so an exchange is ~3.7
entries as in a ledger the relay maintains. The live read models are caught up afterwards, as
the relay keeps them.

Baseline, in the same run on the same ledger: the raw rate of reading the recorded events
(request and decision, topic-filtered pages of eventsourcing's notification read, decoded by
its mapper) and deciding them (``PolicyEngine.decide`` of the same kind of request), one
process: the least any re-evaluation must do. Re-evaluation and impact run as the CLI runs
them (``workers`` auto: two processes on two cores). Replay runs in a subprocess of its own,
whose peak RSS (``VmHWM``) is reported at both sizes.

Run: ``python -m bench.bench_audit [--full | --sizes 20000]``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from bench.common import row, size_label

BATCH = 250
ENTRIES_PER_EXCHANGE = 2.67  # RequestDecided, a receipt, and an inbox delivery for 2 in 3
BUILDERS = 2
# Exchanges built through the gate's pipeline (the 100k-entry ledger); a bigger ledger repeats them
# as re-sends (``_replicate_range``).
SEED = 37_453  # 100,000 entries ÷ ENTRIES_PER_EXCHANGE
# The live read models of a built SQLite ledger are caught up in pages (transactions, each with its
# tracking record) of this many entries: the same rows, indexes kept up row by row as the relay keeps
# them, in a tenth of the commits of the relay's pages of 500 (1M entries: 50 -> 43 s; on PostgreSQL
# it made no difference, 32.8 against 30.2-32.5 s, so ``transplant`` keeps the relay's pages).
CATCH_UP_PAGE = 5000
# The raw baseline reads at most this many exchanges (it is a rate; the whole log adds nothing).
BASELINE_MAX = 60_000


# -- building the ledger ---------------------------------------------------------------------------


def _cprs() -> list[str]:
    # Valid in form and date (days 01-28 of March 1991), ~6,500 distinct subjects.
    return [f"{d:02d}0391{s:04d}" for d in range(1, 29) for s in range(1000, 9999, 39)]


def _record_retrying(record) -> None:
    """Runs ``record()`` (one batch, one transaction) as the gate does: a locked or busy database
    is waited out and the whole batch recorded again, up to 50 times."""
    from ledger.application import LEDGER_UNAVAILABLE

    for attempt in range(50):
        try:
            return record()
        except LEDGER_UNAVAILABLE:
            time.sleep(0.05 * (attempt + 1))
    raise RuntimeError("the ledger stayed unavailable")


def _build_part(url: str, start: int, stop: int, worker: int) -> int:
    from services.agency import Publisher
    from services.config import Settings
    from services.demo import KSP_SENDER, release_notice
    from services.gate import Inbound
    from services.keyring import DEV_KEY_ID, dev_private_key
    from services.runtime import Runtime

    rt = Runtime(Settings.development(ledger_url=url))
    try:
        pipeline = rt.pipeline()
        pub = Publisher(*KSP_SENDER, producer=None, key=dev_private_key(KSP_SENDER[0]), key_id=DEV_KEY_ID,
                        codec=rt.codec)
        cprs = _cprs()
        now = datetime.now(timezone.utc)
        topic = f"exchange.requests.bench{worker}"
        for first in range(start, stop, BATCH):
            msgs = []
            for i in range(first, min(stop, first + BATCH)):
                lawful = i % 3 != 0
                req = release_notice(now.date(), cpr=cprs[(i * 7919) % len(cprs)], name=f"Person {i}",
                                     release_in_days=20 if lawful else 400, age=30)
                env = pub.envelope(occurred_at=now, message_id=f"audit-{i:08d}", **req)
                msgs.append(Inbound(topic, 0, i, pub.signed_bytes(env)))
            _record_retrying(lambda: _record_batch(rt, pipeline, msgs, topic))
        return stop - start
    finally:
        rt.close()


def _record_batch(rt, pipeline, msgs, topic) -> None:
    """One batch as the gate records it, with the relay's delivery bookkeeping for its decisions."""
    from ledger.application import Tracking
    from ledger.domain import Exchange
    from services.delivery import Target, delivered
    from services.demo import KSP_SENDER
    from services.topics import inbox, receipts

    results = pipeline.process_batch(msgs)
    records = list(results)
    for ex in results:
        if not isinstance(ex, Exchange):
            continue
        for r in ex.decision["results"]:
            if r["outcome"] == "ALLOW":
                records.append(delivered(Target(str(ex.id), r["recipient"], "inbox"), "PUBLISHED",
                                         inbox(r["recipient"])))
            records.append(delivered(Target(str(ex.id), r["recipient"], "receipt"), "PUBLISHED",
                                     receipts(KSP_SENDER[0])))
    rt.ledger.record(records, Tracking(f"kafka:{topic}:0", msgs[-1].offset))




def _build_range(job, start: int, stop: int, progress) -> int:
    return _build_part(job, start, stop, start)


def _replicate_range(job, start: int, stop: int, progress) -> int:
    """Copies ``start``..``stop`` - 1 of the pipeline-built exchanges, as re-sends: copy ``k`` is the
    message of the ``(k - 1) % seed``-th seed exchange in log order (same sender, subject, payload)
    sent again under its own message id, signed again by the sender (``Publisher.signed_bytes``),
    sealed under the subject's key bound to its own exchange id, and recorded through
    ``Exchange`` and ``Ledger.record`` with the relay's delivery events, in batches with a
    tracking record as the gate writes them. Its decision is the seed's (same request, same
    policy, same directory, same key time) with the request id and digest of the new message,
    computed by the same code the engine uses. What is skipped is the gate's re-doing of the same
    work per copy: decoding, Ed25519, validating and deciding the same request again (about 2/3
    of the build's CPU). ``audit reevaluate`` in the benchmark re-decides every copy from its own
    sealed bytes and must agree with it, so a wrong copy fails the run."""
    import hashlib

    from ledger.application import Ledger, Tracking
    from ledger.domain import Exchange, exchange_id, sealed_message_aad
    from ledger.privacy import LedgerSealer
    from policies.model import ExchangeRequest
    from schemas.codec import AvroCodec
    from services.agency import Publisher
    from services.audit import recorded_pages
    from services.config import Settings
    from services.delivery import Target, delivered
    from services.demo import KSP_SENDER
    from services.keyring import DEV_KEY_ID, dev_private_key
    from services.policy_input import to_policy_request
    from services.topics import inbox, receipts

    url, seed = job
    settings = Settings.development(ledger_url=url)
    ledger = Ledger(url)
    try:
        codec = AvroCodec()
        sealer = LedgerSealer.for_ledger(ledger, settings.master_key)
        pub = Publisher(*KSP_SENDER, producer=None, key=dev_private_key(KSP_SENDER[0]), key_id=DEV_KEY_ID,
                        codec=codec)
        # The seed exchanges in log order, each with its envelope opened once per process.
        seeds = []
        for page in recorded_pages(ledger, stop=ledger.max_notification_id() + 1):
            with sealer.batch({r.subject for r in page}, create=False) as keys:
                for r in page:
                    raw = keys.open(r.subject, r.sealed_message, sealed_message_aad(r.exchange_id))
                    signed = codec.decode(raw, expect="dk.xledger.SignedMessage").record
                    env = codec.decode(signed["body"], expect="dk.xledger.ExchangeRequest").record
                    seeds.append((r, env))
        assert len(seeds) == seed, (len(seeds), seed)
        topic = f"exchange.requests.copies{start}"
        for first in range(start, stop, BATCH):
            todo = range(first, min(stop, first + BATCH))  # copy k is exchange seed + k

            def record_batch(todo=todo) -> None:
                records = []
                with sealer.batch({seeds[(k - 1) % seed][0].subject for k in todo}, create=False) as keys:
                    for k in todo:
                        rec, env = seeds[(k - 1) % seed]
                        env = {**env, "message_id": f"audit-{seed + k:08d}"}
                        raw = pub.signed_bytes(env)
                        request = ExchangeRequest.model_validate(to_policy_request(env))
                        decision = {**rec.decision, "request_id": request.id,
                                    "request_digest": request.digest()}
                        xid = exchange_id(rec.sender, env["message_id"])
                        # As the gate builds it: one RequestDecided event.
                        ex = Exchange.decided(decision, id=xid, sender=rec.sender, message_id=env["message_id"],
                                              source={"topic": topic, "partition": 0, "offset": k},
                                              summary=rec.summary, subject=rec.subject,
                                              message_digest="sha256:" + hashlib.sha256(raw).hexdigest(),
                                              sealed_message=keys.seal(rec.subject, raw, sealed_message_aad(xid)))
                        records.append(ex)
                        for r in decision["results"]:
                            if r["outcome"] == "ALLOW":
                                records.append(delivered(Target(str(xid), r["recipient"], "inbox"),
                                                         "PUBLISHED", inbox(r["recipient"])))
                            records.append(delivered(Target(str(xid), r["recipient"], "receipt"),
                                                     "PUBLISHED", receipts(KSP_SENDER[0])))
                ledger.record(records, Tracking(f"kafka:{topic}:0", todo[-1]))

            _record_retrying(record_batch)
        return stop - start
    finally:
        ledger.close()


def build(url: str, exchanges: int, *, seed: int | None = None) -> dict:
    """Fills an empty ledger with ``exchanges`` exchanges (two builder processes); returns timings.

    The first ``seed`` exchanges (default: all up to ``SEED``, the 100k-entry ledger) go through
    the gate's pipeline; the rest are re-sends of them (``_replicate_range``)."""
    import resource

    from ledger.application import Ledger
    from ledger.readmodels import ReadModels
    from services.partitions import ranges, run_partitioned

    seed = min(exchanges, SEED if seed is None else seed)
    t0 = time.perf_counter()
    cpu0 = _children_cpu(resource)
    # partitions.run_partitioned splits 1..N; here N is the number of exchanges, not positions.
    run_partitioned(_build_range, url, seed, BUILDERS) if seed > 2 * BATCH else \
        [_build_part(url, a, b, a) for a, b in ranges(seed, 1)]
    if exchanges > seed:
        # Exchanges seed..exchanges-1: run_partitioned cuts 1..N, so the offset is added back.
        run_partitioned(_replicate_range, (url, seed), exchanges - seed, BUILDERS) \
            if exchanges - seed > 2 * BATCH else _replicate_range((url, seed), 1, exchanges - seed + 1, None)
    built = time.perf_counter() - t0
    built_cpu = _children_cpu(resource) - cpu0
    ledger = Ledger(url)
    try:
        t1 = time.perf_counter()
        ReadModels(ledger, page_size=CATCH_UP_PAGE).catch_up()
        projected = time.perf_counter() - t1
        return {"entries": ledger.max_notification_id(), "build_s": built, "readmodels_s": projected,
                "build_cpu_s": built_cpu, "seed": seed, "exchanges": exchanges}
    finally:
        ledger.close()


def _children_cpu(resource) -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def transplant(source_url: str, target_url: str) -> dict:
    """Copies a built ledger's stored events (in their order, bytes unchanged), subject keys and
    deliveries' index into an empty ledger on another back-end (PostgreSQL: one binary COPY under the
    same notification ids, ``_copy_events_postgres``; else eventsourcing's own recorder), and catches
    up its read models: the PostgreSQL ledger holds exactly the exchanges the gate's pipeline recorded
    on SQLite, without deciding them all a second time."""
    from eventsourcing.persistence import StoredEvent

    from ledger.application import Ledger
    from ledger.readmodels import ReadModels

    t0 = time.perf_counter()
    src, dst = Ledger(source_url), Ledger(target_url)
    try:
        if dst.tables.is_postgres and not dst.max_notification_id():
            _copy_events_postgres(src, dst)
        else:
            batch = []
            for n in src.all_notifications(page_size=5000):
                batch.append(StoredEvent(n.originator_id, n.originator_version, n.topic, n.state))
                if len(batch) >= 5000:
                    dst.recorder.insert_events(batch)
                    batch = []
            if batch:
                dst.recorder.insert_events(batch)
        rows = src.tables.fetchall("SELECT subject, wrapped_key, destroyed, master_key_id FROM xl_subject_keys")
        # The deliveries' index too, which Ledger.record writes with each delivery's entry: without it the
        # review app's decision page would find the deliveries the way it does for older ledgers.
        deliveries = src.tables.fetchall("SELECT delivery_id, exchange_id, entry_id FROM xl_deliveries")
        with dst.tables.cursor() as c:
            c.executemany("INSERT INTO xl_subject_keys (subject, wrapped_key, destroyed, master_key_id) "
                          "VALUES (?, ?, ?, ?)", rows)
            c.executemany("INSERT INTO xl_deliveries (delivery_id, exchange_id, entry_id) VALUES (?, ?, ?)",
                          deliveries)
        copied = time.perf_counter() - t0
        t1 = time.perf_counter()
        ReadModels(dst).catch_up()
        return {"entries": dst.max_notification_id(), "build_s": copied, "readmodels_s": time.perf_counter() - t1}
    finally:
        src.close()
        dst.close()


def _copy_events_postgres(src, dst) -> None:
    """The stored events into an empty PostgreSQL events table with one binary ``COPY``, each under
    its SQLite notification id (so the same ids as ``insert_events`` gives an empty table), the id
    sequence then set past the last: the same rows as eventsourcing's insert in batches of 5,000,
    which locks the table, inserts from an array and returns the ids per batch (59 s of the 1M
    copy in the full run of 2026-12-01 09:45)."""
    from psycopg.sql import SQL, Identifier

    ds = dst.recorder.datastore
    table = Identifier(ds.schema, dst.recorder.events_table_name)
    with ds.transaction(commit=True) as cur:
        copy = SQL("COPY {} (notification_id, originator_id, originator_version, topic, state) "
                   "FROM STDIN (FORMAT BINARY)").format(table)
        with cur.copy(copy) as cp:
            cp.set_types(["bigint", "uuid", "bigint", "text", "bytea"])
            for n in src.all_notifications(page_size=5000):
                cp.write_row((n.id, n.originator_id, n.originator_version, n.topic, n.state))
        cur.execute(SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), MAX(notification_id)) "
                        "FROM {}").format(table), [f'"{ds.schema}"."{dst.recorder.events_table_name}"'])


# -- measuring -------------------------------------------------------------------------------------


def raw_read_and_decide(ledger, limit: int) -> tuple[float, int]:
    """(exchanges/s, exchanges) of the least re-evaluation must do: read the request and decision
    events, decode them, decide a request of the same kind. One process."""
    from ledger.domain import sealed_message_aad
    from policies.bundle import BundleSet
    from policies.model import ExchangeRequest
    from services.audit import _TOPICS, Redecider, recorded_pages
    from services.config import Settings
    from services.gate import Inbound, Work
    from services.keyset import DEV_KEYSET, KeySet
    from services.policy_input import to_policy_request

    settings = Settings.development(ledger_url=ledger.url)
    red = Redecider(ledger, settings.master_key, settings.pseudonym_secret.encode(), KeySet.load(DEV_KEYSET))
    bundle = BundleSet.load().bundles[0]
    # Twenty real requests of the ledger, prepared untimed: the policy input the gate decides.
    prepared = []
    page = next(recorded_pages(ledger))[:20]
    directory, _ = red.directory_for(page[0])  # the directory the decisions recorded
    pipe = red._pipeline(bundle, directory)
    for rec in page:
        raw = red.sealer.open(rec.subject, rec.sealed_message, sealed_message_aad(rec.exchange_id))
        w = Work(Inbound("t", 0, 0, raw), at=rec.verified_at)
        for step in pipe.steps[:-1]:  # everything but deciding
            step(w)
        prepared.append((ExchangeRequest.model_validate(to_policy_request(w.envelope)), w.present))
    engine = red.engine(bundle, directory)
    to_event = ledger.mapper.to_domain_event
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    pos = 1
    while n < limit:
        page = ledger.recorder.select_notifications(pos, limit=1000, topics=_TOPICS)
        if not page:
            break
        for note in page:
            to_event(note)
            if note.topic != _TOPICS[0]:  # a decision: a RequestDecided event, or an older ledger's Decided
                req, present = prepared[n % len(prepared)]
                engine.decide(req, present)
                n += 1
        pos = page[-1].id + 1
    _LAST_CPU["raw"] = n / (time.process_time() - c0)  # exchanges per CPU second
    return n / (time.perf_counter() - t0), n


def _tool(ledger, which: str, *, workers=None, per_exchange=False, check_signatures=False) -> tuple[float, int, float]:
    """(exchanges/s, exchanges, seconds) of re-evaluation or impact as the CLI runs it."""
    from policies.bundle import BundleSet
    from services.audit import Redecider, impact, load_bundles, reevaluate
    from services.config import Settings
    from services.keyset import DEV_KEYSET, KeySet

    settings = Settings.development(ledger_url=ledger.url)
    red = Redecider(ledger, settings.master_key, settings.pseudonym_secret.encode(), KeySet.load(DEV_KEYSET),
                    check_signatures=check_signatures)
    import resource

    t0, c0 = time.perf_counter(), time.process_time() + _children_cpu(resource)
    if which == "reevaluate":
        report = reevaluate(ledger, red, load_bundles(), workers=workers, per_exchange=per_exchange)
        n = report.checked
        assert report.ok, (report.errors[:3], report.divergent[:3])
    else:
        report = impact(ledger, red, BundleSet.load().bundles[-1], known=load_bundles(), workers=workers,
                        per_exchange=per_exchange)
        n = report.requests
    dt = time.perf_counter() - t0
    _LAST_CPU[which] = time.process_time() + _children_cpu(resource) - c0  # every process of the run
    return n / dt, n, dt


_LAST_CPU: dict[str, float] = {}


_REPLAY = """
import json, resource, sys, time
from ledger.application import Ledger
from services.audit import replay
def peak():
    # VmHWM: this process's own peak. ru_maxrss is not: Linux keeps it across fork and exec, so a
    # subprocess of the (large) benchmark process starts at the benchmark's own RSS.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ledger = Ledger(sys.argv[1])
phases = {"opened": peak()}
total = ledger.max_notification_id()
def progress(last, n):  # the peak so far at each tenth of the rebuild: where it grows
    phases.setdefault(f"rebuilt_{10 * last // total * 10}pct", peak())
t0 = time.perf_counter()
report = replay(ledger, progress=progress)
dt = time.perf_counter() - t0
phases["compared"] = peak()
print(json.dumps({"equal": report.equal, "entries": report.consumed, "seconds": dt,
                  "peak_rss_mb": peak(), "phases": phases}))
"""


def replay_in_subprocess(url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _REPLAY, url], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or not lines[-1].startswith("{"):
        # CalledProcessError would say only the exit status: the cause is in the subprocess's stderr.
        raise RuntimeError(f"the replay subprocess failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


# -- the run ---------------------------------------------------------------------------------------


def measure(url: str, backend: str, info: dict, how: str, *, compare_old: bool, replay_rss: dict,
            emit=None) -> list[dict]:
    """The rows of one ledger. ``emit`` gets them as they are measured: a run stopped or failing
    later (the replay of a 1M ledger takes minutes) has printed the tools' numbers already."""
    from ledger.application import Ledger

    rows = _Rows(emit)
    size = info.get("label") or size_label(info["entries"])
    pre = f"audit.{backend}.{size}"
    print(f"[bench] audit {backend}: {info['entries']} entries in {info['build_s']:.0f}s "
          f"(CPU {info.get('build_cpu_s', 0):.0f}s; +{info['readmodels_s']:.0f}s read models)",
          file=sys.stderr, flush=True)
    rows.append(row(f"{pre}.build", info["entries"] / info["build_s"], "entries/s", how))
    ledger = Ledger(url)
    try:
        limit = BASELINE_MAX  # the read stops at the end of a smaller log
        raw1, _ = raw_read_and_decide(ledger, limit)
        raw_cpu1 = _LAST_CPU["raw"]
        re_rate, re_n, re_s = _tool(ledger, "reevaluate")
        re_cpu = _LAST_CPU["reevaluate"]
        im_rate, im_n, im_s = _tool(ledger, "impact")
        im_cpu = _LAST_CPU["impact"]
        raw2, _ = raw_read_and_decide(ledger, limit)
        raw_cpu = (raw_cpu1 + _LAST_CPU["raw"]) / 2
        raw = (raw1 + raw2) / 2  # before and after: load on the shared machine hits both alike
        base = f"raw read + decode + decide, 1 process ({raw1:.0f}/{raw2:.0f})"
        rows.append(row(f"{pre}.reevaluate", re_rate, "exchanges/s", base, raw, target=0.5))
        rows.append(row(f"{pre}.reevaluate.seconds", re_s, "s", f"{re_n} exchanges, workers auto, "
                        f"CPU {re_cpu:.1f} s in all processes"))
        rows.append(row(f"{pre}.impact", im_rate, "exchanges/s", base, raw, target=0.5))
        rows.append(row(f"{pre}.impact.seconds", im_s, "s", f"{im_n} exchanges, workers auto, "
                        f"CPU {im_cpu:.1f} s in all processes"))
        # The rate rows above set the tool's processes (two on two cores) against one raw process;
        # per CPU second, every process of the tool counted, the comparison is like for like.
        cbase = "raw read + decode + decide per CPU second, 1 process"
        rows.append(row(f"{pre}.reevaluate.per_cpu_second", re_n / re_cpu, "exchanges/CPU s", cbase, raw_cpu))
        rows.append(row(f"{pre}.impact.per_cpu_second", im_n / im_cpu, "exchanges/CPU s", cbase, raw_cpu))
        rows.flush()
        if compare_old:
            # One process, keys per page, bytes trusted; and the path before this change: one key
            # transaction per exchange, Ed25519 again, one process.
            one_rate, _, _ = _tool(ledger, "reevaluate", workers=1)
            sig_rate, _, _ = _tool(ledger, "reevaluate", workers=1, check_signatures=True)
            old_rate, _, _ = _tool(ledger, "reevaluate", workers=1, per_exchange=True, check_signatures=True)
            rows.append(row(f"{pre}.reevaluate.one_process", one_rate, "exchanges/s", base, raw))
            rows.append(row(f"{pre}.reevaluate.one_process_check_signatures", sig_rate, "exchanges/s", base, raw))
            rows.append(row(f"{pre}.reevaluate.old_path", old_rate, "exchanges/s", base, raw))
    finally:
        ledger.close()
    rows.flush()
    rp = replay_in_subprocess(url)
    assert rp["equal"], rp
    first = replay_rss.setdefault(backend, (size, rp["peak_rss_mb"]))
    rows.append(row(f"{pre}.replay.peak_rss", rp["peak_rss_mb"], "MB",
                    f"replay peak RSS at {first[0]}", first[1], higher_better=False,
                    target=0.8 if first[0] != size else None))
    rows.append(row(f"{pre}.replay", rp["entries"] / rp["seconds"], "entries/s",
                    f"{rp['seconds']:.0f} s, subprocess"))
    print(f"[bench] audit {backend} {size} replay peak RSS by phase (MB): {rp['phases']}", file=sys.stderr, flush=True)
    rows.flush()
    return list(rows)


class _Rows(list):
    """The rows so far; ``flush`` hands those not yet given to ``emit``."""

    def __init__(self, emit):
        super().__init__()
        self.emit, self.given = emit, 0

    def flush(self) -> None:
        if self.emit is not None:
            self.emit(self[self.given:])
        self.given = len(self)


def run(sizes=(100_000,), backends=("sqlite", "postgres"), echo: bool = False, shared=None) -> list[dict]:
    """``sizes`` in ledger entries. Each size is built once on SQLite through the gate's pipeline,
    then copied to PostgreSQL (``transplant``), by ``shared`` (``bench.ledgers.SharedLedgers``: under
    ``python -m bench`` the review group measures on the same ledgers; else one of its own). Every row
    is also written to stderr as it is measured (as JSON to stdout too with ``echo``), so a long run
    shows its rows before it ends."""
    from bench.ledgers import SharedLedgers

    rows: list[dict] = []
    rss: dict = {}

    def emit(new: list[dict]) -> None:
        for r in new:
            if r["name"].rsplit(".", 1)[-1] != "build":
                print(f"[bench] {r['name']} = {r['value']} {r['unit']}" + (f" (ratio {r['ratio']})" if r["ratio"] else ""),
                      file=sys.stderr, flush=True)
            if echo:
                print(json.dumps(r, ensure_ascii=False), flush=True)

    with ExitStack() as stack:
        if shared is None:
            shared = stack.enter_context(SharedLedgers())
        for i, entries in enumerate(sizes):
            if "sqlite" in backends:
                url, info = shared.sqlite(entries)
                rows += measure(url, "sqlite", {**info, "label": size_label(entries)},
                                "gate pipeline + relay bookkeeping in process, 2 builders",
                                compare_old=(i == 0), replay_rss=rss, emit=emit)
            if "postgres" in backends:
                url, moved = shared.postgres(entries)
                rows += measure(url, "postgres", {**moved, "label": size_label(entries)},
                                "stored events copied from the SQLite ledger",
                                compare_old=(i == 0), replay_rss=rss, emit=emit)
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--sizes", default="")
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(",") if s) or ((100_000, 1_000_000) if a.full else (100_000,))
    run(sizes, tuple(a.backends.split(",")), echo=True)
