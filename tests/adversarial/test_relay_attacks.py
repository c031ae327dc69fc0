"""The relay's poison pills, against `xledger gate run` and `xledger relay run` in their own processes.

A flipped byte in one subject's wrapped key, then a relay started with the wrong master key:
the relay quarantines what it cannot open, goes on with everything else, and keeps the Merkle
tree and the read models current. `xledger relay quarantine retry`, once the cause is fixed,
delivers each under its original delivery id. Nothing is delivered twice; `verify` passes.
Real broker, both ledgers.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from ledger.privacy import SqlKeyStore
from ledger.readmodels import ReadModels
from schemas.cpr import pseudonym
from services import topics
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from tests.adversarial.processes import Service, xledger
from tests.harness import ksp_runtime, read_topic, wait_for

NOW = datetime.now(timezone.utc)
CPRS = ["1203911234", "0508882345", "2211901111", "0101801234", "1512851234"]
WRONG_MASTER_KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings, request_partitions=1) as runtime:
        yield runtime


def publish(rt, cprs: list[str], release_in_days: int = 21) -> list[str]:
    publisher = rt.dev_publisher(*KSP_SENDER)
    ids = [publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr=cpr, name="Test Person",
                                                                release_in_days=release_in_days, age=34)).message_id
           for cpr in cprs]
    publisher.producer.close()
    return ids


def count(rt, suffix: str) -> int:
    return sum(1 for n in rt.ledger.all_notifications() if n.topic.endswith(suffix))


def derived_data_current(rt) -> bool:
    latest = rt.ledger.max_notification_id()
    return rt.ledger.integrity.tree_size() == latest and ReadModels(rt.ledger).position() == latest


def test_no_entry_stops_the_relay(rt, settings, broker):
    allowed = publish(rt, CPRS[:3]) + []
    publish(rt, CPRS[:1], release_in_days=900)  # denied: a receipt only
    damaged = pseudonym(CPRS[1], rt.pseudonym_secret)
    keys = SqlKeyStore(rt.ledger.tables)

    with Service(settings, "gate", "run") as gate:
        assert wait_for(lambda: count(rt, "Exchange.RequestDecided") == 4, timeout=60)
        original = keys.get(damaged)
        with rt.ledger.tables.cursor() as c:
            c.execute("UPDATE xl_subject_keys SET wrapped_key = ? WHERE subject = ?",
                      (original[:-1] + bytes([original[-1] ^ 0x01]), damaged))

        # 1. One damaged subject key: that delivery is quarantined, the rest goes out.
        with Service(settings, "relay", "run") as relay:
            assert wait_for(lambda: rt.ledger.counts()["deliveries"] == 2 + 4 or not relay.alive, timeout=60)
            assert wait_for(lambda: count(rt, "QuarantinedDelivery.Quarantined") == 1, timeout=30)
            assert wait_for(lambda: derived_data_current(rt), timeout=60)
            assert relay.alive
            [alert] = relay.events("relay.delivery_quarantined")
            assert alert["alert"] is True and alert["reason"] == "SEALED_MESSAGE_UNREADABLE"
            assert relay.stop() == 0

        # 2. The wrong master key: every payload is quarantined, receipts still go out.
        late = publish(rt, CPRS[3:5])
        with Service(settings, "relay", "run", XLEDGER_MASTER_KEY=WRONG_MASTER_KEY) as relay:
            assert wait_for(lambda: count(rt, "QuarantinedDelivery.Quarantined") == 3 or not relay.alive, timeout=60)
            assert wait_for(lambda: rt.ledger.counts()["deliveries"] == 2 + 4 + 2, timeout=30)  # + 2 receipts
            assert wait_for(lambda: derived_data_current(rt), timeout=60)
            assert relay.alive and gate.alive
            assert relay.stop() == 0
        assert gate.stop() == 0

    listed = xledger(settings, "relay", "quarantine", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    quarantined = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(q["reason"] for q in quarantined) == ["SEALED_MESSAGE_UNREADABLE"] * 3
    assert {q["kind"] for q in quarantined} == {"inbox"}

    # The damaged key is still damaged: its retry fails, the others (right key now) are delivered.
    retried = xledger(settings, "relay", "quarantine", "retry")
    assert retried.returncode == 1 and "delivered 2" in retried.stdout
    with rt.ledger.tables.cursor() as c:
        c.execute("UPDATE xl_subject_keys SET wrapped_key = ? WHERE subject = ?", (original, damaged))
    retried = xledger(settings, "relay", "quarantine", "retry")
    assert retried.returncode == 0 and "delivered 1" in retried.stdout, retried.stdout + retried.stderr
    assert xledger(settings, "relay", "quarantine", "list", "--json").stdout == ""

    inbox = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=5, timeout=30)
    delivered = Counter((rt.codec.decode(r.value).record["message_id"], dict(r.headers)["x-delivery-id"].decode())
                        for r in inbox)
    assert sorted(m for m, _ in delivered) == sorted(allowed + late)  # each exactly once
    assert set(delivered.values()) == {1}
    assert {q["delivery_id"] for q in quarantined} <= {d for _, d in delivered}  # under the original ids

    assert xledger(settings, "ledger", "integrate").returncode == 0
    verified = xledger(settings, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
