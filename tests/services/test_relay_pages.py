"""The relay reads exchanges from the page's own events; a page of any size, and in a ledger written
before ``Exchange.RequestDecided`` a page boundary between an exchange's Requested and Decided
events, must not change what is delivered (real broker, both backends)."""

from __future__ import annotations

import pytest

from schemas.codec import AvroCodec
from services import topics
from services.delivery import DeliveryRelay
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER
from services.kafka import make_producer
from tests.harness import ksp_runtime, read_topic
from tests.services.relay_history import CPRS, decided


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings) as runtime:
        yield runtime


@pytest.mark.parametrize("page_size,legacy", [(1, False), (3, False), (1, True), (3, True)])
def test_small_pages_deliver_exactly_what_one_big_page_would(rt, broker, page_size, legacy):
    sent = decided(rt, legacy=legacy)
    relay = DeliveryRelay(rt.ledger, make_producer(rt.settings, client_id="relay-pages"), rt.sealer, rt.codec,
                          page_size=page_size)
    pages = 0
    while relay.run_once():
        pages += 1
    relay.producer.close()
    # Legacy, page_size=1: every Decided event had its Requested in an earlier page (read back from the store).
    assert pages >= (2 if legacy else 1) * len(CPRS) // page_size

    codec = AvroCodec()
    allowed = sorted(m for m, lawful in sent if lawful)
    inbox = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=len(allowed))
    assert sorted(codec.decode(r.value).record["message_id"] for r in inbox) == allowed
    receipts = read_topic(broker.bootstrap, topics.receipts(KSP_SENDER[0]), expect=len(sent))
    outcomes = {codec.decode(r.value).record["message_id"]: codec.decode(r.value).record["outcome"] for r in receipts}
    assert outcomes == {m: "ALLOW" if lawful else "DENY" for m, lawful in sent}
    assert relay.stats == {"inbox": len(allowed), "receipts": len(sent), "rejected_receipts": 0, "undeliverable": 0,
                           "quarantined": 0}
