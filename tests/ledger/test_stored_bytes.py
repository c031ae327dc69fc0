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


def test_exchange_decided_stores_what_init_and_decide_store(ledger, monkeypatch):
    """Exchange.decided (the gate's direct path) gives the same events, byte for byte, as
    Exchange(...) followed by .decide(...), and the same aggregate when read back."""
    from datetime import datetime, timezone

    from ledger.domain import Exchange, exchange_id

    stamps = iter([datetime(2026, 11, 30, 12, 0, s, tzinfo=timezone.utc) for s in range(6)])
    for cls in (Exchange.Requested, Exchange.Decided):
        monkeypatch.setattr(cls, "create_timestamp", staticmethod(lambda: next(stamps)))
    slow = make_exchange(5, subject="æøå-subject")  # stamps 0 and 1
    fields = {k: getattr(slow, k) for k in ("sender", "message_id", "source", "summary", "subject",
                                           "message_digest", "sealed_message")}
    fast = Exchange.decided(slow.decision, id=exchange_id(slow.sender, slow.message_id), **fields)  # 2 and 3
    stored = [[ledger.mapper.to_stored_event(e) for e in ex.pending_events] for ex in (slow, fast)]
    assert [(s.originator_id, s.originator_version, s.topic) for s in stored[0]] == \
        [(s.originator_id, s.originator_version, s.topic) for s in stored[1]]
    # Only the timestamps differ (00 and 01 against 02 and 03 seconds).
    assert [s.state.replace(b":00+", b":02+").replace(b":01+", b":03+") for s in stored[0]] == \
        [s.state for s in stored[1]]
    assert (fast.id, fast.version, fast.decision, fast.reviews, fast.verdicts) == \
        (slow.id, slow.version, slow.decision, [], [])
    with pytest.raises(ValueError, match="already decided"):
        fast.decide({"results": []})
    ledger.record([fast])
    back = ledger.get_exchange(fast.id)
    assert (back.version, back.decision, back.sealed_message) == (2, slow.decision, slow.sealed_message)
