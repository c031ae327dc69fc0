"""Running one read-only pass over the ledger in several processes.

The auditors' tools (services.audit) are CPU-bound in Python, so one process uses one core.
``run_shared`` cuts the positions 1..N into chunks; the calling process works on them at once and
each worker process takes the next free chunk once it has started. The results come back in
chunk order, so the caller merges them into exactly what one sequential pass would have
produced. (``run_partitioned`` is the simpler fixed split, one contiguous range per process.)
Workers are forked when the parent has no other thread than a connection pool's, else
spawned; each opens its own database connection, never the parent's. This module knows nothing about audits.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import threading
import time
import traceback
from typing import Any, Callable

__all__ = ["ranges", "run_partitioned", "run_shared", "chunk_count", "PartitionFailed"]

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
    """fork when every other thread of this process is an idle connection pool's, else spawn.

    A forked worker starts at once, with every module already imported; a spawned one imports
    everything again (~1 s of CPU, as much as a tenth of an audit of 100k entries) and loads the
    directory again. A fork copies only the calling thread, with the locks other threads hold
    at that instant; the worker never touches what those threads guard (``open_fn`` opens its
    own database connection and pool), so the threads of a PostgreSQL connection pool
    (psycopg_pool: a scheduler and workers waiting on their queue) do not stand in the way. Any
    other thread (a web server's, a Kafka client's) might hold a lock the worker needs:
    then spawn. Should a worker ever hang all the same, it hangs before it has claimed a chunk
    (``run_shared``): this process does the chunks, and the worker is ended at the end."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    return "fork" if all(_pool_thread(t) for t in others) else "spawn"


def _pool_thread(t: threading.Thread) -> bool:
    # psycopg_pool starts its scheduler and workers as daemon threads running its own methods.
    target = getattr(t, "_target", None)
    return t.daemon and getattr(target, "__module__", "").startswith("psycopg_pool.")


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


# -- chunks shared between this process and its workers --------------------------------------------


def chunk_count(last: int, workers: int, per_chunk: int = 2_500) -> int:
    """How many chunks to cut 1..last into: enough that a worker starting late still gets a fair
    share and that the last chunk, which one process finishes while the other may have none
    left, is short; few enough that each chunk's fixed cost (its first page read) stays small."""
    return max(1, min(256, max(4 * workers, last // per_chunk)))


def _claim(counter: Any, n: int) -> int | None:
    """The next chunk nobody has taken, or None: one shared counter, no queue (so no feeder thread)."""
    with counter.get_lock():
        i = counter.value
        if i >= n:
            return None
        counter.value = i + 1
        return i


def _chunk_child(open_fn: Callable, run_fn: Callable, close_fn: Callable, job: Any, wid: int,
                 parts: list[tuple[int, int]], counter: Any, out: Any) -> None:
    from services.logging import configure

    configure()  # any log line goes to stderr as in the parent, never to the report on stdout
    try:
        state = open_fn(job)
    except BaseException:
        out.put(("error", wid, -1, traceback.format_exc()))
        return
    try:
        while (idx := _claim(counter, len(parts))) is not None:
            start, stop = parts[idx]
            last_sent = [0.0]

            def progress(covered: int, idx=idx) -> None:
                now = time.monotonic()
                if now - last_sent[0] >= _REPORT_EVERY:
                    last_sent[0] = now
                    out.put(("progress", wid, idx, covered))

            try:
                result = run_fn(state, start, stop, progress)
            except BaseException:
                out.put(("error", wid, idx, traceback.format_exc()))
                return
            out.put(("progress", wid, idx, stop - start))
            out.put(("done", wid, idx, result))
    finally:
        close_fn(state)
        out.put(("exit", wid, -1, None))


def run_shared(job: Any, last: int, workers: int, *, local_state: Any, open_fn: Callable[[Any], Any],
               run_fn: Callable[[Any, int, int, Callable[[int], None]], Any], close_fn: Callable[[Any], None],
               progress: Callable[[int], None] | None = None, chunks: int | None = None) -> list[Any]:
    """Cuts 1..last into chunks and works through them here and in ``workers - 1`` worker processes,
    each taking the next chunk when it is free; returns the chunks' results in chunk order.

    This process starts at once with ``local_state``. A worker first builds its own with
    ``open_fn(job)`` (its own database connection), however long starting it takes; the chunks
    left are shared out as each one frees up. ``run_fn(state, start, stop, progress)`` does one
    chunk, calling ``progress`` with how many of its positions it has covered; ``progress`` here
    gets the sum. ``open_fn``, ``run_fn``, ``close_fn`` and ``job`` must be picklable
    (module-level functions, plain data).
    """
    parts = ranges(last, chunks or chunk_count(last, workers))
    method = _start_method()
    ctx = multiprocessing.get_context(method)
    counter, out = ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=_chunk_child, args=(open_fn, run_fn, close_fn, job, w, parts, counter, out),
                         daemon=True) for w in range(1, max(1, workers))]

    def start_all() -> None:
        for p in procs:
            p.start()

    # Starting a spawned worker blocks until it has read its arguments, which it does while
    # importing what they need (seconds on a loaded machine): start it from a thread, so that
    # this process begins on the chunks at once. A fork starts at once and wants no thread.
    starter = threading.Thread(target=start_all, daemon=True) if method == "spawn" and procs else None
    if starter is not None:
        starter.start()
    else:
        start_all()
    covered: dict[int, int] = {}
    results: dict[int, Any] = {}
    exited: set[int] = set()

    def report() -> None:
        if progress is not None:
            progress(sum(covered.values()))

    def drain(block: bool) -> None:
        while True:
            try:
                kind, wid, idx, value = out.get(timeout=1.0) if block else out.get_nowait()
            except queue_mod.Empty:
                return
            block = False
            if kind == "progress":
                covered[idx] = value
                report()
            elif kind == "done":
                results[idx] = value
            elif kind == "exit":
                exited.add(wid)
            else:
                raise PartitionFailed(f"worker {wid} failed:\n{value}")

    try:
        while (idx := _claim(counter, len(parts))) is not None:  # this process takes chunks too
            drain(block=False)
            start, stop = parts[idx]

            def mine(c: int, idx=idx) -> None:
                covered[idx] = c
                report()

            results[idx] = run_fn(local_state, start, stop, mine)
            covered[idx] = stop - start
            report()
        if starter is not None:
            starter.join()
        while len(results) < len(parts):
            drain(block=True)
            if len(results) < len(parts):
                gone = [w for w, p in enumerate(procs, 1) if not p.is_alive() and w not in exited]
                if gone:
                    drain(block=True)  # it may have reported just before exiting
                    if len(results) < len(parts) and any(w not in exited for w in gone):
                        raise PartitionFailed(f"worker {gone[0]} exited with code {procs[gone[0] - 1].exitcode}")
                elif procs and len(exited) == len(procs):
                    drain(block=True)
                    if len(results) < len(parts):
                        raise PartitionFailed("every worker has stopped and chunks are missing")
    finally:
        if starter is not None:
            starter.join()
        for p in procs:
            # Done (or failed): a worker still starting or closing holds no chunk and writes nothing.
            p.join(timeout=2 if len(results) == len(parts) else 0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        out.close()
    return [results[i] for i in range(len(parts))]
