"""Table creation on a SQLite ledger serialised between processes: an exclusive ``flock`` on a file
beside the database, ``<database>-xlschema``, held by every code path that creates tables there
(``Ledger`` opening, ``SideTables``, the read models, the review app's stores).

SQLite's own locking does not serialise this. eventsourcing and our stores create their tables in
deferred transactions, and in WAL mode a transaction that read the schema before another process
changed it cannot become a writer (SQLITE_BUSY_SNAPSHOT, reported at once as "database is locked":
the busy timeout never applies); eventsourcing's migration record then fails as a duplicate. Six
processes opening a new ledger together failed so in 6 of 10 rounds, and four creating the read
models in 6 of 9 (tests/ledger/test_concurrent_open.py).

A file of its own, not the database: closing any descriptor of the database file would drop the
POSIX locks SQLite holds on it in this process. Re-entrant within a process (a ``Ledger`` holds it
while ``SideTables`` takes it again), exclusive between threads, bounded in time.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import structlog
from eventsourcing.persistence import OperationalError

# structlog itself (the services configure it): the ledger does not import services.
log = structlog.get_logger(__name__)

WAIT_S = 60.0
SUFFIX = "-xlschema"

_guard = threading.Lock()
_held: dict[str, list] = {}  # real path -> [RLock, depth, fd or None]


def is_file_database(dbname: str) -> bool:
    """A database on disk (not ``:memory:`` nor a ``file:`` URI, which the ledger uses for memory)."""
    return bool(dbname) and not dbname.startswith("file:") and ":memory:" not in dbname


@contextmanager
def sqlite_schema_lock(dbname: str, wait_s: float | None = None) -> Iterator[None]:
    """Holds the schema lock of the SQLite database ``dbname`` (a path) for the block.

    Raises eventsourcing's ``OperationalError`` (an unavailable ledger) after ``wait_s`` (default
    ``WAIT_S``). Where the lock file can be neither created nor opened, the block runs without it
    and a warning is logged: SQLite then reports what it reports, as before the lock existed.
    """
    if not is_file_database(dbname):
        yield
        return
    path = os.path.realpath(dbname)
    wait = WAIT_S if wait_s is None else wait_s
    with _guard:
        entry = _held.setdefault(path, [threading.RLock(), 0, None])
    lock: threading.RLock = entry[0]
    deadline = time.monotonic() + wait
    if not lock.acquire(timeout=wait):
        raise OperationalError(f"another thread held the ledger's schema lock for over {wait:.0f} s")
    try:
        if entry[1] == 0:
            entry[2] = _take(path + SUFFIX, deadline, wait)
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0 and entry[2] is not None:
                os.close(entry[2])  # releases the flock
                entry[2] = None
    finally:
        lock.release()


def _take(lock_path: str, deadline: float, wait: float) -> int | None:
    try:
        try:
            # 0o666 less the umask, as SQLite makes its own -wal and -shm files: services running as
            # different users of one group can all open it.
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            fd = os.open(lock_path, os.O_RDONLY)  # flock needs no write access
    except OSError as exc:
        log.warning("ledger.schema_lock_unavailable", error=type(exc).__name__)
        return None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OperationalError(f"another process held the ledger's schema lock for over "
                                       f"{wait:.0f} s") from None
            time.sleep(0.02)
