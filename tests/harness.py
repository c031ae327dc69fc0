"""Helpers for integration tests: run the real gate and relay in threads until a condition holds."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from kafka import KafkaConsumer, TopicPartition

from services.gate import GateWorker
from services.delivery import DeliveryRelay


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def running(*services: GateWorker | DeliveryRelay) -> Iterator[None]:
    threads = [threading.Thread(target=s.run, daemon=True) for s in services]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in services:
            s.stop()
        for t in threads:
            t.join(timeout=15)
        for s in services:
            if isinstance(s, GateWorker):
                s.consumer.close()
            s.producer.close()


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 10.0) -> list:
    """Every record of a single-partition topic from the beginning, waiting for at least ``expect``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, allow_auto_create_topics=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
            if len(out) >= expect and expect > 0:
                # keep reading briefly: more than expected is a failure the caller must see
                for batch in consumer.poll(timeout_ms=300).values():
                    out.extend(batch)
                break
        return out
    finally:
        consumer.close()
