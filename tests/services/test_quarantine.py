"""The relay quarantines what it cannot deliver and goes on; a retry delivers it later under the same delivery id.

Real broker, both ledger backends.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from uuid import UUID

import pytest

from ledger.privacy import SqlKeyStore
from schemas.cpr import pseudonym
from services import topics
from services.config import DEV_MASTER_KEY
from services.delivery import DeliveryRelay, Target
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.kafka import make_producer
from services.quarantine import QuarantineRetry, in_quarantine
from services.runtime import Runtime
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)
CPRS = ["1203911234", "0508882345", "2211901111"]
OTHER_MASTER_KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="  # 32 bytes, base64, not the deployment's


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings, request_partitions=1) as runtime:
        yield runtime


def decide(rt: Runtime, *, denied: int = 1) -> list[str]:
    """Three lawful release notices (three subjects) and ``denied`` unlawful ones, decided by the gate."""
    publisher = rt.dev_publisher(*KSP_SENDER)
    ids = [publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr=cpr, name="Test Person",
                                                                release_in_days=21, age=34)).message_id
           for cpr in CPRS]
    for _ in range(denied):
        publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr=CPRS[0], name="Test Person",
                                                             release_in_days=900, age=34))
    publisher.producer.close()
    with running(rt.gate_worker()):
        assert wait_for(lambda: rt.ledger.counts()["requests"] == len(CPRS) + denied, timeout=30)
    return ids


def relay_until_idle(rt: Runtime, master_key: str | None = None) -> DeliveryRelay:
    sealer = rt.sealer if master_key is None else type(rt.sealer)(rt.ledger.tables, master_key)
    relay = DeliveryRelay(rt.ledger, make_producer(rt.settings, client_id="relay-q"), sealer, rt.codec,
                          maintain=lambda: rt.maintain(max_entries=5000))
    while relay.run_once():
        pass
    relay.producer.close()
    return relay


def inbox_message_ids(rt: Runtime, broker, expect: int) -> list[tuple[str, str]]:
    records = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=expect)
    return [(rt.codec.decode(r.value).record["message_id"], dict(r.headers)["x-delivery-id"].decode()) for r in records]


def retry(rt: Runtime, master_key: str | None = None):
    sealer = rt.sealer if master_key is None else type(rt.sealer)(rt.ledger.tables, master_key)
    producer = make_producer(rt.settings, client_id="quarantine-retry")
    try:
        return QuarantineRetry(rt.ledger, producer, sealer, rt.codec).retry()
    finally:
        producer.close()


def test_a_damaged_subject_key_quarantines_that_delivery_and_the_relay_goes_on(rt, broker):
    ids = decide(rt)
    damaged = pseudonym(CPRS[1], rt.pseudonym_secret)
    store = SqlKeyStore(rt.ledger.tables)
    original = store.get(damaged)
    flipped = original[:-1] + bytes([original[-1] ^ 0x01])
    with rt.ledger.tables.cursor() as c:
        c.execute("UPDATE xl_subject_keys SET wrapped_key = ? WHERE subject = ?", (flipped, damaged))

    relay = relay_until_idle(rt)
    assert relay.stats == {"inbox": 2, "receipts": 4, "rejected_receipts": 0, "undeliverable": 0, "quarantined": 1}
    assert sorted(m for m, _ in inbox_message_ids(rt, broker, 2)) == sorted([ids[0], ids[2]])
    [q] = in_quarantine(rt.ledger)
    assert (q.kind, q.recipient, q.reason, q.attempts) == ("inbox", KALUNDBORG_SOCIAL[0], "SEALED_MESSAGE_UNREADABLE", 1)
    # What is derived from the log kept up: the Merkle tree and read models include the quarantine entry.
    rt.maintain()
    rt.ledger.checkpoint_now(rt.checkpoint_signer, origin=rt.settings.ledger_origin)
    assert rt.verify().ok and rt.ledger.integrity.tree_size() == rt.ledger.max_notification_id()

    # Still damaged: the retry fails again and is recorded as such.
    report = retry(rt)
    assert report.failed == [(q.delivery, "SEALED_MESSAGE_UNREADABLE")] and not report.delivered
    assert in_quarantine(rt.ledger)[0].attempts == 2

    with rt.ledger.tables.cursor() as c:
        c.execute("UPDATE xl_subject_keys SET wrapped_key = ? WHERE subject = ?", (original, damaged))
    report = retry(rt)
    assert report.delivered == [q.delivery] and report.ok
    assert in_quarantine(rt.ledger) == []
    delivered = inbox_message_ids(rt, broker, 3)
    assert (ids[1], q.delivery) in delivered  # the same delivery id the relay would have used
    assert q.delivery == Target(q.exchange, q.recipient, "inbox").delivery_id
    assert retry(rt).delivered == []  # nothing left: nothing is delivered twice
    assert rt.ledger.counts()["deliveries"] == 3 + 4
    # The relay's page holds the receipt, the retry's own Delivery the inbox delivery: both are the exchange's.
    found = {d["kind"]: (d["delivery_id"], d["outcome"]) for d in rt.ledger.deliveries(UUID(q.exchange))}
    assert found == {"inbox": (q.delivery, "PUBLISHED"),
                     "receipt": (Target(q.exchange, q.recipient, "receipt").delivery_id, "PUBLISHED")}


def test_a_relay_with_the_wrong_master_key_quarantines_every_payload_and_a_retry_with_the_right_one_delivers(rt, broker):
    ids = decide(rt, denied=0)
    assert rt.settings.master_key == DEV_MASTER_KEY
    relay = relay_until_idle(rt, master_key=OTHER_MASTER_KEY)
    assert relay.stats == {"inbox": 0, "receipts": 3, "rejected_receipts": 0, "undeliverable": 0, "quarantined": 3}
    assert len(in_quarantine(rt.ledger)) == 3

    assert retry(rt, master_key=OTHER_MASTER_KEY).failed  # the cause is not fixed yet
    report = retry(rt)  # the right key is back
    assert len(report.delivered) == 3 and report.ok
    assert sorted(m for m, _ in inbox_message_ids(rt, broker, 3)) == sorted(ids)
    assert in_quarantine(rt.ledger) == []


def test_a_record_the_broker_refuses_is_quarantined_not_retried_forever(rt, broker):
    decide(rt, denied=0)
    # A producer whose limit is below the size of a delivery: kafka-python refuses it in send().
    relay = DeliveryRelay(rt.ledger, make_producer(rt.settings, client_id="relay-small", max_request_size=600),
                          rt.sealer, rt.codec)
    while relay.run_once():
        pass
    relay.producer.close()
    assert relay.stats["quarantined"] == 3 and relay.stats["receipts"] == 3
    assert {q.reason for q in in_quarantine(rt.ledger)} == {"RECORD_TOO_LARGE"}
    assert len(retry(rt).delivered) == 3


def test_the_running_relay_survives_a_poison_entry(rt, broker, settings):
    ids = decide(rt, denied=0)
    damaged = pseudonym(CPRS[0], rt.pseudonym_secret)
    with rt.ledger.tables.cursor() as c:
        c.execute("UPDATE xl_subject_keys SET wrapped_key = ? WHERE subject = ?", (b"\x01" + bytes(60), damaged))
    relay = Runtime(replace(settings)).relay()
    with running(relay):
        assert wait_for(lambda: relay.stats["inbox"] == 2 and relay.stats["quarantined"] == 1, timeout=30)
        # It keeps working after the poison entry: a new exchange is delivered too.
        publisher = rt.dev_publisher(*KSP_SENDER)
        late = publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr=CPRS[2], name="Test Person",
                                                                    release_in_days=21, age=34)).message_id
        publisher.producer.close()
        with running(rt.gate_worker("late-gate")):
            assert wait_for(lambda: relay.stats["inbox"] == 3, timeout=30)
    assert sorted(m for m, _ in inbox_message_ids(rt, broker, 3)) == sorted([ids[1], ids[2], late])
