"""ledger.tables.executemany (one INSERT ... SELECT FROM unnest(binary arrays) on PostgreSQL) stores
exactly what one INSERT per row stores, in the rows' order, and refuses what that refuses. Both backends."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from ledger.application import Ledger
from ledger.tables import _UNNEST

ODD = ["", "'", '"', "\\", "{}", "{a,b}", ",", "NULL", "null", " ", "\t\n\r", "æøå ÆØÅ", "🙂", "a\x01b", "x" * 5000]


def _table(ledger: Ledger, ddl: str) -> str:
    name = f"xl_probe_{uuid.uuid4().hex[:8]}"
    seq = "BIGSERIAL PRIMARY KEY" if ledger.tables.is_postgres else "INTEGER PRIMARY KEY"
    blob = "BYTEA" if ledger.tables.is_postgres else "BLOB"
    with ledger.tables.cursor() as c:
        c.execute(f"CREATE TABLE {name} (seq {seq}, " + ddl.format(blob=blob) + ")")
    return name


def _insert(ledger: Ledger, sql: str, rows) -> None:
    with ledger.tables.cursor() as c:
        c.executemany(sql, rows)


@pytest.mark.parametrize("n", [1, 3, 10_000])
def test_values_nulls_and_order_are_kept(ledger, n):
    t = _table(ledger, "s TEXT, b {blob}, i BIGINT, j INTEGER, k TEXT NOT NULL")
    rows = [(None if i % 7 == 0 else ODD[i % len(ODD)],
             None if i % 5 == 0 else bytes([i % 256, 0, 255]) * (i % 4),
             None if i % 3 == 0 else (-1) ** i * (2**62 + i),
             i % 1000 - 500, f"row-{i}") for i in range(n)]
    sql = f"INSERT INTO {t} (s, b, i, j, k) VALUES (?, ?, ?, ?, ?)"
    _insert(ledger, sql, rows)
    if ledger.tables.is_postgres:  # the one-statement path, not psycopg's executemany
        assert "unnest(" in _UNNEST[ledger.tables.translate(sql)]
    back = ledger.tables.fetchall(f"SELECT s, b, i, j, k FROM {t} ORDER BY seq")
    assert [(s, None if b is None else bytes(b), i, j, k) for s, b, i, j, k in back] == rows


def test_a_column_all_null_and_a_single_row(ledger):
    t = _table(ledger, "s TEXT, b {blob}, i BIGINT")
    _insert(ledger, f"INSERT INTO {t} (s, b, i) VALUES (?, ?, ?)", [(None, None, None)] * 3)
    _insert(ledger, f"INSERT INTO {t} (s, b, i) VALUES (?, ?, ?)", [("only", b"\x00", 0)])
    assert [(s, None if b is None else bytes(b), i) for s, b, i in
            ledger.tables.fetchall(f"SELECT s, b, i FROM {t} ORDER BY seq")] == \
        [(None, None, None)] * 3 + [("only", b"\x00", 0)]


def test_on_conflict_do_nothing_and_do_update(ledger):
    t = _table(ledger, "name TEXT NOT NULL UNIQUE, n BIGINT NOT NULL")
    _insert(ledger, f"INSERT INTO {t} (name, n) VALUES (?, ?)", [("a", 1), ("b", 2)])
    _insert(ledger, f"INSERT INTO {t} (name, n) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            [("a", 100), ("c", 3)])
    _insert(ledger, f"INSERT INTO {t} AS cur (name, n) VALUES (?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET n = cur.n + excluded.n", [("b", 10), ("d", 4)])
    assert dict(ledger.tables.fetchall(f"SELECT name, n FROM {t}")) == {"a": 1, "b": 12, "c": 3, "d": 4}


def test_a_duplicate_key_fails_the_whole_insert(ledger):
    t = _table(ledger, "name TEXT NOT NULL UNIQUE")
    with pytest.raises(Exception):
        _insert(ledger, f"INSERT INTO {t} (name) VALUES (?)", [("a",), ("b",), ("a",)])
    assert ledger.tables.fetchall(f"SELECT name FROM {t}") == []


def test_too_long_for_a_sized_column_is_refused_not_truncated(ledger):
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite does not enforce VARCHAR(n)")
    t = _table(ledger, "v VARCHAR(3), c CHAR(2)")
    for row in [("abcd", "ab"), ("abc", "abc")]:
        with pytest.raises(Exception, match="value too long"):  # eventsourcing wraps the DataError
            _insert(ledger, f"INSERT INTO {t} (v, c) VALUES (?, ?)", [row])
    _insert(ledger, f"INSERT INTO {t} (v, c) VALUES (?, ?)", [("abc", "ab")])
    assert ledger.tables.fetchall(f"SELECT v, c FROM {t}") == [("abc", "ab")]


def test_two_schemas_with_one_table_name_keep_their_own_column_types(ledger_url, request):
    if not ledger_url.startswith("postgresql"):
        pytest.skip("schemas are PostgreSQL's")
    other_url = request.getfixturevalue("ledger_url")  # noqa: F841 - the fixture gives one schema per test
    base, schema = ledger_url.split("?schema=")
    second = f"{schema}_b"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{second}"')
    a, b = Ledger(ledger_url), Ledger(f"{base}?schema={second}")
    try:
        with a.tables.cursor() as c:
            c.execute("CREATE TABLE xl_probe_same (v BIGINT)")
        with b.tables.cursor() as c:
            c.execute("CREATE TABLE xl_probe_same (v TEXT)")
        _insert(a, "INSERT INTO xl_probe_same (v) VALUES (?)", [(7,)])
        _insert(b, "INSERT INTO xl_probe_same (v) VALUES (?)", [("seven",)])
        assert a.tables.fetchall("SELECT v FROM xl_probe_same") == [(7,)]
        assert b.tables.fetchall("SELECT v FROM xl_probe_same") == [("seven",)]
        cached = [s for k, s in _UNNEST.items() if "xl_probe_same" in k]
        assert len(cached) == 2 and {f'"{schema}"' in s or f"{schema}." in s for s in cached} == {True, False}
    finally:
        a.close()
        b.close()


def test_concurrent_sorted_upserts_neither_deadlock_nor_lose_counts(ledger, ledger_url):
    t = _table(ledger, "k TEXT NOT NULL UNIQUE, n BIGINT NOT NULL")
    sql = f"INSERT INTO {t} AS cur (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = cur.n + excluded.n"
    others = [Ledger(ledger_url) for _ in range(3)]
    errors: list[BaseException] = []

    def writer(lg: Ledger) -> None:
        try:
            for _ in range(15):
                _insert(lg, sql, [(f"k{i:03d}", 1) for i in range(200)])  # sorted, as flush() sorts
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(lg,)) for lg in others]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        for lg in others:
            lg.close()
    assert errors == []
    assert ledger.tables.fetchall(f"SELECT count(*), min(n), max(n) FROM {t}") == [(200, 45, 45)]


def test_other_types_store_what_one_insert_per_row_stores(ledger):
    """Types the ledger does not use today, should a table ever take them: the one-statement path
    against psycopg's own executemany, value for value."""
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite's executemany is kept as it is")
    from datetime import date, datetime, timedelta, timezone
    from decimal import Decimal

    from ledger.tables import executemany

    ddl = "ts TIMESTAMPTZ, naive TIMESTAMP, d DATE, num NUMERIC, f DOUBLE PRECISION, ok BOOLEAN, j JSONB"
    fast, slow = _table(ledger, ddl), _table(ledger, ddl)
    cph = timezone(timedelta(hours=1))
    rows = [(datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=cph), datetime(2026, 1, 1, 0, 0), date(1970, 1, 1),
             Decimal("123456789.1235"), 1e308, True, '{"a": [1, "æ"]}'),
            (None, None, None, None, float("nan"), None, None),
            (datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31), date(2000, 2, 29), Decimal("-0.0005"),
             -0.0, False, "null")]
    cols = "(ts, naive, d, num, f, ok, j) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    with ledger.tables.cursor() as c:
        executemany(c.raw, f"INSERT INTO {ledger.tables.translate(fast)} {cols}", rows, True)
        c.raw.executemany(f"INSERT INTO {ledger.tables.translate(slow)} {cols}", rows)
    assert "unnest(" in _UNNEST[f"INSERT INTO {ledger.tables.translate(fast)} {cols}"]
    read = lambda t: [tuple(map(str, r)) for r in ledger.tables.fetchall(f"SELECT ts, naive, d, num, f, ok, j FROM {t} ORDER BY seq")]  # noqa: E731
    assert read(fast) == read(slow)


def test_text_and_integer_tables_go_as_one_json_text_and_store_what_one_insert_per_row_stores(ledger):
    """Tables of text, integer and bigint columns (the read models, the deliveries' index, the Merkle
    leaves) are written from one JSON text: the same values, NULLs and order as row by row."""
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite's executemany is kept as it is")
    from ledger.tables import _AS_JSON, executemany

    ddl = "s TEXT, i BIGINT, j INTEGER, k TEXT NOT NULL"
    fast, slow = _table(ledger, ddl), _table(ledger, ddl)
    rows = [(None if i % 7 == 0 else ODD[i % len(ODD)], None if i % 3 == 0 else (-1) ** i * (2**63 - 1 - i),
             i % 1000 - 500, f"row-{i}") for i in range(300)]
    rows += [("\u2028\x7f\x00"[:2], -2**63, -2**31, "extremes"), ("", 0, 2**31 - 1, "\"quoted\" \\ {a,b}")]
    cols = "(s, i, j, k) VALUES (%s, %s, %s, %s)"
    with ledger.tables.cursor() as c:
        executemany(c.raw, f"INSERT INTO {ledger.tables.translate(fast)} {cols}", rows, True)
        c.raw.executemany(f"INSERT INTO {ledger.tables.translate(slow)} {cols}", rows)
    assert "jsonb_array_elements(" in _AS_JSON[f"INSERT INTO {ledger.tables.translate(fast)} {cols}"][0]
    read = lambda t: ledger.tables.fetchall(f"SELECT s, i, j, k FROM {t} ORDER BY seq")  # noqa: E731
    assert read(fast) == read(slow) == rows


def test_what_json_cannot_hold_goes_as_arrays_and_is_refused_as_before(ledger):
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite's executemany is kept as it is")
    t = _table(ledger, "i BIGINT, s TEXT")
    with pytest.raises(Exception, match="out of range"):  # beyond 64 bits: orjson refuses, the arrays carry it
        _insert(ledger, f"INSERT INTO {t} (i, s) VALUES (?, ?)", [(1, "a"), (2**70, "b")])
    with pytest.raises(Exception):  # a short row is not padded with NULLs
        _insert(ledger, f"INSERT INTO {t} (i, s) VALUES (?, ?)", [(1, "a"), (2,)])
    with pytest.raises(Exception):  # every row short alike: still refused, not read as NULLs
        _insert(ledger, f"INSERT INTO {t} (i, s) VALUES (?, ?)", [(1,), (2,)])
    with pytest.raises(Exception):  # every row long alike: refused, no value dropped
        _insert(ledger, f"INSERT INTO {t} (i, s) VALUES (?, ?)", [(1, "a", "x"), (2, "b", "y")])
    assert ledger.tables.fetchall(f"SELECT i, s FROM {t}") == []
