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
whose peak RSS (``getrusage``) is reported at both sizes.

Run: ``python -m bench.bench_audit [--full | --sizes 20000]``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bench.common import pg_database, row

BATCH = 250
ENTRIES_PER_EXCHANGE = 3.67  # Requested, Decided, a receipt, and an inbox delivery for 2 in 3
BUILDERS = 2
# The raw baseline reads at most this many exchanges (it is a rate; the whole log adds nothing).
BASELINE_MAX = 60_000


# -- building the ledger ---------------------------------------------------------------------------


def _cprs() -> list[str]:
    # Valid in form and date (days 01-28 of March 1991), ~6,500 distinct subjects.
    return [f"{d:02d}0391{s:04d}" for d in range(1, 29) for s in range(1000, 9999, 39)]


def _build_part(url: str, start: int, stop: int, worker: int) -> int:
    from ledger.application import LEDGER_UNAVAILABLE
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
            for attempt in range(50):  # as the gate does: a locked or busy database, the batch again
                try:
                    _record_batch(rt, pipeline, msgs, topic)
                    break
                except LEDGER_UNAVAILABLE:
                    time.sleep(0.05 * (attempt + 1))
            else:
                raise RuntimeError("the ledger stayed unavailable")
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


def build(url: str, exchanges: int) -> dict:
    """Fills an empty ledger with ``exchanges`` exchanges (two builder processes); returns timings."""
    from ledger.application import Ledger
    from ledger.readmodels import ReadModels
    from services.partitions import ranges, run_partitioned

    t0 = time.perf_counter()
    # partitions.run_partitioned splits 1..N; here N is the number of exchanges, not positions.
    run_partitioned(_build_range, url, exchanges, BUILDERS) if exchanges > 2 * BATCH else \
        [_build_part(url, a, b, a) for a, b in ranges(exchanges, 1)]
    built = time.perf_counter() - t0
    ledger = Ledger(url)
    try:
        t1 = time.perf_counter()
        ReadModels(ledger).catch_up()
        projected = time.perf_counter() - t1
        return {"entries": ledger.max_notification_id(), "build_s": built, "readmodels_s": projected}
    finally:
        ledger.close()


def transplant(source_url: str, target_url: str) -> dict:
    """Copies a built ledger's stored events (in their order, bytes unchanged) and subject keys into
    an empty ledger on another back-end, through eventsourcing's own recorder, and catches up its
    read models: the PostgreSQL ledger holds exactly the exchanges the gate's pipeline recorded on
    SQLite, without deciding them all a second time."""
    from eventsourcing.persistence import StoredEvent

    from ledger.application import Ledger
    from ledger.readmodels import ReadModels

    t0 = time.perf_counter()
    src, dst = Ledger(source_url), Ledger(target_url)
    try:
        batch = []
        for n in src.all_notifications(page_size=5000):
            batch.append(StoredEvent(n.originator_id, n.originator_version, n.topic, n.state))
            if len(batch) >= 5000:
                dst.recorder.insert_events(batch)
                batch = []
        if batch:
            dst.recorder.insert_events(batch)
        rows = src.tables.fetchall("SELECT subject, wrapped_key, destroyed, master_key_id FROM xl_subject_keys")
        with dst.tables.cursor() as c:
            c.executemany("INSERT INTO xl_subject_keys (subject, wrapped_key, destroyed, master_key_id) "
                          "VALUES (?, ?, ?, ?)", rows)
        copied = time.perf_counter() - t0
        t1 = time.perf_counter()
        ReadModels(dst).catch_up()
        return {"entries": dst.max_notification_id(), "build_s": copied, "readmodels_s": time.perf_counter() - t1}
    finally:
        src.close()
        dst.close()


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
    t0 = time.perf_counter()
    pos = 1
    while n < limit:
        page = ledger.recorder.select_notifications(pos, limit=1000, topics=_TOPICS)
        if not page:
            break
        for note in page:
            to_event(note)
            if note.topic == _TOPICS[1]:
                req, present = prepared[n % len(prepared)]
                engine.decide(req, present)
                n += 1
        pos = page[-1].id + 1
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
    t0 = time.perf_counter()
    if which == "reevaluate":
        report = reevaluate(ledger, red, load_bundles(), workers=workers, per_exchange=per_exchange)
        n = report.checked
        assert report.ok, (report.errors[:3], report.divergent[:3])
    else:
        report = impact(ledger, red, BundleSet.load().bundles[-1], known=load_bundles(), workers=workers,
                        per_exchange=per_exchange)
        n = report.requests
    dt = time.perf_counter() - t0
    return n / dt, n, dt


_REPLAY = """
import json, resource, sys, time
from ledger.application import Ledger
from services.audit import replay
ledger = Ledger(sys.argv[1])
t0 = time.perf_counter()
report = replay(ledger)
dt = time.perf_counter() - t0
print(json.dumps({"equal": report.equal, "entries": report.consumed, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def replay_in_subprocess(url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _REPLAY, url], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------------------


@contextmanager
def _ledger_url(backend: str):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="xlbench-audit-") as d:
            yield f"sqlite:///{d}/ledger.sqlite"
    else:
        with pg_database() as url:
            yield url


def _label(entries: int) -> str:
    return f"{round(entries / 1000)}k" if entries < 1_000_000 else f"{entries / 1e6:.1f}M"


def measure(url: str, backend: str, info: dict, how: str, *, compare_old: bool, replay_rss: dict) -> list[dict]:
    from ledger.application import Ledger

    rows = []
    size = _label(info["entries"])
    pre = f"audit.{backend}.{size}"
    print(f"[bench] audit {backend}: {info['entries']} entries in {info['build_s']:.0f}s "
          f"(+{info['readmodels_s']:.0f}s read models)", file=sys.stderr, flush=True)
    rows.append(row(f"{pre}.build", info["entries"] / info["build_s"], "entries/s", how))
    ledger = Ledger(url)
    try:
        limit = BASELINE_MAX  # the read stops at the end of a smaller log
        raw1, _ = raw_read_and_decide(ledger, limit)
        re_rate, re_n, re_s = _tool(ledger, "reevaluate")
        im_rate, im_n, im_s = _tool(ledger, "impact")
        raw2, _ = raw_read_and_decide(ledger, limit)
        raw = (raw1 + raw2) / 2  # before and after: load on the shared machine hits both alike
        base = f"raw read + decode + decide, 1 process ({raw1:.0f}/{raw2:.0f})"
        rows.append(row(f"{pre}.reevaluate", re_rate, "exchanges/s", base, raw, target=0.5))
        rows.append(row(f"{pre}.reevaluate.seconds", re_s, "s", f"{re_n} exchanges, workers auto"))
        rows.append(row(f"{pre}.impact", im_rate, "exchanges/s", base, raw, target=0.5))
        rows.append(row(f"{pre}.impact.seconds", im_s, "s", f"{im_n} exchanges, workers auto"))
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
    rp = replay_in_subprocess(url)
    assert rp["equal"], rp
    first = replay_rss.setdefault(backend, (size, rp["peak_rss_mb"]))
    rows.append(row(f"{pre}.replay.peak_rss", rp["peak_rss_mb"], "MB",
                    f"replay peak RSS at {first[0]}", first[1], higher_better=False,
                    target=0.8 if first[0] != size else None))
    rows.append(row(f"{pre}.replay", rp["entries"] / rp["seconds"], "entries/s",
                    f"{rp['seconds']:.0f} s, subprocess"))
    return rows


def run(sizes=(100_000,), backends=("sqlite", "postgres"), echo: bool = False) -> list[dict]:
    """``sizes`` in ledger entries. Each size is built once on SQLite through the gate's pipeline,
    then copied to PostgreSQL (``transplant``)."""
    rows: list[dict] = []
    rss: dict = {}
    for i, entries in enumerate(sizes):
        exchanges = max(BATCH, int(entries / ENTRIES_PER_EXCHANGE))
        with _ledger_url("sqlite") as sqlite_url:
            info = build(sqlite_url, exchanges)
            if "sqlite" in backends:
                rows += _echo(echo, measure(sqlite_url, "sqlite", info,
                                            "gate pipeline + relay bookkeeping in process, 2 builders",
                                            compare_old=(i == 0), replay_rss=rss))
            if "postgres" in backends:
                with _ledger_url("postgres") as pg_url:
                    moved = transplant(sqlite_url, pg_url)
                    rows += _echo(echo, measure(pg_url, "postgres", moved,
                                                "stored events copied from the SQLite ledger",
                                                compare_old=(i == 0), replay_rss=rss))
    return rows


def _echo(echo: bool, rows: list[dict]) -> list[dict]:
    if echo:  # as they come: a long --full run shows its rows before it ends
        for r in rows:
            print(json.dumps(r, ensure_ascii=False), flush=True)
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
