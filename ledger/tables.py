"""Side tables the ledger keeps beside eventsourcing's own, in the same database.

eventsourcing owns the events and tracking tables; this module owns the rest
(subject keys, the deliveries' index, Merkle nodes, checkpoints). It hides the one
difference between the two backends that matters here: SQLite's '?' against psycopg's '%s'.
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import orjson

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from ledger.schema_lock import sqlite_schema_lock

_DDL = [
    """CREATE TABLE IF NOT EXISTS xl_subject_keys (
        subject TEXT PRIMARY KEY,
        wrapped_key {blob},
        destroyed INTEGER NOT NULL DEFAULT 0,
        master_key_id TEXT)""",
    # One row: the master key new data keys are wrapped under ('' until a rotation names one;
    # ledger.rotation). Writers of new keys read it in their transaction. The row always
    # exists, so a rotation switching it waits for every writer that read it.
    """CREATE TABLE IF NOT EXISTS xl_master_key_target (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        master_key_id TEXT NOT NULL,
        since TEXT NOT NULL,
        completed_at TEXT)""",
    """INSERT INTO xl_master_key_target (id, master_key_id, since) VALUES (1, '', '')
        ON CONFLICT (id) DO NOTHING""",
    # Where each delivery is recorded (ledger.application: written in the transaction of the
    # events that record it): the DeliveryPage holding it, or for a quarantine retry the Delivery
    # itself. Its primary key makes a delivery recorded twice fail like a duplicate event, and it
    # answers "which deliveries has this exchange" without reading the log. Ledgers written
    # before it hold per-delivery Delivery aggregates, found by their derived ids instead.
    """CREATE TABLE IF NOT EXISTS xl_deliveries (
        delivery_id TEXT PRIMARY KEY,
        exchange_id TEXT NOT NULL,
        entry_id TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_deliveries_exchange ON xl_deliveries (exchange_id)",
    """CREATE TABLE IF NOT EXISTS xl_merkle_nodes (
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash {blob} NOT NULL,
        PRIMARY KEY (level, idx))""",
    """CREATE TABLE IF NOT EXISTS xl_merkle_leaves (
        idx BIGINT PRIMARY KEY,
        notification_id BIGINT NOT NULL UNIQUE)""",
    # signed_json: the checkpoint as signed, a C2SP signed note (or, in ledgers written
    # before v2, the v1 JSON form; see ledger.checkpoint). The name is kept for old ledgers.
    """CREATE TABLE IF NOT EXISTS xl_checkpoints (
        tree_size BIGINT PRIMARY KEY,
        signed_json TEXT NOT NULL)""",
    # Witness cosignatures of stored checkpoints: one signature line per (size, witness),
    # where witness is '<name>+<note key id hex>'.
    """CREATE TABLE IF NOT EXISTS xl_cosignatures (
        tree_size BIGINT NOT NULL,
        witness TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (tree_size, witness))""",
]


# An INSERT of one row of placeholders, as executemany is given it (translated for PostgreSQL).
_INSERT = re.compile(r"\s*INSERT\s+INTO\s+(?P<table>[^\s(]+)(?P<alias>\s+AS\s+\w+)?\s*\((?P<cols>[^()]*)\)"
                     r"\s*VALUES\s*\((?P<vals>[^()]*)\)(?P<tail>.*)", re.IGNORECASE | re.DOTALL)
# statement → the same rows as one INSERT ... SELECT FROM unnest(arrays), or None when it is no such INSERT.
_UNNEST: dict[str, str | None] = {}
# statement → the same rows as one INSERT ... SELECT FROM jsonb_array_elements(one JSON text), for tables
# whose columns are all text, integer or bigint: psycopg builds binary arrays element by element in
# Python (~9 µs a row of 22 columns, measured), orjson writes the JSON text in C (~2 µs) and the
# server spends the same on either.
_AS_JSON: dict[str, tuple[str, int]] = {}  # statement → (JSON statement, its number of columns)
_JSON_TYPES = {"text", "integer", "bigint"}
# bytes, an integer beyond 64 bits, a datetime or a dataclass raise here (then the arrays are sent).
# orjson writes some types natively that psycopg would send otherwise: a UUID as its text (the same
# in a text column), an Enum as its value (psycopg: its name), a float NaN as null, a bool as
# true/false (refused by the integer cast, loudly). The callers write only str, int and None.
_JSON_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def executemany(cursor: Any, sql: str, rows: Sequence[Sequence[Any]], is_postgres: bool) -> None:
    """``cursor.executemany(sql, rows)`` with ``sql`` already translated for the backend.

    On PostgreSQL an ``INSERT ... VALUES (%s, ...)`` (any ``ON CONFLICT`` clause kept) is sent as one
    statement, ``INSERT ... SELECT ... FROM unnest(%b::type[], ...) WITH ORDINALITY ... ORDER BY ord``, one binary
    array per column in the rows' order: psycopg's
    executemany sends every row as a statement of its own in a pipeline, and that per-row client
    work was most of what the relay's Merkle and read-model steps spent there (bench/README.md).
    The statement's text is fixed (psycopg caches and prepares it; a multi-row VALUES of varying
    length it parses anew in Python each time, slower still). Under ``ON CONFLICT DO UPDATE`` the
    rows must not hit one key twice (PostgreSQL refuses it): callers sum per key first.
    Where every column is text, integer or bigint, the rows go as one JSON text instead of the
    arrays (``_AS_JSON``), cast per column on the server as the arrays are; a row of the wrong
    length (not the column list's), or a value JSON has no plain form for (bytes, an integer beyond 64
    bits, a datetime), sends the arrays. The callers write str, int and None there (see _JSON_STRICT
    for what other types become).
    SQLite's executemany is one prepared statement stepped in C: kept.
    """
    if not rows:
        return
    if is_postgres:
        statement = _unnest_statement(cursor, sql)
        if statement is not None:
            as_json, ncols = _AS_JSON.get(sql, (None, 0))
            # Every row exactly as long as the column list: a short row would read as NULLs and a long
            # one lose its extra values, where the arrays (and a one-row INSERT) refuse both.
            if as_json is not None and all(len(r) == ncols for r in rows):
                try:
                    doc = orjson.dumps(rows, option=_JSON_STRICT).decode()
                except TypeError:  # a value JSON does not hold as such: the arrays take it
                    doc = None
                if doc is not None:
                    cursor.execute(as_json, [doc])
                    return
            cursor.execute(statement, [list(column) for column in zip(*rows)])
            return
    cursor.executemany(sql, [tuple(r) for r in rows])


def _unnest_statement(cursor: Any, sql: str) -> str | None:
    if sql in _UNNEST:
        return _UNNEST[sql]
    m = _INSERT.fullmatch(sql)
    statement = None
    if m is not None and all(v.strip() == "%s" for v in m["vals"].split(",")):
        cols = [c.strip() for c in m["cols"].split(",")]
        # The columns' own types, so every value is cast as a one-row INSERT would cast it.
        # A column with a type modifier (varchar(n), char(n), bit(n)) keeps psycopg's executemany: an
        # explicit cast to it truncates silently where a one-row INSERT refuses the value as too long.
        cursor.execute("SELECT attname, format_type(atttypid, atttypmod), atttypmod FROM pg_attribute "
                       "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (m["table"],))
        found = [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in cursor.fetchall()]
        types = {name: t for name, t, typmod in found if typmod == -1}
        if all(c in types for c in cols):
            arrays = ", ".join(f"%b::{types[c]}[]" for c in cols)  # binary: no quoting of each value in Python
            names = [f"c{i}" for i in range(len(cols))]
            # ORDER BY the ordinality: rows are inserted (and their keys locked) in the caller's order,
            # which callers sort so that two processes upserting the same counters cannot deadlock.
            statement = (f"INSERT INTO {m['table']}{m['alias'] or ''} ({', '.join(cols)}) "
                         f"SELECT {', '.join(names)} FROM unnest({arrays}) WITH ORDINALITY "
                         f"AS u({', '.join(names)}, ord) ORDER BY ord{m['tail']}")
            if all(types[c] in _JSON_TYPES for c in cols):
                # Each row a JSON array in column order; ->> gives a string's text, a number's digits
                # or NULL for null, cast to the column's type as the arrays' elements are.
                values = ", ".join(f"(r->>{i})::{types[c]}" for i, c in enumerate(cols))
                _AS_JSON[sql] = (f"INSERT INTO {m['table']}{m['alias'] or ''} ({', '.join(cols)}) "
                                 f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY "
                                 f"AS u(r, ord) ORDER BY ord{m['tail']}", len(cols))
    _UNNEST[sql] = statement
    return statement


# SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries. A
# writer that finds the lock held by a gate committing a batch (tens of ms) therefore oversleeps by
# up to the step it is on, with both cores idle meanwhile: py-spy put a gate 15 % of its time in that
# usleep next to a second gate (2026-12-01). Polling from 0.2 ms up to 2 ms wakes within 2 ms of the
# release; a try is one statement (~10 µs), so a 50 ms wait costs ~0.3 ms of CPU.
_POLL_FIRST_S, _POLL_MAX_S = 0.0002, 0.002
_SQLITE_BUSY, _SQLITE_BUSY_SNAPSHOT = 5, 517


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # SQLITE_BUSY and its extended codes (BUSY_RECOVERY while another connection rebuilds the WAL
    # index after a crash, BUSY_TIMEOUT) are what SQLite's own loop waits out; BUSY_SNAPSHOT never
    # clears by waiting.
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


# A write that matches no row, on a table every ledger has: it takes the lock and changes nothing.
SQLITE_WRITE_LOCK_STATEMENT = "UPDATE xl_checkpoints SET tree_size = tree_size WHERE 0 = 1"


def take_sqlite_write_lock(cursor: sqlite3.Cursor, statement: str = SQLITE_WRITE_LOCK_STATEMENT) -> None:
    """Takes SQLite's database write lock at the start of a transaction by executing ``statement``
    (a write that matches no row), polling on "database is locked" until the connection's busy
    timeout has passed; then raises that error as SQLite would have.

    Only at a transaction's start, before it has read: a deferred transaction holding a snapshot
    gets SQLITE_BUSY_SNAPSHOT instead, which no retry cures; that error (and every other) is raised
    at once. SQLite's own loop retries the same way (the read lock is dropped between tries)."""
    conn = cursor.connection
    timeout_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        deadline = time.monotonic() + timeout_ms / 1000
        delay = _POLL_FIRST_S
        while True:
            try:
                cursor.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")


class SideTables:
    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore):
        self.datastore = datastore
        self.is_postgres = isinstance(datastore, PostgresDatastore)
        self._polls = not self.is_postgres and not datastore.pool.is_sqlite_memory_mode
        self.schema_prefix = f"{datastore.schema}." if self.is_postgres and getattr(datastore, "schema", "") else ""
        blob = "BYTEA" if self.is_postgres else "BLOB"
        with self.ddl() as c:
            for ddl in _DDL:
                c.execute(ddl.format(blob=blob))
            self._add_missing_columns(c)

    def _add_missing_columns(self, c: "Cursor") -> None:
        # Ledgers created before master-key rotation lack the column; their rows read as NULL
        # (wrapped in the format without a master key id) until a rotation re-wraps them.
        # Looked up first: ALTER TABLE would lock the table on every start even when it has the column.
        if self.is_postgres:
            # The table name as a parameter: translate() schema-qualifies names in the SQL text.
            c.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                      "AND table_schema = COALESCE(NULLIF(?, ''), current_schema())",
                      ("xl_subject_keys", getattr(self.datastore, "schema", "") or ""))
        else:
            c.execute("SELECT name FROM pragma_table_info('xl_subject_keys')")
        if "master_key_id" not in {row[0] for row in c.fetchall()}:
            c.execute("ALTER TABLE xl_subject_keys ADD COLUMN master_key_id TEXT")

    def translate(self, sql: str) -> str:
        """The statement for this backend: schema-qualified side tables, and psycopg's %s for ?."""
        sql = sql.replace("xl_", self.schema_prefix + "xl_")
        return sql.replace("?", "%s") if self.is_postgres else sql

    @contextmanager
    def ddl(self) -> Iterator[Any]:
        """A transaction that creates tables or indexes: on SQLite under the schema lock
        (``ledger.schema_lock``), without which processes creating tables at the same moment fail with
        "database is locked"; on PostgreSQL a plain one (callers take their advisory locks in it)."""
        if self.is_postgres:
            with self.cursor() as c:
                yield c
            return
        # Not through cursor(): on a new file the table its lock statement names does not exist yet;
        # the schema lock serialises these openings anyway.
        with sqlite_schema_lock(self.datastore.pool.db_name), self.datastore.transaction(commit=True) as c:
            yield Cursor(c, self.translate, self.is_postgres)

    @contextmanager
    def cursor(self, commit: bool = True) -> Iterator[Any]:
        """A transaction; one that commits is a writer, and on a SQLite file takes the write lock
        first, by polling (take_sqlite_write_lock): every writer of the file must wait the same way,
        or one left in SQLite's busy handler (sleeps of up to 100 ms) can lose every turn to the
        polling ones until its busy timeout fails it."""
        with self.datastore.transaction(commit=commit) as c:
            if commit:
                self.take_write_lock(c)
            yield Cursor(c, self.translate, self.is_postgres)

    def take_write_lock(self, cursor: Any) -> None:
        """On a SQLite file, the write lock taken by polling as a transaction's first statement
        (``cursor``: eventsourcing's); nothing on PostgreSQL or an in-memory SQLite ledger."""
        if self._polls:
            take_sqlite_write_lock(cursor.sqlite_cursor)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.cursor(commit=False) as c:
            c.execute(sql, params)
            return c.fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None


class Cursor:
    """A cursor on one of eventsourcing's transactions that speaks '?' on both backends.
    ``raw`` is eventsourcing's own cursor, for its calls that take one."""

    def __init__(self, cursor: Any, translate, is_postgres: bool = False):
        self._c = self.raw = cursor
        self._translate = translate
        self._is_postgres = is_postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._c.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        executemany(self._c, self._translate(sql), rows, self._is_postgres)

    def fetchall(self) -> list[Any]:
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in self._c.fetchall()]
