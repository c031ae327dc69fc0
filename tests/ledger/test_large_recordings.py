"""A recording as large as the gate can make is stored, and does not hang.

The gate records a whole poll (up to ``max_poll_records`` messages, each up to the codec's 1 MB)
in one transaction. psycopg's pipeline mode, which eventsourcing uses for that insert on
PostgreSQL, stopped flushing a recording of about 8-16 MB on the loopback interface and waited for
ever (ledger.application._insert_without_pipeline). The recording runs in a thread so that a
hang fails this test instead of stopping the suite; the limit is for liveness, not speed.
"""

from __future__ import annotations

import base64
import os
import threading

from ledger.application import Ledger
from tests.ledger.conftest import make_exchange

HANG = 120  # seconds: a recording of 24 MB takes a few seconds on either back-end


def _record_in_thread(ledger: Ledger, aggregates: list) -> list:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(ledger.record(aggregates))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), f"recording {len(aggregates)} exchanges did not finish in {HANG} s: hung"
    return outcome


def test_a_recording_of_24_megabytes_is_stored_whole(ledger_url):
    ledger = Ledger(ledger_url)
    try:
        # 24 messages at the codec's limit (schemas.codec.MAX_MESSAGE_BYTES), sealed as the gate stores them.
        sealed = [base64.b64encode(os.urandom(1024 * 1024)).decode() for _ in range(24)]
        exchanges = [make_exchange(i, sealed=s) for i, s in enumerate(sealed)]
        outcome = _record_in_thread(ledger, exchanges)
        assert outcome == [48], outcome  # two events (Requested, Decided) per exchange
        stored = {e.message_id: e.sealed_message for e in map(ledger.get_exchange, (x.id for x in exchanges))}
        assert stored == {f"msg-{i}": s for i, s in enumerate(sealed)}
        # And the next, ordinary recording goes on after it.
        assert _record_in_thread(ledger, [make_exchange(100)]) == [2]
        assert ledger.max_notification_id() >= 50
    finally:
        ledger.close()


def test_a_duplicate_recording_is_refused_whole_with_integrity_error(ledger_url):
    """What the gate and the relay rely on to skip a batch already recorded: a tracking position or an
    aggregate recorded twice fails the whole recording with eventsourcing's IntegrityError, and
    nothing of it is stored (on PostgreSQL, through ``_insert_without_pipeline``)."""
    import pytest
    from eventsourcing.persistence import IntegrityError

    from ledger.application import Tracking

    ledger = Ledger(ledger_url)
    try:
        first = make_exchange(1)
        ledger.record([first], Tracking("kafka:t:0", 10))
        before = ledger.max_notification_id()
        with pytest.raises(IntegrityError):  # the tracking position again, with a new exchange
            ledger.record([make_exchange(2)], Tracking("kafka:t:0", 10))
        again = make_exchange(1)  # the same exchange id (sender, message id), under a new position
        with pytest.raises(IntegrityError):
            ledger.record([again], Tracking("kafka:t:0", 11))
        with pytest.raises(IntegrityError):  # a tracking record alone, already there
            ledger.record([], Tracking("kafka:t:0", 10))
        assert ledger.max_notification_id() == before
        assert ledger.position("kafka:t:0") == 10
        assert ledger.record([make_exchange(3)], Tracking("kafka:t:0", 11)) == 2
    finally:
        ledger.close()
