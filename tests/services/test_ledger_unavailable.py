"""An unavailable ledger database is waited out: the gate and the relay retry, nothing is lost or doubled.

SQLite: another connection holds the write lock past the busy timeout (the real failure seen
with two gates and a relay on one SQLite file). PostgreSQL: the server ends every connection
(``pg_terminate_backend``) and refuses new ones for a while, as in a restart or fail-over.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import psycopg
import pytest
from structlog.testing import capture_logs

from ledger.application import LEDGER_UNAVAILABLE, Ledger, kafka_tracking_name
from ledger.privacy import LedgerSealer
from services import topics
from services.delivery import OUTBOX_TRACKING, DeliveryRelay
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.gate import GatePipeline, GateWorker
from services.kafka import make_consumer, make_producer
from tests.conftest import PG_ADMIN_URL
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rt(settings):
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


def take_database_down(url: str, seconds: float) -> threading.Thread:
    """Ends every session on the test's PostgreSQL database and refuses new ones for ``seconds``."""
    dbname = url.rsplit("/", 1)[1].split("?")[0]
    down = threading.Event()

    def outage():
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:  # another database: it stays up
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            try:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
                down.set()
                time.sleep(seconds)
            finally:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')

    t = threading.Thread(target=outage, daemon=True)
    t.start()
    down.wait(5)
    return t


# eventsourcing retries a failed PostgreSQL call ten times (0.2 s apart, each waiting up to the
# connection timeout) before it raises, so a PostgreSQL outage must outlast ~12 s to be seen.
OUTAGE_S = {"sqlite": 3.5, "postgres": 14.0}


@contextmanager
def outage(url: str) -> Iterator[None]:
    """The ledger database is unavailable for longer than any retry inside a call."""
    if url.startswith("sqlite:///"):
        holder = hold_write_lock(url[len("sqlite:///"):], OUTAGE_S["sqlite"])
    else:
        holder = take_database_down(url, OUTAGE_S["postgres"])
    yield
    holder.join()


def quietly(predicate):
    """A wait condition read through a ledger the outage may have just cut off."""
    def check() -> bool:
        try:
            return predicate()
        except LEDGER_UNAVAILABLE:
            return False
    return check


def test_gate_and_relay_wait_out_an_unavailable_database(rt, broker):
    url = rt.settings.ledger_url
    # A short busy timeout (SQLite) and connection wait (PostgreSQL), so that the outage outlasts them.
    ledger = Ledger(url, env={"SQLITE_LOCK_TIMEOUT": "1", "POSTGRES_CONNECT_TIMEOUT": "1"})
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
    ledger.position(OUTBOX_TRACKING)  # the services' connections exist before the outage

    gate_done = quietly(lambda: ledger.position(kafka_tracking_name(topics.REQUESTS, 0)) == 3)
    relay_done = quietly(lambda: relay.stats["receipts"] >= 3 and bool(ledger.position(OUTBOX_TRACKING)))
    # SQLite's lock stops writers only, and the relay writes only once the gate has recorded: one
    # outage for each. A PostgreSQL outage stops every call: one for both, to keep the test short.
    phases = [((gate,), gate_done), ((relay,), relay_done)] if url.startswith("sqlite") else [
        ((gate, relay), lambda: gate_done() and relay_done())]
    with capture_logs() as logs:
        for services, done in phases:
            with outage(url):
                with running(*services):
                    assert wait_for(done, timeout=60)
    events = [e["event"] for e in logs]
    assert "gate.ledger_unavailable" in events and "relay.ledger_unavailable" in events

    assert gate.stats["decided"] == 3 and gate.stats["duplicates"] == 0 and gate.stats["rejected"] == 0
    inbox = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=3)
    # Each delivery id once per send attempt at most; every message there, none lost.
    assert sorted(set(rt.codec.decode(r.value).record["message_id"] for r in inbox)) == sorted(sent)
    counts = wait_for(quietly(lambda: rt.ledger.counts() is not None)) and rt.ledger.counts()
    assert counts["requests"] == 3 and counts["rejected"] == 0  # the retries recorded no duplicates
    assert counts["deliveries"] == 6  # three inbox deliveries and three receipts, each recorded once
    ledger.close()
