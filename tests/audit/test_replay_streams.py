"""Replay compares in bounded memory: shown by counting the rows the comparison holds, not by timing.

The comparison merges two row streams sorted by primary key. Rows here are objects that count
themselves alive, so the test sees how many the comparison holds at the worst moment while it
streams a large table; and the real comparison on both back-ends reads the database a fetch at
a time and agrees with comparing whole tables as sets.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from ledger import readmodels
from ledger.readmodels import TABLES, OutOfOrder, ReadModels, compare, diff_sorted, replay_prefix
from services.audit import replay
from tests.audit.history import build_history


class _Alive:
    now = 0
    peak = 0


class Row(tuple):
    """A row that counts how many rows exist at once (CPython frees it when the last reference goes)."""

    def __new__(cls, *values):
        _Alive.now += 1
        _Alive.peak = max(_Alive.peak, _Alive.now)
        return super().__new__(cls, values)

    def __del__(self):
        _Alive.now -= 1


def _stream(n: int, *, skip=(), extra=(), changed=()):
    for i in range(n):
        if i in skip:
            continue
        yield Row(f"k{i:09d}", "changed" if i in changed else "same", i)
        if i in extra:
            yield Row(f"k{i:09d}x", "extra", i)


@pytest.mark.parametrize("n", [20_000, 200_000])
def test_the_comparison_holds_a_bounded_number_of_rows_however_long_the_tables(n):
    differences = dict(skip=set(range(0, n, 997)), extra=set(range(5, n, 1009)), changed=set(range(7, n, 1013)))
    _Alive.now = _Alive.peak = 0
    diff = diff_sorted("t", _stream(n), _stream(n, **differences), [0], examples=20)
    # every difference is counted ...
    skipped, extra, changed = (len(differences[k]) for k in ("skip", "extra", "changed"))
    changed_not_skipped = len(differences["changed"] - differences["skip"])
    assert diff.only_live_count == skipped + changed_not_skipped
    assert diff.only_replayed_count == extra + changed_not_skipped
    assert (diff.live, diff.replayed) == (n, n - skipped + extra)
    # ... and at no moment did it hold more than the kept examples and a few rows in flight
    # (each side's current group and the row after it), for 20,000 rows as for 200,000
    assert len(diff.only_live) == len(diff.only_replayed) == 20
    assert _Alive.peak <= 2 * 20 + 10, _Alive.peak
    del diff


def test_equal_streams_hold_almost_nothing():
    _Alive.now = _Alive.peak = 0
    diff = diff_sorted("t", _stream(100_000), _stream(100_000), [0])
    assert diff.equal and diff.live == diff.replayed == 100_000
    assert _Alive.peak <= 6, _Alive.peak


def test_rows_out_of_order_give_no_verdict():
    rows = [("b", 1), ("a", 2)]
    with pytest.raises(OutOfOrder):
        diff_sorted("t", iter(rows), iter(sorted(rows)), [0])


def test_duplicate_keys_compare_as_multisets():
    a = [(None, 1), (None, 1), ("x", 2)]
    b = [(None, 1), ("x", 2), ("x", 3)]
    d = diff_sorted("t", iter(a), iter(b), [0])
    assert (d.only_live, d.only_replayed) == ([(None, 1)], [("x", 3)])


@pytest.fixture
def history(ledger_url):
    h = build_history(ledger_url)
    yield h
    h.rt.close()


def test_the_database_comparison_reads_a_fetch_at_a_time_and_agrees_with_sets(history, monkeypatch):
    ledger = history.ledger
    live = ReadModels(ledger)
    live.catch_up()
    fresh = ReadModels(ledger, replay_prefix("streamtest"), tracked=False)
    fresh.drop()
    fresh.create()
    try:
        fresh.catch_up()
        # plant differences in the rebuilt tables: one row gone, one changed
        with ledger.tables.cursor() as c:
            c.execute(f"DELETE FROM {fresh.t('decisions')} WHERE message_id = ?", ["msg-p5-21"])
            c.execute(f"UPDATE {fresh.t('exchanges')} SET purpose = ? WHERE message_id = ?", ["X", "msg-p5-60"])
        fetched: list[int] = []
        original = readmodels._fetches

        def counting(models, c, table, fetch):
            for rows in original(models, c, table, fetch):
                fetched.append(len(rows))
                yield rows

        monkeypatch.setattr(readmodels, "_fetches", counting)
        diffs = {d.table: d for d in compare(live, fresh, fetch=2)}
        assert set(fetched) <= {1, 2} and 2 in fetched  # every table streamed through fetches of two rows
        for table in TABLES:
            a, b = Counter(live.rows(table)), Counter(fresh.rows(table))
            d = diffs[table]
            assert (d.live, d.replayed) == (sum(a.values()), sum(b.values()))
            assert Counter(d.only_live) == a - b and Counter(d.only_replayed) == b - a
        assert not diffs["decisions"].equal and not diffs["exchanges"].equal and diffs["stats"].equal
    finally:
        fresh.drop()

    report = replay(ledger)
    assert report.compared and report.equal and report.consumed == ledger.max_notification_id()


def test_chunks_partition_helper_is_exhaustive():
    from services.partitions import ranges

    for last, parts in itertools.product(range(0, 12), range(1, 5)):
        rs = ranges(last, parts)
        covered = [i for a, b in rs for i in range(a, b)]
        assert covered == list(range(1, last + 1))
        assert all(a <= b for a, b in rs)


def _open(job):
    return ("worker", job)


def _close(state):
    pass


def _run(state, start, stop, progress):
    progress(stop - start)
    return (start, stop)


def _fail_in_worker(state, start, stop, progress):
    """A worker marks that it took a chunk and fails; this process waits for that mark first, so the
    worker surely holds a chunk whose result never comes."""
    import time as _t
    from pathlib import Path

    mark = Path(state[1]) / "claimed"
    if state[0] == "worker":
        mark.write_text("x")
        raise ValueError("planted")
    deadline = _t.monotonic() + 120
    while not mark.exists() and _t.monotonic() < deadline:  # waiting on a condition, not a time
        _t.sleep(0.01)
    return _run(state, start, stop, progress)


def test_shared_chunks_come_back_in_log_order_and_a_failing_worker_is_reported(tmp_path):
    from services.partitions import PartitionFailed, run_shared

    seen = []
    got = run_shared("ok", 1000, 3, local_state=("local", "ok"), open_fn=_open, run_fn=_run, close_fn=_close,
                     progress=seen.append, chunks=40)
    assert got == sorted(got) and got[0][0] == 1 and got[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
    assert seen[-1] == 1000 and seen == sorted(seen)
    with pytest.raises(PartitionFailed, match="planted"):
        run_shared(str(tmp_path), 1000, 2, local_state=("local", str(tmp_path)), open_fn=_open,
                   run_fn=_fail_in_worker, close_fn=_close, chunks=4)


def test_workers_are_forked_beside_a_connection_pool_and_spawned_beside_any_other_thread():
    """A PostgreSQL ledger's pool threads leave the fork (no second import of everything) to the
    worker; a thread of anything else might hold a lock the worker needs, so then it is spawned."""
    import threading

    from psycopg_pool import ConnectionPool

    from services.partitions import _pool_thread, _start_method

    alone = _start_method()  # "fork" unless an earlier test left a thread of its own running
    pool = ConnectionPool("dbname=unused", min_size=0, max_size=1, open=True)  # threads, no connection
    try:
        threads = [t for t in threading.enumerate() if t.name.startswith("pool-")]
        assert threads and all(_pool_thread(t) for t in threads)
        assert _start_method() == alone
        stop = threading.Event()
        other = threading.Thread(target=stop.wait, daemon=True)
        other.start()
        try:
            assert not _pool_thread(other)
            assert _start_method() == "spawn"
        finally:
            stop.set()
            other.join()
    finally:
        pool.close()


def _fetched(rows: list[tuple], size: int):
    return (rows[i:i + size] for i in range(0, len(rows), size))


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_equal_fetches_skipped_whole_give_the_row_by_row_verdict(size):
    from ledger.readmodels import _compare_table

    base = [(f"k{i:04d}", i % 3, "x") for i in range(60)] + [("k0059", 2, "x")]  # a key group of two rows
    cases = {
        "equal": list(base),
        "one changed late": base[:50] + [(base[50][0], 99, "x")] + base[51:],
        "one missing at the start": base[1:],
        "one extra at the end": base + [("k9999", 0, "x")],
        "a duplicate in the last group": base + [("k0059", 2, "x")],
        "empty": [],
    }
    for name, replayed in cases.items():
        expected = diff_sorted("t", iter(base), iter(replayed), [0])
        got = _compare_table("t", _fetched(base, size), _fetched(replayed, size), [0])
        assert (got.live, got.replayed, got.only_live_count, got.only_replayed_count) == \
            (expected.live, expected.replayed, expected.only_live_count, expected.only_replayed_count), name
        assert Counter(got.only_live) == Counter(expected.only_live), name
        assert Counter(got.only_replayed) == Counter(expected.only_replayed), name
        got = _compare_table("t", _fetched(replayed, size), _fetched(base, size), [0])  # and the other way
        assert (got.only_live_count, got.only_replayed_count) == \
            (expected.only_replayed_count, expected.only_live_count), name
