"""Services started at the same moment on a brand-new PostgreSQL ledger (the gate, the relay and its
maintainer, audit workers) each create the tables. PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe
against itself: two sessions creating the same table at once can fail with a unique violation on
pg_type or "tuple concurrently updated". Ledger serialises the creation with an advisory lock.
On SQLite the same race failed with "database is locked" (a deferred transaction that cannot become
a writer in WAL mode) or a duplicate migration record; there a lock file serialises it."""

from __future__ import annotations

import multiprocessing
import uuid

import psycopg
import pytest

from ledger.application import Ledger
from tests.conftest import _pg_conninfo

OPENERS = 6
ROUNDS = 3


def _open(url: str, start, results, read_models: bool = False) -> None:
    start.wait(30)
    try:
        ledger = Ledger(url)
        if read_models:  # as the relay, the review app and the escalation desk do when they start
            from ledger.readmodels import ReadModels
            from services.review.users import UserStore

            ReadModels(ledger)
            UserStore(ledger.tables)
        ledger.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports which error broke the open
        results.put(f"{type(exc).__name__}: {exc}")


def _open_at_once_all_succeed(url: str, read_models: bool = False) -> None:
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, start, results, read_models)) for _ in range(OPENERS)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes == ["ok"] * OPENERS, outcomes
    ledger = Ledger(url)
    try:
        assert ledger.tables.fetchone("SELECT COUNT(*) FROM xl_merkle_nodes")[0] == 0
    finally:
        ledger.close()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_processes_opening_a_new_postgres_ledger_at_once_all_succeed(pg_database, round_):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(pg_database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{_pg_conninfo(pg_database)}?schema={schema}"
    _open_at_once_all_succeed(url)


def test_opening_an_existing_ledger_with_create_table_off_takes_no_lock(pg_database):
    # Audit workers open the caller's ledger with CREATE_TABLE=n: they must not queue behind a
    # long-running opener's lock (and need none: the tables exist).
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(pg_database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{_pg_conninfo(pg_database)}?schema={schema}"
    Ledger(url).close()
    from ledger.application import SCHEMA_LOCK_KEY

    with psycopg.connect(_pg_conninfo(pg_database), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        ledger = Ledger(url, env={"CREATE_TABLE": "n", "POSTGRES_CONNECT_TIMEOUT": "5"})
        ledger.close()


def test_a_schema_lock_held_too_long_is_an_unavailable_ledger_not_a_hang(pg_database, monkeypatch):
    import ledger.application as application
    from ledger.application import LEDGER_UNAVAILABLE, SCHEMA_LOCK_KEY

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(pg_database), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{_pg_conninfo(pg_database)}?schema={schema}"
    monkeypatch.setattr(application, "SCHEMA_LOCK_WAIT_S", 1)
    with psycopg.connect(_pg_conninfo(pg_database), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        with pytest.raises(LEDGER_UNAVAILABLE, match="schema lock"):
            Ledger(url)
        holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
    Ledger(url).close()  # free again: opens and creates the tables


@pytest.mark.parametrize("round_", range(ROUNDS))
@pytest.mark.parametrize("read_models", [False, True], ids=["ledger", "with_read_models"])
def test_processes_opening_a_new_sqlite_ledger_at_once_all_succeed(tmp_path, round_, read_models):
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    _open_at_once_all_succeed(url, read_models)


def test_the_sqlite_schema_lock_is_reentrant_in_a_process_and_exclusive_between_threads(tmp_path):
    import threading

    from ledger.schema_lock import sqlite_schema_lock

    db = str(tmp_path / "l.sqlite")
    order: list[str] = []
    with sqlite_schema_lock(db), sqlite_schema_lock(db):  # a Ledger holds it while SideTables takes it
        def take() -> None:
            with sqlite_schema_lock(db, 30):
                order.append("thread")

        other = threading.Thread(target=take)
        other.start()
        other.join(0.3)
        order.append("holder")
    other.join(30)
    assert order == ["holder", "thread"]


def test_a_sqlite_schema_lock_held_too_long_is_an_unavailable_ledger_not_a_hang(tmp_path, monkeypatch):
    import fcntl
    import os

    import ledger.application as application
    from ledger.application import LEDGER_UNAVAILABLE

    path = tmp_path / "ledger.sqlite"
    monkeypatch.setattr(application, "SCHEMA_LOCK_WAIT_S", 1)
    fd = os.open(f"{path}-xlschema", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process opening the ledger would hold it
        with pytest.raises(LEDGER_UNAVAILABLE, match="schema lock"):
            Ledger(f"sqlite:///{path}")
    finally:
        os.close(fd)
    Ledger(f"sqlite:///{path}").close()  # released: it opens



def test_a_lock_file_this_process_cannot_write_is_opened_read_only_and_still_excludes(tmp_path, monkeypatch):
    # Services running as different users of one group: the first made the file, the others may only
    # read it. flock needs no write access, so the lock still holds.
    import fcntl
    import os

    import ledger.schema_lock as schema_lock

    db = str(tmp_path / "l.sqlite")
    open(db + schema_lock.SUFFIX, "w").close()
    real_open = os.open

    def no_write(path, flags, *args):
        if path.endswith(schema_lock.SUFFIX) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(schema_lock.os, "open", no_write)
    with schema_lock.sqlite_schema_lock(db):
        other = real_open(db + schema_lock.SUFFIX, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # another process's attempt, as _take makes it
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_without_any_lock_file_the_tables_are_made_and_the_skip_is_logged(tmp_path, monkeypatch):
    import os

    import structlog

    import ledger.schema_lock as schema_lock

    def refused(path, flags, *args):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(schema_lock.os, "open", refused)
    with structlog.testing.capture_logs() as logs:
        Ledger(f"sqlite:///{tmp_path}/ledger.sqlite").close()
    # Once per opening: SideTables takes the lock again inside the Ledger's, without a second try.
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["ledger.schema_lock_unavailable"]
    assert not os.path.exists(f"{tmp_path}/ledger.sqlite{schema_lock.SUFFIX}")
