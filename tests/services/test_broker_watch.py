"""The gate tells an idle broker from an unreachable one by its live connections (real broker)."""

from __future__ import annotations

from kafka import KafkaConsumer

from services.gate import _connected
from tests.harness import wait_for


def test_connected_while_the_broker_runs_and_not_after_it_stops(broker):
    broker.create_topics(["watched"], partitions=1)
    consumer = KafkaConsumer("watched", bootstrap_servers=broker.bootstrap, group_id="watch",
                             session_timeout_ms=2000, heartbeat_interval_ms=500, enable_auto_commit=False)
    try:
        assert wait_for(lambda: consumer.poll(100) == {} and _connected(consumer), timeout=15)
        # Idle, nothing to read, still connected: this is what used to be reported as unreachable.
        for _ in range(5):
            consumer.poll(100)
        assert _connected(consumer)
        broker.stop()
        assert wait_for(lambda: consumer.poll(100) == {} and not _connected(consumer), timeout=15)
    finally:
        consumer.close()
