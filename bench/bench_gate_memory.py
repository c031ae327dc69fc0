"""The gate's memory on a big ledger and over a run: issue 18's "Gate RSS stays bounded over the 1M-entry run".

``e2e.gate.peak_rss`` is the gate's peak over a 5,000-exchange backlog on a new ledger. Here one
``xledger gate run`` process, started as the e2e bench starts it (embedded broker, development
settings, ``bench.bench_e2e._spawn``), decides a backlog of signed requests (``bench.messages``)
into a copy of the run's largest shared SQLite ledger (``bench.ledgers.SharedLedgers``: 1M entries
with ``--full``, 100k otherwise). Every 0.25 s the gate's VmRSS and VmHWM are read from
/proc/<pid>/status, with its progress: the request offsets it recorded with its batches, summed over
the partitions (the tracking records, as ``bench_e2e.requests_recorded`` reads them).

Rows: RSS when 25, 50, 75 and 100 % of the backlog was recorded; ``rss_flat``, RSS at 100 % against
RSS at 25 % as a cost (target 0.8: the memory does not grow with the exchanges decided); the peak on
the big ledger; the seconds the copy took.

The shared ledger is not written: the review group measures it afterwards. The copy is a file copy of
the database and its WAL (the 1M ledger's 3 GB: 1-12 s here, as much as the page cache and writeback
allow).

Run: ``python -m bench.bench_gate_memory [--entries 100000] [--exchanges 5000]`` (builds the ledger).
"""
from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench.bench_e2e import _alive, _produce, _spawn, _stop, requests_recorded
from bench.common import proc_status_mb, row, size_label
from bench.messages import RECIPIENT, SENDER, signed_messages

EVERY = 0.25  # seconds between samples
MARKS = (25, 50, 75, 100)  # % of the backlog recorded
PARTITIONS = 4  # Runtime.create_topics' request partitions


def copy_ledger(url: str, workdir: Path) -> tuple[str, float, int]:
    """A file copy of a SQLite ledger (database and WAL, nobody writing it): (url, seconds, bytes)."""
    src = Path(url.removeprefix("sqlite:///"))
    dst = workdir / f"gate-memory-{src.name}"
    t0 = time.perf_counter()
    size = 0
    for suffix in ("", "-wal"):  # the database first, then the WAL that goes with it
        part = Path(f"{src}{suffix}")
        if part.exists():
            shutil.copyfile(part, f"{dst}{suffix}")
            size += part.stat().st_size
    return f"sqlite:///{dst}", time.perf_counter() - t0, size


class _Sampler(threading.Thread):
    """(seconds since start, exchanges recorded, VmRSS MB, VmHWM MB) every ``EVERY`` s."""

    def __init__(self, ledger_url: str, pid: int, every: float = EVERY):
        super().__init__(daemon=True)
        self.url, self.pid, self.every = ledger_url, pid, every
        self.samples: list[tuple[float, int, float, float]] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from ledger.application import Ledger

        try:
            ledger = Ledger(self.url)
            try:
                t0 = time.perf_counter()
                while not self.stopping.is_set():
                    # Progress first: the memory read after it has held at least that many exchanges.
                    done = requests_recorded(ledger, PARTITIONS)
                    self.samples.append((time.perf_counter() - t0, done, *proc_status_mb(self.pid, "VmRSS", "VmHWM")))
                    self.stopping.wait(self.every)
            finally:
                ledger.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def recorded(self) -> int:
        return self.samples[-1][1] if self.samples else 0


def gate_run(ledger_url: str, backlog: list[tuple[bytes, bytes, str]], timeout: float = 300) -> dict:
    """One ``gate run`` process over ``backlog`` into ``ledger_url``, on a fresh embedded broker;
    returns the samples, the final VmHWM and the seconds from the gate's start to its last batch."""
    from services.broker import EmbeddedBroker
    from services.config import Settings
    from services.runtime import Runtime

    n = len(backlog)
    broker = EmbeddedBroker().start()
    gate = sampler = None
    try:
        settings = Settings.development(ledger_url=ledger_url).with_embedded_broker(broker.bootstrap)
        Runtime(settings).create_topics([SENDER[0], RECIPIENT[0]])
        t0 = time.perf_counter()
        _produce(settings, backlog)
        published = time.perf_counter() - t0
        t_start = time.perf_counter()
        gate = _spawn(settings, "gate", "run", "--name", "bench-gate-memory")
        sampler = _Sampler(ledger_url, gate.pid)
        sampler.start()
        deadline = time.monotonic() + timeout
        while sampler.recorded() < n:
            if sampler.error is not None:
                raise RuntimeError(f"reading the gate's progress failed: {sampler.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gate recorded {sampler.recorded()} of {n} exchanges after {timeout}s")
            _alive([gate])
            time.sleep(0.05)
        sampler.stopping.set()
        sampler.join(timeout=10)
        # The kernel's counters behind VmRSS and VmHWM are summed lazily: a sample's VmRSS can pass the
        # VmHWM read at the end by a few hundred kB. The peak is the highest of them all.
        seen = [proc_status_mb(gate.pid, "VmHWM")[0], *(v for s in sampler.samples for v in s[2:])]
        hwm = max(v for v in seen if math.isfinite(v))
        first = next((t for t, done, _, _ in sampler.samples if done > 0), None)
        return {"samples": sampler.samples, "hwm": hwm, "wall": time.perf_counter() - t_start,
                "published_s": published, "first_batch_s": first}
    finally:
        if sampler is not None:
            sampler.stopping.set()
        if gate is not None:
            _stop(gate)
            Path(gate.log_path).unlink(missing_ok=True)
        broker.stop()


def rss_at(samples: list[tuple[float, int, float, float]], n: int) -> dict[int, float]:
    """VmRSS (MB) at the first sample with at least each mark's share of ``n`` recorded."""
    out = {}
    for mark in MARKS:
        hit = next((s for s in samples if s[1] >= mark / 100 * n), None)
        if hit is None:
            raise RuntimeError(f"no sample at {mark} % of {n} exchanges: {samples[-3:]}")
        out[mark] = hit[2]
    return out


def run(entries: int = 100_000, exchanges: int = 5000, shared=None, new_ledger_peak: float | None = None) -> list[dict]:
    """``entries``: the shared SQLite ledger's size (``shared.sqlite(entries)``; built by a
    ``SharedLedgers`` of its own without ``shared``); ``exchanges``: the backlog. ``new_ledger_peak``:
    the e2e gate's peak RSS on a new ledger, if that group ran, for the peak row's baseline text."""
    from bench.ledgers import SharedLedgers

    with ExitStack() as stack:
        if shared is None:
            shared = stack.enter_context(SharedLedgers())
        source, info = shared.sqlite(entries)
        t0 = time.perf_counter()
        backlog = [(k, v, f"gm-{i:07d}") for i, (k, v) in enumerate(signed_messages(exchanges, "gm"))]
        signed_s = time.perf_counter() - t0
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xlbench_gate_memory_")))
        url, copy_s, size = copy_ledger(source, workdir)
        print(f"  gate_memory: {exchanges} messages signed in {signed_s:.1f}s; the {size_label(entries)} ledger "
              f"({info['entries']} entries, {size / 1e6:.0f} MB) copied in {copy_s:.1f}s", file=sys.stderr, flush=True)
        r = gate_run(url, backlog)
    label = size_label(entries)
    rss = rss_at(r["samples"], exchanges)
    growth = (rss[100] - rss[25]) / (0.75 * exchanges) * 1000
    started = max((s[2] for s in r["samples"] if s[1] == 0), default=float("nan"))  # until its first batch was recorded
    print(f"  gate_memory sqlite {label}: published in {r['published_s']:.1f}s, first batch after "
          f"{r['first_batch_s'] or float('nan'):.1f}s, {exchanges} exchanges in {r['wall']:.1f}s; RSS {started:.0f} MB "
          "until the first batch was recorded, "
          + " / ".join(f"{rss[m]:.0f}" for m in MARKS) + f" MB at 25/50/75/100 %, "
          f"{growth:+.2f} MB per 1,000 exchanges after 25 %, peak {r['hwm']:.0f} MB ({len(r['samples'])} samples)",
          file=sys.stderr, flush=True)
    tag = f"gate_memory.sqlite.{label}"
    how = f"VmRSS of one `gate run` over {exchanges} exchanges into a copy of the {label}-entry ledger, at"
    rows = [row(f"{tag}.rss.{m}pct", rss[m], "MB", f"{how} {m} % recorded") for m in MARKS]
    rows.append(row(f"{tag}.rss_flat", rss[100], "MB", "RSS at 25 % of the backlog (flat: no growth with "
                    "exchanges decided)", rss[25], higher_better=False, target=0.8))
    peak_note = (f"; the e2e gate on a new ledger: {new_ledger_peak:.0f} MB" if new_ledger_peak else "")
    rows.append(row(f"{tag}.peak_rss", r["hwm"], "MB", f"VmHWM of the gate over the run{peak_note}"))
    rows.append(row(f"{tag}.copy", copy_s, "s", f"file copy of the shared ledger and its WAL ({size / 1e6:.0f} MB)"))
    return rows


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--exchanges", type=int, default=5000)
    a = ap.parse_args()
    for r in run(a.entries, a.exchanges):
        print(json.dumps(r, ensure_ascii=False))
