"""The relay hands each page it delivered to the read models with the events it decoded; the live
read models then equal a replay from the log, and a projection that fails never stops a delivery
(real broker, both backends)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.readmodels import ReadModels, compare, replay_prefix
from schemas.codec import AvroCodec
from services import topics
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)
CPRS = ["1203911234", "0508882345", "2211901111", "0101801234", "1512851234", "0303031234"]


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings) as runtime:
        yield runtime


def _decide_all(rt) -> list[str]:
    publisher = rt.dev_publisher(*KSP_SENDER)
    sent = []
    for i, cpr in enumerate(CPRS):
        req = release_notice(NOW.date(), cpr=cpr, name=f"Test Person {i}", release_in_days=20 if i % 2 else 900, age=30)
        sent.append(publisher.publish(occurred_at=NOW, **req).message_id)
    publisher.producer.close()
    with running(rt.gate_worker()):
        assert wait_for(lambda: sum(n.topic.endswith("Exchange.RequestDecided")
                                    for n in rt.ledger.all_notifications()) == len(CPRS))
    return sent


def test_pages_are_projected_from_the_relays_decoded_events(rt):
    _decide_all(rt)
    relay = rt.relay()
    relay.page_size = 2  # several pages
    relay.maintain = None  # only the hand-over projects here
    handed: list[tuple[int, int, int]] = []
    project = relay.project

    def watching(page, events):
        handed.append((page[0].id, page[-1].id, len(events)))
        return project(page, events)

    relay.project = watching
    while relay.run_once():
        pass
    relay.producer.close()
    assert len(handed) >= 3 and all(decoded > 0 for _, _, decoded in handed[:3])
    live = rt.read_models
    assert live.position() == rt.ledger.max_notification_id()
    replayed = ReadModels(rt.ledger, prefix=replay_prefix("handover"), tracked=False)
    replayed.catch_up()
    diffs = compare(live, replayed)
    assert all(d.equal for d in diffs), [d for d in diffs if not d.equal]
    assert live.count("exchanges") == len(CPRS)


def test_a_page_that_is_not_next_is_left_to_catch_up(rt):
    _decide_all(rt)
    page = rt.ledger.notifications(3, 2)  # the read models stand at 0: this page is not the next one
    assert rt.read_models.project_next(page, {}) is False
    assert rt.read_models.position() == 0
    assert rt.read_models.project_next(rt.ledger.notifications(1, 2), {}) is True  # decodes what it was not given
    assert rt.read_models.position() == 2
    assert rt.read_models.project_next(rt.ledger.notifications(1, 2), {}) is False  # already projected


def test_a_failing_projection_does_not_stop_deliveries(rt, broker):
    sent = _decide_all(rt)
    relay = rt.relay()

    def broken(page, events):
        raise RuntimeError("read models broken")

    relay.project = broken
    with running(relay):
        assert wait_for(lambda: relay.stats["receipts"] == len(sent))
        # the relay's maintain step (idle) catches the read models up instead
        assert wait_for(lambda: rt.read_models.position() == rt.ledger.max_notification_id())
    receipts = read_topic(broker.bootstrap, topics.receipts(KSP_SENDER[0]), expect=len(sent))
    assert sorted(AvroCodec().decode(r.value).record["message_id"] for r in receipts) == sorted(sent)
    assert relay.stats["inbox"] == len(sent) // 2
    assert len(read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=len(sent) // 2)) == len(sent) // 2
    assert rt.read_models.count("exchanges") == len(CPRS)
