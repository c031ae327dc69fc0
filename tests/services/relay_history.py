"""Exchanges for the relay's tests: published by KSP on the real broker and decided by a real gate.

Shared by tests/services/test_relay_pages.py and tests/services/test_delivery_pages.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.demo import KSP_SENDER, release_notice
from tests.harness import running, wait_for

NOW = datetime.now(timezone.utc)
CPRS = ["1203911234", "0508882345", "2211901111", "0101801234", "1512851234"]


def decided(rt) -> list[tuple[Any, bool]]:
    """Five exchanges, three lawful (inbox + receipt) and two denied (receipt): eight deliveries.
    Returns (message id, lawful) of each, once the gate has recorded them all."""
    publisher = rt.dev_publisher(*KSP_SENDER)
    sent = []
    for i, cpr in enumerate(CPRS):
        lawful = i % 2 == 0
        req = release_notice(NOW.date(), cpr=cpr, name=f"Test Person {i}", release_in_days=20 if lawful else 900, age=30)
        sent.append((publisher.publish(occurred_at=NOW, **req).message_id, lawful))
    publisher.producer.close()
    with running(rt.gate_worker()):
        assert wait_for(lambda: rt.ledger.max_notification_id() >= 2 * len(CPRS))
    return sent
