"""No answer from an empty ledger: only the commands that fill a ledger create one.

Every other command refuses a missing ledger, or a database without ledger tables, with one
line and exit 2, and leaves nothing behind (both backends: a missing SQLite file, an empty
PostgreSQL schema; and an unrelated SQLite file, which stays byte for byte as it was).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from ledger.application import Ledger
from ledger.presence import LEDGER_TABLES
from tests.conftest import _pg_conninfo

runner = CliRunner()
PSEUDONYM = "ab" * 32
BUNDLE = str(Path(__file__).resolve().parents[2] / "policies" / "bundles" / "dk-115-2026.yaml")

READERS = [
    ("replay",),
    ("audit", "reevaluate"),
    ("subject", "report", "1203911234"),
    ("subject", "find", "1203911234"),
    ("policy", "impact", "--bundle", BUNDLE),
    ("users", "list"),
    ("users", "add", "lo1", "--role", "legal_officer", "--password", "a long password"),
    ("ledger", "integrate"),
    ("review", "serve"),
    ("verify",),
    ("proof", "inclusion", "0"),
    ("proof", "consistency", "0", "0"),
    ("subject", "erase", PSEUDONYM, "--reason", "test"),
    ("relay", "quarantine", "list"),
]


def xl(url: str, *args: str):
    from services.cli import app

    return runner.invoke(app, list(args), env={"XLEDGER_LEDGER_URL": url})


def tables_at(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            return set()
        with sqlite3.connect(path) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    dbname, schema = url.rsplit("/", 1)[1].split("?schema=")
    with psycopg.connect(_pg_conninfo(dbname)) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_a_reader_refuses_a_missing_ledger_and_creates_nothing(ledger_url, command):
    result = xl(ledger_url, *command)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no ledger"), result.output
    assert tables_at(ledger_url) == set()
    if ledger_url.startswith("sqlite:///"):
        assert not Path(ledger_url[len("sqlite:///"):]).exists()


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_a_reader_refuses_an_unrelated_sqlite_file_and_leaves_it_as_it_was(tmp_path, command):
    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    before = other.read_bytes()
    result = xl(f"sqlite:///{other}", *command)
    assert result.exit_code == 2 and "is not an exchange-ledger database" in result.output, result.output
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]


def test_ledger_init_creates_a_ledger_once_and_then_readers_answer(ledger_url):
    assert xl(ledger_url, "users", "list").exit_code == 2
    created = xl(ledger_url, "ledger", "init")
    assert created.exit_code == 0 and "ledger created" in created.output
    backend = "sqlite" if ledger_url.startswith("sqlite") else "postgres"
    assert set(LEDGER_TABLES[backend]) <= tables_at(ledger_url)
    again = xl(ledger_url, "ledger", "init")
    assert again.exit_code == 0 and "ledger already there" in again.output
    assert xl(ledger_url, "users", "list").exit_code == 0
    report = xl(ledger_url, "subject", "report", PSEUDONYM, "--lang", "en")
    assert report.exit_code == 0 and "0 disclosed" in report.output  # an answer, from a ledger that exists


def test_the_tables_named_as_the_ledger_s_are_the_ones_it_makes(ledger_url):
    ledger = Ledger(ledger_url)
    try:
        backend = "postgres" if ledger.tables.is_postgres else "sqlite"
        assert ledger.recorder.events_table_name == LEDGER_TABLES[backend][0]
    finally:
        ledger.close()


def test_ledger_init_and_the_services_refuse_to_add_tables_to_an_unrelated_sqlite_file(tmp_path):
    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    result = xl(f"sqlite:///{other}", "ledger", "init")
    assert result.exit_code == 2 and "left as it is" in result.output
    result = xl(f"sqlite:///{other}", "relay", "run", "--bootstrap-servers", "127.0.0.1:1")
    assert result.exit_code == 2 and "left as it is" in result.output
    assert other.read_bytes() == before


def test_a_ledger_still_being_created_by_another_service_is_not_called_a_stranger(tmp_path):
    """A gate and a relay started together on a new file: one may look between the other's CREATE TABLEs."""
    from ledger.presence import NoLedger, require_ledger_or_nothing, sqlite_tables

    whole = tmp_path / "whole.sqlite"
    Ledger(f"sqlite:///{whole}").close()
    made = sorted(sqlite_tables(whole))
    for cut in range(len(made) + 1):  # every prefix of the tables the ledger makes, as a second process may see it
        partial = tmp_path / f"partial-{cut}.sqlite"
        with sqlite3.connect(partial) as conn:
            for table in made[:cut]:
                conn.execute(f'CREATE TABLE "{table}" (x)')
        assert require_ledger_or_nothing(f"sqlite:///{partial}") is (cut > 0)
    mixed = tmp_path / "mixed.sqlite"
    with sqlite3.connect(mixed) as conn:
        conn.execute("CREATE TABLE stored_events (x)")
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(NoLedger, match="left as it is"):
        require_ledger_or_nothing(f"sqlite:///{mixed}")
