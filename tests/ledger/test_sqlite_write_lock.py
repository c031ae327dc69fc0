"""SQLite's write lock taken by polling (ledger.tables.take_sqlite_write_lock) instead of SQLite's
busy handler, whose sleeps of 1 to 100 ms left both cores idle while two gates took turns.

SQLite only: PostgreSQL has row locks and never reaches this code. The writers here are real
connections to one WAL-mode file, as the gates, the relay and the maintainer are."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.tables import SQLITE_WRITE_LOCK_STATEMENT, take_sqlite_write_lock
from tests.ledger.conftest import make_exchange

SQLITE_BUSY_SNAPSHOT = 517


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "lock.sqlite"
    conn = _connect(path, 1000)
    conn.execute("CREATE TABLE xl_checkpoints (tree_size INTEGER)")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    return path


def test_the_lock_is_taken_once_the_holder_commits_and_the_busy_timeout_is_restored(db):
    holder, waiter = _connect(db, 1000), _connect(db, 10_000)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    took = threading.Event()

    def wait_for_lock() -> None:
        waiter.execute("BEGIN")
        take_sqlite_write_lock(waiter.cursor(), SQLITE_WRITE_LOCK_STATEMENT)
        took.set()
        waiter.execute("INSERT INTO t VALUES (2)")
        waiter.execute("COMMIT")

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert not took.wait(0.2), "took the lock while another connection held it"
    holder.execute("COMMIT")
    thread.join(10)
    assert took.is_set()
    assert sorted(r[0] for r in waiter.execute("SELECT x FROM t")) == [1, 2]
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_a_lock_held_past_the_busy_timeout_fails_as_sqlite_would(db):
    holder, waiter = _connect(db, 1000), _connect(db, 50)
    holder.execute("BEGIN IMMEDIATE")
    waiter.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        take_sqlite_write_lock(waiter.cursor(), SQLITE_WRITE_LOCK_STATEMENT)
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 50
    waiter.execute("ROLLBACK")
    holder.execute("ROLLBACK")


class _CountingCursor:
    """Counts the tries; the statements run on a real connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.connection = conn
        self._c = conn.cursor()
        self.tries = 0

    def execute(self, sql: str, params=()):
        self.tries += 1
        return self._c.execute(sql, params)


def test_a_stale_snapshot_is_raised_at_once_not_retried(db):
    # A transaction that has read, after another connection committed, can never write: SQLite says
    # SQLITE_BUSY_SNAPSHOT, and retrying until the busy timeout would only delay the error.
    other, stale = _connect(db, 1000), _connect(db, 10_000)
    stale.execute("BEGIN")
    stale.execute("SELECT COUNT(*) FROM t").fetchone()
    other.execute("INSERT INTO t VALUES (3)")
    cursor = _CountingCursor(stale)
    with pytest.raises(sqlite3.OperationalError) as caught:
        take_sqlite_write_lock(cursor, SQLITE_WRITE_LOCK_STATEMENT)
    assert caught.value.sqlite_errorcode == SQLITE_BUSY_SNAPSHOT
    assert cursor.tries == 1
    stale.execute("ROLLBACK")


def _record(ledger: Ledger, start: int, count: int, errors: list) -> None:
    try:
        for i in range(start, start + count, 5):
            ledger.record([make_exchange(j) for j in range(i, i + 5)])
    except Exception as exc:  # noqa: BLE001 - the test reports what broke a writer
        errors.append(f"{type(exc).__name__}: {exc}")


def test_writers_on_one_ledger_file_all_land(tmp_path):
    # Three connections to one file (three Ledgers), recording at once: none may fail as locked.
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    ledgers = [Ledger(url) for _ in range(3)]
    errors: list[str] = []
    try:
        threads = [threading.Thread(target=_record, args=(ledger, k * 100, 100, errors))
                   for k, ledger in enumerate(ledgers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert ledgers[0].tables.fetchone("SELECT COUNT(DISTINCT originator_id) FROM stored_events")[0] == 300
    finally:
        for ledger in ledgers:
            ledger.close()


def test_the_ledgers_writers_take_the_lock_by_polling(tmp_path, monkeypatch):
    # Unit check of the wiring (a spy, not a stand-in): Ledger.record, the Merkle step, the read
    # models' transaction and every other writing transaction of the side tables (subject keys, the
    # review app's users and sessions, rotation) take the lock through take_sqlite_write_lock.
    import ledger.integrity as integrity
    import ledger.tables as tables
    from ledger.privacy import SqlKeyStore
    from ledger.readmodels import ReadModels

    calls: list[str] = []

    def spy(module_name: str):
        def take(cursor, *statement):
            calls.append(module_name)
            take_sqlite_write_lock(cursor, *statement)
        return take

    for module in (integrity, tables):
        monkeypatch.setattr(module, "take_sqlite_write_lock", spy(module.__name__))
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.sqlite")
    try:
        ledger.record([make_exchange(1)])  # through SideTables.take_write_lock
        assert calls == ["ledger.tables"]
        calls.clear()
        ledger.integrate()
        assert "ledger.integrity" in calls
        calls.clear()
        ReadModels(ledger).catch_up()
        assert "ledger.tables" in calls
        calls.clear()
        SqlKeyStore(ledger.tables).destroy("subject-x")  # a writer of the side tables
        assert calls == ["ledger.tables"]
        calls.clear()
        ledger.tables.fetchall("SELECT COUNT(*) FROM xl_subject_keys")  # a read takes no write lock
        assert calls == []
    finally:
        ledger.close()


def test_a_busy_recovery_is_waited_out_but_a_stale_snapshot_is_not():
    from ledger.tables import _is_busy

    def error(code: int) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError("database is locked")
        exc.sqlite_errorcode = code
        return exc

    assert _is_busy(error(5)) and _is_busy(error(261))  # SQLITE_BUSY, SQLITE_BUSY_RECOVERY
    assert not _is_busy(error(SQLITE_BUSY_SNAPSHOT)) and not _is_busy(error(6))  # SQLITE_LOCKED
