"""Attacks on the gate, against `xledger gate run` in its own process, on the real broker and both ledgers.

Oversized (the issue's 1,048,400 random bytes from a default KafkaProducer, and 3 MB with a
5 kB key from a producer that allows it), truncated and garbage messages, an empty value and a
tombstone. After each one the gate is still running and decides the next good message; every
attack is exactly one recorded rejection and exactly one dead letter; nothing is recorded twice;
and `xledger verify` passes.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from datetime import datetime, timezone

import pytest
from kafka import KafkaProducer

from services import topics
from services.dead_letters import CUT_TO, KEY_CUT_TO
from services.demo import KSP_SENDER, release_notice
from tests.adversarial.processes import Service, xledger
from tests.harness import ksp_runtime, read_topic, wait_for

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings, request_partitions=1) as runtime:
        yield runtime


def attacks(good: bytes) -> list[tuple[str, bytes | None, bytes | None, dict]]:
    """(name, key, value, producer settings): what an attacker or a broken client sends."""
    return [
        ("oversized-1MiB", None, os.urandom(1_048_400), {}),  # the reproduction
        ("oversized-3MB", os.urandom(5000), os.urandom(3_000_000), {"max_request_size": 8_000_000}),
        ("truncated", b"k", good[:5], {}),
        ("cut-short", b"k", good[:-3], {}),
        ("garbage", b"k", b"\xc3\x01" + os.urandom(300), {}),
        ("not-avro", b"k", b"not an avro message at all", {}),
        ("empty", b"k", b"", {}),
        ("tombstone", b"k", None, {}),
    ]


def recorded(rt) -> tuple[Counter, dict[int, object]]:
    """Exchange.RequestDecided per exchange id, and the rejections by source offset."""
    requested, rejected = Counter(), {}
    for n in rt.ledger.all_notifications():
        if n.topic.endswith("Exchange.RequestDecided"):
            requested[n.originator_id] += 1
        elif n.topic.endswith("RejectedMessage.Rejected"):
            e = rt.ledger.mapper.to_domain_event(n)
            assert e.source["offset"] not in rejected, "a message recorded twice"
            rejected[e.source["offset"]] = e
    return requested, rejected


def test_no_message_stops_the_gate(rt, settings, broker):
    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person", release_in_days=21, age=34)
    sent: dict[int, tuple[str, bytes | None]] = {}  # offset -> (attack, original value)
    good_ids = []
    position = lambda: rt.ledger.position(f"kafka:{topics.REQUESTS}:0") or 0  # noqa: E731

    with Service(settings, "gate", "run") as gate:
        for name, key, value, producer_config in attacks(publisher.signed_bytes(publisher.envelope(
                occurred_at=NOW, **request))):
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **producer_config)
            meta = producer.send(topics.REQUESTS, key=key, value=value).get(timeout=30)
            producer.close()
            sent[meta.offset] = (name, value)
            good = publisher.publish(occurred_at=NOW, **request)
            good_ids.append(good.message_id)
            assert wait_for(lambda: position() > good.offset or not gate.alive, timeout=60), name
            assert gate.alive, f"the gate stopped after {name}: {gate.output()[-2000:]}"
        publisher.producer.close()
        assert gate.stop() == 0

    requested, rejected = recorded(rt)
    assert len(requested) == len(good_ids) and set(requested.values()) == {1}
    assert {offset: e.reason for offset, e in rejected.items()} == {
        offset: {"oversized-1MiB": "BAD_MARKER", "oversized-3MB": "OVERSIZED", "truncated": "TRUNCATED",
                 "cut-short": "MALFORMED", "garbage": "UNKNOWN_FINGERPRINT", "not-avro": "BAD_MARKER",
                 "empty": "TRUNCATED", "tombstone": "TRUNCATED"}[name]
        for offset, (name, _) in sent.items()}
    for offset, (name, value) in sent.items():
        original = value or b""
        assert rejected[offset].size == len(original)
        assert rejected[offset].message_digest == "sha256:" + hashlib.sha256(original).hexdigest()

    dead = read_topic(broker.bootstrap, topics.DEAD_LETTERS, expect=len(sent), timeout=30)
    by_offset = Counter(int(dict(d.headers)["x-source-offset"]) for d in dead)
    assert by_offset == Counter(sent.keys()), "exactly one dead letter per attack"
    for d in dead:
        headers = dict(d.headers)
        name, original = sent[int(headers["x-source-offset"])]
        original = original or b""
        assert headers["x-message-digest"].decode() == rejected[int(headers["x-source-offset"])].message_digest
        assert headers["x-original-size"] == str(len(original)).encode()
        if name.startswith("oversized"):
            assert headers["x-cut"] in (b"value", b"key,value")
            assert d.value == original[:CUT_TO] and (d.key is None or len(d.key) <= KEY_CUT_TO)
        else:
            assert "x-cut" not in headers and (d.value or b"") == original

    assert xledger(settings, "ledger", "integrate").returncode == 0
    verified = xledger(settings, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
