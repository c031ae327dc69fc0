"""On PostgreSQL the events' state is compressed with lz4 (the server's default pglz cost ~50 µs of its
CPU per exchange on a RequestDecided event); a ledger made before keeps reading its pglz rows."""

from __future__ import annotations

import uuid

import psycopg
import psycopg.sql
import pytest

from ledger.application import Ledger
from ledger.domain import Exchange
from tests.ledger.conftest import make_exchange


def _gates_exchange(i: int, sealed: str) -> Exchange:
    """make_exchange's content as the gate records it: one RequestDecided event."""
    ex = make_exchange(i, sealed=sealed)
    return Exchange.decided(ex.decision, id=ex.id, **{k: getattr(ex, k) for k in (
        "sender", "message_id", "source", "summary", "subject", "message_digest", "sealed_message")})


def _state_compression(ledger: Ledger) -> tuple[str, list[str]]:
    """The state column's setting, and the method each stored value was compressed with (None: not compressed)."""
    schema = ledger.recorder.datastore.schema
    table = f'"{schema}"."{ledger.recorder.events_table_name}"'
    with ledger.tables.cursor(commit=False) as c:
        c.execute("SELECT a.attcompression FROM pg_attribute a WHERE a.attrelid = ?::regclass AND a.attname = 'state'",
                  (table,))
        setting = c.fetchall()[0][0]
        c.execute(f"SELECT pg_column_compression(state) FROM {table} ORDER BY notification_id")
        return setting, [r[0] for r in c.fetchall()]


def test_new_and_older_ledgers_compress_new_events_with_lz4(ledger_url):
    if not ledger_url.startswith("postgres"):
        pytest.skip("SQLite does not compress")
    dsn, schema = ledger_url.split("?schema=")
    first = Ledger(ledger_url)
    try:
        assert _state_compression(first)[0] == "l"
        # A ledger made before: its column back on the default, and an exchange written so.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{schema}"."{first.recorder.events_table_name}" '
                         "ALTER COLUMN state SET COMPRESSION DEFAULT")
        old = _gates_exchange(1, sealed="x" * 3000)  # over the ~2 KB at which PostgreSQL compresses
        first.record([old])
        assert _state_compression(first) == ("", ["pglz"])
    finally:
        first.close()
    again = Ledger(ledger_url)  # opened again: switched, the old rows as they were
    try:
        new = _gates_exchange(2, sealed="y" * 3000)
        again.record([new])
        assert _state_compression(again) == ("l", ["pglz", "lz4"])
        assert again.get_exchange(old.id).sealed_message == "x" * 3000
        assert again.get_exchange(new.id).sealed_message == "y" * 3000
    finally:
        again.close()


def _pg_only(ledger_url: str) -> tuple[str, str]:
    if not ledger_url.startswith("postgres"):
        pytest.skip("SQLite does not compress")
    dsn, schema = ledger_url.split("?schema=")
    return dsn, schema


def _events_table(url: str) -> str:
    ledger = Ledger(url)
    try:
        return ledger.recorder.events_table_name
    finally:
        ledger.close()


def _column_setting(dsn: str, schema: str, table: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT a.attcompression FROM pg_attribute a WHERE a.attrelid = %s::regclass "
                            "AND a.attname = 'state'", (f'"{schema}"."{table}"',)).fetchone()[0]


def test_a_busy_events_table_is_left_on_pglz_and_the_ledger_opens(ledger_url):
    # The ALTER queues every reader and writer behind it while it waits for its lock: it gives up
    # quickly, the open goes on, and the next open tries again.
    dsn, schema = _pg_only(ledger_url)
    table = _events_table(ledger_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}"."{table}" ALTER COLUMN state SET COMPRESSION DEFAULT')
    with psycopg.connect(dsn) as holder:  # a reader's open transaction, as verify's snapshot holds one
        holder.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
        opened = Ledger(ledger_url)
        try:
            opened.record([_gates_exchange(3, sealed="z" * 3000)])
        finally:
            opened.close()
        assert _column_setting(dsn, schema, table) == ""
    Ledger(ledger_url).close()
    assert _column_setting(dsn, schema, table) == "l"


def test_a_method_an_operator_chose_is_kept(ledger_url):
    dsn, schema = _pg_only(ledger_url)
    table = _events_table(ledger_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}"."{table}" ALTER COLUMN state SET COMPRESSION pglz')
    Ledger(ledger_url).close()
    assert _column_setting(dsn, schema, table) == "p"


def test_a_schema_named_like_the_side_tables_opens(ledger_url):
    # The statement's names are quoted identifiers, not text that SideTables.translate rewrites
    # ("xl_" is the side tables' prefix, and a likely schema name for this project).
    dsn, _ = _pg_only(ledger_url)
    schema = f"xl_prod_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    try:
        from urllib.parse import quote

        url = f"{dsn}?schema={quote(schema)}"
        ledger = Ledger(url)
        table = ledger.recorder.events_table_name
        try:
            ledger.record([_gates_exchange(4, sealed="w" * 3000)])
            assert ledger.get_exchange(_gates_exchange(4, sealed="w").id).sealed_message == "w" * 3000
        finally:
            ledger.close()
        assert _column_setting(dsn, schema, table) == "l"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(schema)))
