"""The relay's bookkeeping is one ``DeliveryPage`` entry per page of the outbox: it lists every
delivery of the page, is an entry of the Merkle tree like any other, and a page (or any delivery
in it) is never recorded twice, whichever relay reads it. Real broker, both backends."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.domain import delivery_id
from services import topics
from services.delivery import OUTBOX_TRACKING, DeliveryRelay
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER
from services.kafka import make_producer
from tests.harness import ksp_runtime, read_topic
from tests.services.relay_history import decided


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings) as runtime:
        yield runtime


def relay(rt, ledger: Any = None, page_size: int = 500) -> DeliveryRelay:
    return DeliveryRelay(ledger or rt.ledger, make_producer(rt.settings, client_id="relay-page-test"), rt.sealer,
                         rt.codec, page_size=page_size)


def topic_count(rt, suffix: str) -> int:
    return sum(1 for n in rt.ledger.all_notifications() if n.topic.endswith(suffix))


def indexed(rt) -> list[str]:
    return [r[0] for r in rt.ledger.tables.fetchall("SELECT delivery_id FROM xl_deliveries")]


class StalePosition:
    """The ledger as a second relay saw it: it read the outbox position before the first relay recorded."""

    def __init__(self, ledger: Any, position: int):
        self._ledger, self._position = ledger, position

    def position(self, name: str) -> int:
        return self._position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def test_one_entry_per_page_lists_every_delivery_and_is_in_the_merkle_tree(rt, broker):
    sent = decided(rt)
    gated = rt.ledger.max_notification_id()
    r = relay(rt)
    while r.run_once():
        pass
    r.producer.close()

    # Eight deliveries, one entry: nothing per delivery.
    assert topic_count(rt, "DeliveryPage.Recorded") == 1 and topic_count(rt, "Delivery.Published") == 0
    assert rt.ledger.counts()["deliveries"] == 8
    [page] = [rt.ledger.mapper.to_domain_event(n) for n in rt.ledger.all_notifications()
              if n.topic.endswith("DeliveryPage.Recorded")]
    assert (page.start, page.end) == (1, gated)

    # What the page lists is what went out, under the ids in the records' headers.
    inbox = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=3)
    receipts = read_topic(broker.bootstrap, topics.receipts(KSP_SENDER[0]), expect=5)
    sent_ids = {dict(rec.headers)["x-delivery-id"].decode() for rec in inbox + receipts}
    assert {d["delivery_id"] for d in page.deliveries} == sent_ids == set(indexed(rt))
    assert {(d["kind"], d["topic"], d["outcome"]) for d in page.deliveries} == {
        ("inbox", topics.inbox(KALUNDBORG_SOCIAL[0]), "PUBLISHED"),
        ("receipt", topics.receipts(KSP_SENDER[0]), "PUBLISHED")}

    # One exchange's deliveries, found through the index without reading the log.
    lawful = next(n.originator_id for n in rt.ledger.all_notifications() if n.topic.endswith("Exchange.RequestDecided")
                  and rt.ledger.get_exchange(n.originator_id).message_id == sent[0][0])
    found = rt.ledger.deliveries(lawful)
    assert sorted((d["kind"], d["recipient"], d["delivery_id"]) for d in found) == sorted(
        (kind, KALUNDBORG_SOCIAL[0], str(delivery_id(lawful, KALUNDBORG_SOCIAL[0], kind))) for kind in ("inbox", "receipt"))
    assert all(d["exchange"] == str(lawful) and d["at"] for d in found)

    # The page entry is a leaf of the Merkle tree; the whole ledger verifies.
    assert rt.maintain() is True
    assert rt.ledger.integrity.tree_size() == rt.ledger.max_notification_id() == gated + 1
    assert rt.verify().ok


def test_a_page_read_by_two_relays_is_recorded_once(rt, broker):
    decided(rt)
    first = relay(rt, page_size=4)
    assert first.run_once() == 4
    recorded, position = rt.ledger.counts()["deliveries"], rt.ledger.position(OUTBOX_TRACKING)
    assert recorded > 0 and position == 4

    # A second relay read the position before the first recorded: the same page, read longer.
    late = relay(rt, StalePosition(rt.ledger, 0))
    assert late.run_once() > 4
    # One that starts inside the first relay's page (relays never do; the deliveries' index refuses it).
    inside = relay(rt, StalePosition(rt.ledger, 1))
    assert inside.run_once() > 4
    for r in (late, inside):
        r.producer.close()
        assert r.stats == {"inbox": 0, "receipts": 0, "rejected_receipts": 0, "undeliverable": 0, "quarantined": 0}
    assert rt.ledger.counts()["deliveries"] == recorded and rt.ledger.position(OUTBOX_TRACKING) == position
    assert topic_count(rt, "DeliveryPage.Recorded") == 1

    # The first relay goes on: every delivery recorded exactly once.
    while first.run_once():
        pass
    first.producer.close()
    ids = indexed(rt)
    assert len(ids) == len(set(ids)) == rt.ledger.counts()["deliveries"] == 8
