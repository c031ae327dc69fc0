"""Shared helpers: result rows, medians of repeated timings, throw-away PostgreSQL databases, peak RSS."""
from __future__ import annotations

import os
import resource
import statistics
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

PG_ADMIN_URL = os.environ.get("XLEDGER_BENCH_PG", os.environ.get("XLEDGER_TEST_PG",
                                                                 "postgresql://postgres@127.0.0.1:5432/test"))
KEYS = ("name", "value", "unit", "baseline", "baseline_value", "ratio", "target_ratio")


def row(name: str, value: float, unit: str, baseline: str | None = None, baseline_value: float | None = None,
        *, higher_better: bool = True, target: float | None = None, ratio: float | None = None) -> dict:
    """One result row. ``ratio`` is value/baseline for rates and baseline/value for costs (so
    higher is always better) unless given explicitly."""
    if ratio is None and baseline_value:
        ratio = value / baseline_value if higher_better else (baseline_value / value if value else None)
    return {"name": name, "value": _r(value), "unit": unit, "baseline": baseline,
            "baseline_value": _r(baseline_value) if baseline_value is not None else None,
            "ratio": float(f"{ratio:.3g}") if ratio is not None else None, "target_ratio": target}


def _r(v: float) -> float:
    return round(v, 2) if abs(v) >= 1 else round(v, 4)


def rate(fn: Callable[[], int], repeat: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median items/s of ``fn`` (which returns how many items it processed) over ``repeat`` runs
    (per CPU second of this process with ``clock=time.process_time``)."""
    rates = []
    for _ in range(repeat):
        t0 = clock()
        n = fn()
        rates.append(n / max(clock() - t0, 1e-9))
    return statistics.median(rates)


def paired_rates(fns: dict[str, Callable[[], int]], repeat: int = 5,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median items/s of each fn, the fns interleaved round by round so that noise on this shared
    machine hits all of them alike (ratios are then measured in the same run, side by side).
    ``clock=time.process_time`` gives items per CPU second of this process (all its threads)."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = clock()
            n = fn()
            out[k].append(n / max(clock() - t0, 1e-9))
    return {k: statistics.median(v) for k, v in out.items()}


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def proc_status_mb(pid: int, *fields: str) -> tuple[float, ...]:
    """The ``fields`` of /proc/<pid>/status (VmRSS, VmHWM, ...) in MB, read at once; NaN for each
    once the process is gone."""
    got: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name = line.split(":", 1)[0]
                if name in fields:
                    got[name] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return tuple(got.get(name, float("nan")) for name in fields)


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size in MB: of a live process (VmHWM), or of this one."""
    if pid is not None:
        return proc_status_mb(pid, "VmHWM")[0]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database ``xlbench_<pid>_<rand>``, dropped afterwards; yields its URL."""
    import psycopg

    name = f"xlbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_schema_url(db_url: str) -> str:
    """A new schema in the benchmark database; returns a ledger URL pointing at it."""
    import psycopg

    schema = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{db_url}?schema={schema}"


def size_label(entries: int) -> str:
    """A ledger size as row names give it: the size asked for (10k, 100k, 1M), not the entries built
    (999,093 of a 1M ledger would read "999k")."""
    return f"{round(entries / 1000)}k" if entries < 950_000 else f"{round(entries / 1e6, 1):g}M"
