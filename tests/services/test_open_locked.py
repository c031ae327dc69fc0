"""A SQLite ledger another service holds locked is waited out at start-up, not reported unreachable.

Found in the end-to-end benchmark: a second `gate run` started beside a busy first one met SQLite's
busy timeout while opening the ledger and exited with status 3.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace

import pytest
import typer

from ledger.application import Ledger
from services.cli import common
from services.config import Settings


def _settings(path) -> Settings:
    return replace(Settings.from_env(ledger_url=f"sqlite:///{path}"), connect_timeout=1)


def test_a_ledger_locked_longer_than_the_busy_timeout_is_opened_once_the_lock_is_gone(tmp_path):
    path = tmp_path / "ledger.sqlite"
    Ledger(f"sqlite:///{path}")
    settings = _settings(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release_later():
        time.sleep(2.5)  # longer than one attempt's wait, shorter than the bounded retry
        holder.execute("COMMIT")
        released.set()

    threading.Thread(target=release_later, daemon=True).start()
    ledger = common.open_ledger(settings)
    assert released.is_set(), "the ledger opened while another connection held it exclusively"
    assert ledger is not None
    holder.close()


def test_a_ledger_that_stays_locked_ends_in_one_line_not_a_hang(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ledger.sqlite"
    Ledger(f"sqlite:///{path}")
    settings = _settings(path)
    monkeypatch.setattr(common, "LOCKED_WAIT_FACTOR", 2)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(typer.Exit) as stopped:
            common.open_ledger(settings)
        assert stopped.value.exit_code == 3
        assert "stayed locked for 2 s" in capsys.readouterr().err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
