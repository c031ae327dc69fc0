"""A locked ledger database is waited out: the gate and the relay retry, nothing is lost or doubled.

SQLite only: another connection holding the write lock past the busy timeout is the real
failure seen with two gates and a relay on one SQLite file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest
from structlog.testing import capture_logs

from ledger.application import Ledger, kafka_tracking_name
from ledger.privacy import LedgerSealer
from services import topics
from services.delivery import OUTBOX_TRACKING, DeliveryRelay
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.gate import GatePipeline, GateWorker
from services.kafka import make_consumer, make_producer
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rt(settings):
    if not settings.ledger_url.startswith("sqlite"):
        pytest.skip("the lock is SQLite's")
    with ksp_runtime(settings, request_partitions=1) as runtime:
        yield runtime


def hold_write_lock(path: str, seconds: float) -> threading.Thread:
    ready = threading.Event()

    def hold():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    ready.wait(5)
    return t


def test_gate_and_relay_wait_out_a_locked_database(rt, broker):
    path = rt.settings.ledger_url[len("sqlite:///"):]
    # A short busy timeout, so that the locks below outlast it.
    ledger = Ledger(rt.settings.ledger_url, env={"SQLITE_LOCK_TIMEOUT": "1"})
    sealer = LedgerSealer(ledger.tables, rt.settings.master_key)
    pipeline = GatePipeline(rt.engine, sealer, rt.pseudonym_secret, rt.keyset, rt.codec)
    gate = GateWorker(pipeline, ledger, make_consumer(rt.settings, rt.settings.group_id, client_id="locked"),
                      make_producer(rt.settings, client_id="locked-dlq"))
    relay = DeliveryRelay(ledger, make_producer(rt.settings, client_id="locked-relay"), sealer, rt.codec)
    publisher = rt.dev_publisher(*KSP_SENDER)
    sent = [publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr=cpr, name="Test Person",
                                                               release_in_days=20, age=30)).message_id
            for cpr in ("1203911234", "0508882345", "2211901111")]
    publisher.producer.close()

    with capture_logs() as logs:
        holder = hold_write_lock(path, 3.5)
        with running(gate):
            holder.join()
            assert wait_for(lambda: ledger.position(kafka_tracking_name(topics.REQUESTS, 0)) == 3, timeout=40)
        holder = hold_write_lock(path, 3.5)
        with running(relay):
            holder.join()
            assert wait_for(lambda: relay.stats["receipts"] >= 3 and ledger.position(OUTBOX_TRACKING), timeout=40)
    events = [e["event"] for e in logs]
    assert "gate.ledger_unavailable" in events and "relay.ledger_unavailable" in events

    assert gate.stats["decided"] == 3 and gate.stats["duplicates"] == 0 and gate.stats["rejected"] == 0
    inbox = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=3)
    # Each delivery id once per send attempt at most; every message there, none lost.
    assert sorted(set(rt.codec.decode(r.value).record["message_id"] for r in inbox)) == sorted(sent)
    counts = rt.ledger.counts()
    assert counts["requests"] == 3 and counts["rejected"] == 0  # the retries recorded no duplicates
    ledger.close()
