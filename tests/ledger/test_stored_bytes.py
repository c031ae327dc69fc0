"""What Ledger.record stores is exactly the mapper's bytes, on both backends (PostgreSQL sends them in binary)."""

from __future__ import annotations

import pytest

from tests.ledger.conftest import make_exchange


def test_stored_state_is_byte_identical_to_the_encoded_event(ledger):
    ex = make_exchange(7, subject="æøå-\u2028-\x00-subject")
    pending = list(ex.pending_events)
    expected = [ledger.mapper.to_stored_event(e).state for e in pending]
    ledger.record([ex])
    stored = ledger.recorder.select_events(ex.id)
    assert [bytes(s.state) for s in stored] == expected
    assert ledger.get_exchange(ex.id).subject == "æøå-\u2028-\x00-subject"


def test_postgres_sends_the_events_array_in_binary(ledger):
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite binds bytes natively")
    statement = ledger.recorder.insert_events_statement
    assert "unnest(%b::" in statement.as_string(None)
