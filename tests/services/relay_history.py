"""Exchanges for the relay's tests: published by KSP on the real broker and decided by a real gate.

Shared by tests/services/test_relay_pages.py and tests/services/test_delivery_pages.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.demo import KSP_SENDER, release_notice
from tests.harness import running, wait_for

NOW = datetime.now(timezone.utc)
CPRS = ["1203911234", "0508882345", "2211901111", "0101801234", "1512851234"]


def decided(rt, *, legacy: bool = False) -> list[tuple[Any, bool]]:
    """Five exchanges, three lawful (inbox + receipt) and two denied (receipt): eight deliveries.
    Returns (message id, lawful) of each, once the gate has recorded them all.

    ``legacy``: recorded as a ledger written before ``Exchange.RequestDecided`` holds them, a
    ``Requested`` and a ``Decided`` event each: decided by the gate's own pipeline, then recorded
    through ``Exchange(...)`` and ``.decide(...)`` with the same content (no Kafka consumer)."""
    publisher = rt.dev_publisher(*KSP_SENDER)
    sent, requests = [], []
    for i, cpr in enumerate(CPRS):
        lawful = i % 2 == 0
        req = release_notice(NOW.date(), cpr=cpr, name=f"Test Person {i}", release_in_days=20 if lawful else 900, age=30)
        requests.append(req)
        if not legacy:
            sent.append((publisher.publish(occurred_at=NOW, **req).message_id, lawful))
    publisher.producer.close()
    if legacy:
        from ledger.application import Tracking
        from ledger.domain import Exchange
        from services.gate import Inbound

        pipeline, old = rt.pipeline(), []
        for i, (req, lawful) in enumerate(zip(requests, (i % 2 == 0 for i in range(len(CPRS))))):
            envelope = publisher.envelope(occurred_at=NOW, **req)
            ex = pipeline.process(Inbound("exchange.requests", 0, i, publisher.signed_bytes(envelope)))
            two = Exchange(sender=ex.sender, message_id=ex.message_id, source=ex.source, summary=ex.summary,
                           subject=ex.subject, message_digest=ex.message_digest, sealed_message=ex.sealed_message)
            two.decide(ex.decision)
            old.append(two)
            sent.append((envelope["message_id"], lawful))
        rt.ledger.record(old, Tracking("kafka:exchange.requests:0", len(old) - 1))
        assert [n.topic.rsplit(":", 1)[1] for n in rt.ledger.all_notifications()].count("Exchange.Decided") == len(CPRS)
        return sent
    with running(rt.gate_worker()):
        assert wait_for(lambda: sum(n.topic.endswith("Exchange.RequestDecided")
                                    for n in rt.ledger.all_notifications()) == len(CPRS))
    return sent
