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


def handles_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (Linux: /proc/PID/status SigCgt).

    Before that, in the first milliseconds of the interpreter's start-up, no program can
    handle a signal; from then on an xledger service exits 0 on SIGTERM."""
    import signal

    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except FileNotFoundError:
        pass
    return False


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
        empty_polls = 0
        while time.monotonic() < deadline:
            polled = [r for batch in consumer.poll(timeout_ms=300).values() for r in batch]
            out.extend(polled)
            empty_polls = 0 if polled else empty_polls + 1
            # Read to the end: stop only after the expected count and then quiet polls, so records
            # beyond the expected (duplicates, or what must not be there) are seen by the caller.
            if len(out) >= expect and empty_polls >= 3:
                break
        return out
    finally:
        consumer.close()


@contextmanager
def ksp_runtime(settings, request_partitions: int = 4):
    """A Runtime with the topics of the KSP pair the tests send between (Horserød → Kalundborg)."""
    from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER
    from services.runtime import Runtime

    runtime = Runtime(settings)
    runtime.create_topics([KSP_SENDER[0], KALUNDBORG_SOCIAL[0]], request_partitions=request_partitions)
    try:
        yield runtime
    finally:
        runtime.close()

