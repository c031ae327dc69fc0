"""The ledger URL names the database, whatever the process environment says.

eventsourcing reads its settings from the environment, and looks for the application-prefixed
spelling (XLEDGER_SQLITE_DBNAME, XLEDGER_POSTGRES_HOST, ...) before the plain one, so a stray
variable used to open another database than the URL named (both back-ends)."""

from __future__ import annotations

from pathlib import Path

from ledger.application import Ledger
from tests.ledger.conftest import make_exchange


def test_prefixed_environment_does_not_redirect_the_ledger(ledger_url, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere.sqlite"
    monkeypatch.setenv("XLEDGER_PERSISTENCE_MODULE", "eventsourcing.sqlite")
    monkeypatch.setenv("XLEDGER_SQLITE_DBNAME", str(elsewhere))
    monkeypatch.setenv("XLEDGER_POSTGRES_DBNAME", "no_such_database")
    monkeypatch.setenv("XLEDGER_POSTGRES_SCHEMA", "no_such_schema")  # the fixture's URL names its schema
    monkeypatch.setenv("XLEDGER_SQLITE_LOCK_TIMEOUT", "17")  # a tunable: still read from the environment
    ledger = Ledger(ledger_url)
    try:
        if ledger_url.startswith("sqlite"):
            assert ledger.recorder.datastore.pool.db_name == ledger_url[len("sqlite:///"):]
            assert ledger.recorder.datastore.pool.lock_timeout == 17
        else:
            datastore = ledger.recorder.datastore
            assert datastore.schema == ledger_url.rsplit("schema=", 1)[1]
        ex = make_exchange(1)
        ledger.record([ex])
        assert ledger.existing([ex.id]) == {ex.id}
    finally:
        ledger.close()
    assert not elsewhere.exists() and not Path(str(elsewhere) + "-wal").exists()
