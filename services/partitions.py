"""Running one read-only pass over the ledger in several processes, one range of positions each.

The auditors' tools (services.audit) are CPU-bound in Python, so one process uses one core.
This module splits the positions 1..N into contiguous ranges, runs ``target(job, start, stop,
progress)`` for each in its own process (forked when the parent has no other thread, else
spawned; each worker opens its own database connection, never the parent's) and returns the
results in range order, so the caller merges them
into exactly what one sequential pass would have produced. It knows nothing about audits.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import threading
import time
import traceback
from typing import Any, Callable

__all__ = ["ranges", "run_partitioned", "PartitionFailed"]

# A worker reports progress at most this often (seconds); each report is one small queue message.
_REPORT_EVERY = 0.25


class PartitionFailed(RuntimeError):
    """A worker process raised or died; the message carries its traceback or exit code."""


def ranges(last: int, parts: int, first: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous half-open ranges [start, stop) covering first..last (fewer if small)."""
    n = max(0, last - first + 1)
    parts = max(1, min(parts, n or 1))
    size, extra = divmod(n, parts)
    out, start = [], first
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _child(target: Callable, job: Any, idx: int, start: int, stop: int, q: Any) -> None:
    from services.logging import configure

    configure()  # any log line goes to stderr as in the parent, never to the report on stdout
    last_sent = [0.0]

    def progress(covered: int) -> None:
        now = time.monotonic()
        if now - last_sent[0] >= _REPORT_EVERY:
            last_sent[0] = now
            q.put(("progress", idx, covered))

    try:
        result = target(job, start, stop, progress)
    except BaseException:  # reported to the parent, which raises PartitionFailed
        q.put(("error", idx, traceback.format_exc()))
        return
    q.put(("progress", idx, stop - start))
    q.put(("done", idx, result))


def _start_method() -> str:
    """fork when this process has no other thread (a worker then starts at once, with every module
    already imported), else spawn (a fork would copy locks other threads may hold, such as a
    PostgreSQL connection pool's; a spawned worker imports everything again, ~1 s of CPU)."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def run_partitioned(target: Callable[[Any, int, int, Callable[[int], None]], Any], job: Any, last: int,
                    workers: int, progress: Callable[[int], None] | None = None) -> list[Any]:
    """Runs ``target`` over ``ranges(last, workers)``, one process each; the results in range order.

    ``target`` and ``job`` must be picklable (a module-level function, plain data). ``target``
    calls its ``progress`` argument with how many positions of its range it has covered;
    ``progress`` here gets the sum over all workers.
    """
    parts = ranges(last, workers)
    ctx = multiprocessing.get_context(_start_method())
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, job, i, a, b, q), daemon=True) for i, (a, b) in enumerate(parts)]
    for p in procs:
        p.start()
    covered = [0] * len(parts)
    results: dict[int, Any] = {}
    try:
        while len(results) < len(parts):
            try:
                kind, idx, value = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [i for i, p in enumerate(procs) if i not in results and not p.is_alive()]
                if dead:
                    # It may have put its result just before exiting: look once more.
                    try:
                        kind, idx, value = q.get(timeout=1.0)
                    except queue_mod.Empty:
                        raise PartitionFailed(f"worker {dead[0]} exited with code {procs[dead[0]].exitcode}") from None
                else:
                    continue
            if kind == "progress":
                covered[idx] = value
                if progress is not None:
                    progress(sum(covered))
            elif kind == "done":
                results[idx] = value
            else:
                raise PartitionFailed(f"worker {idx} failed:\n{value}")
    finally:
        for p in procs:
            if p.is_alive() and len(results) < len(parts):
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        q.close()
    return [results[i] for i in range(len(parts))]
