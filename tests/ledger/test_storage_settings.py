"""eventsourcing reads storage settings from the environment, also prefixed with the application's
name (XLEDGER_). The two that would change what the ledger relies on are refused before any table
is made: originator ids stored as text, and PostgreSQL's database functions for inserts (no table
lock, so no ids committed in order, and none of the ledger's side rows or tracking records)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledger.application import Ledger, LedgerConfigError
from services.cli import app


@pytest.mark.parametrize("variable", ["ORIGINATOR_ID_TYPE", "XLEDGER_ORIGINATOR_ID_TYPE"])
def test_originator_ids_as_text_are_refused_before_a_table_is_made(ledger_url, monkeypatch, variable):
    monkeypatch.setenv(variable, "text")
    with pytest.raises(LedgerConfigError, match="ORIGINATOR_ID_TYPE='text'.*unset it"):
        Ledger(ledger_url)
    monkeypatch.delenv(variable)
    ledger = Ledger(ledger_url)  # made now, by the ledger's own settings
    try:
        assert ledger.max_notification_id() == 0
    finally:
        ledger.close()


def test_postgres_database_functions_are_refused(ledger_url, monkeypatch):
    if not ledger_url.startswith("postgres"):
        pytest.skip("a PostgreSQL setting")
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "y")
    with pytest.raises(LedgerConfigError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        Ledger(ledger_url)


def test_the_command_line_names_the_setting_in_one_line(ledger_url, monkeypatch):
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", "text")
    result = CliRunner().invoke(app, ["ledger", "init", "--ledger-url", ledger_url])
    assert result.exit_code == 2, result.output
    assert "ORIGINATOR_ID_TYPE='text'" in result.output and "Traceback" not in result.output
