"""The wire format is standard Avro: what one library writes, another reads, byte for byte.

The project's codec (fastavro) against an independent client (Apache ``avro`` with the
specification's canonical form and fingerprint, ``tests/outside/client.py``), and the
same bytes carried by confluent-kafka (librdkafka), the client an outside agency is
likely to use, through the embedded broker.
"""

from __future__ import annotations

import json
from datetime import date

import avro.schema
import pytest
from fastavro.schema import to_parsing_canonical_form
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from schemas.codec import AvroCodec
from schemas.registry import SCHEMA_ROOT, default_registry
from tests.outside import client
from tests.schemas.examples import PAYLOADS, envelope

VERSIONS = default_registry().all_versions()
CONTRACTS = client.Contracts(SCHEMA_ROOT)
CODEC = AvroCodec()


def _uses_logical_type(raw) -> bool:
    return '"logicalType"' in json.dumps(raw)


def _envelope_examples() -> dict[str, dict]:
    request = envelope("dk.xledger.payload.ReleaseNotice", CODEC)
    request["subject"]["release_date"] = date(2026, 12, 11)
    body = CODEC.encode("dk.xledger.ExchangeRequest", request)
    return {
        "dk.xledger.ExchangeRequest": request,
        "dk.xledger.SignedMessage": {"signer": "kommune:326", "key_id": "k1", "signature": bytes(range(64)), "body": body},
        "dk.xledger.DecisionReceipt": {
            "receipt_id": "r", "exchange_id": "e", "message_id": "m", "recipient": "kommune:326", "outcome": "DENY",
            "rule": "C1", "via": None, "reason": "DENY_SUBJECT_OUT_OF_SCOPE", "citation": "rpl § 115",
            "warnings": ["C6"], "policy_version": "sha256:00", "request_digest": "sha256:11", "detail": None,
        },
        "dk.xledger.DeliveredExchange": {
            "delivery_id": "d", "exchange_id": "e", "message_id": "m", "sender": {"org": "a", "role": "POLICE"},
            "recipient": "kommune:326", "context": "KSP", "cooperation_id": None, "purpose": "RELEASE_PLANNING",
            "occurred_at": "2026-03-20T10:00:00+01:00", "rule": "P5", "via": None, "citation": "rpl",
            "warnings": [], "policy_version": "sha256:00", "subject_pseudonym": "ab" * 32,
            "payload_type": "dk.xledger.payload.CaseNote",
            "payload": CODEC.encode("dk.xledger.payload.CaseNote", PAYLOADS["dk.xledger.payload.CaseNote"]),
        },
    }


EXAMPLES = {**PAYLOADS, **_envelope_examples()}


def test_every_schema_has_an_example():
    assert set(EXAMPLES) == set(default_registry().names())


@pytest.mark.parametrize("v", VERSIONS, ids=lambda v: f"{v.name}-v{v.version}")
def test_canonical_form_and_fingerprint_agree_with_the_specification(v):
    assert client.canonical_form(v.raw) == to_parsing_canonical_form(v.raw)
    assert client.fingerprint(v.raw) == v.fingerprint
    assert CONTRACTS.version(v.name, v.version).fingerprint == v.fingerprint


@pytest.mark.parametrize("v", VERSIONS, ids=lambda v: f"{v.name}-v{v.version}")
def test_apache_avro_fingerprint_is_wrong_exactly_where_a_logical_type_is_used(v):
    """The pitfall docs/integration.md warns about: avro 1.12 keeps {"type": "int"} for a date."""
    apache = avro.schema.parse(json.dumps(v.raw)).fingerprint("CRC-64-AVRO")
    if _uses_logical_type(v.raw):
        assert apache != v.fingerprint
    else:
        assert apache == v.fingerprint


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fastavro_bytes_are_apache_avro_bytes(name):
    record = EXAMPLES[name]
    ours = CODEC.encode(name, record)
    theirs = CONTRACTS.encode(name, record)
    assert ours == theirs
    writer, decoded = CONTRACTS.decode(ours)
    assert (writer.name, decoded) == (name, CODEC.decode(ours).record)
    assert CODEC.decode(theirs).record == decoded


def test_an_old_writer_version_is_read_into_the_newest_by_both_libraries():
    name = "dk.xledger.payload.ReleaseNotice"
    old = {k: v for k, v in PAYLOADS[name].items() if k != "municipality_contact"}
    for data in (CODEC.encode(name, old, version=1), CONTRACTS.encode(name, old, version=1)):
        assert CODEC.decode(data).record == CONTRACTS.decode(data)[1] == {**old, "municipality_contact": None}


def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def test_bytes_cross_libraries_over_confluent_kafka(broker):
    """fastavro and Apache avro bytes, sent by confluent-kafka, read back by confluent-kafka and
    decoded by the other library."""
    topic = "cross.library"
    _create(broker.bootstrap, topic, 1)
    producer = client.producer(broker.bootstrap)
    sent = []
    for name in sorted(EXAMPLES):
        for writer, encode in (("fastavro", CODEC.encode), ("apache", CONTRACTS.encode)):
            client.publish(producer, topic, name.encode(), encode(name, EXAMPLES[name]), [("x-writer", writer.encode())])
            sent.append((name, writer))
    producer.close()
    reader = client.Reader(broker.bootstrap, [topic])
    try:
        records = reader.read_until(lambda rs: len(rs) >= len(sent))
    finally:
        reader.close()
    assert [(r.key.decode(), r.headers["x-writer"].decode()) for r in records] == sent
    for r in records:
        name = r.key.decode()
        decoded = CONTRACTS.decode(r.value)[1] if r.headers["x-writer"] == b"fastavro" else CODEC.decode(r.value).record
        assert decoded == EXAMPLES[name]


def test_librdkafka_murmur2_random_puts_keys_where_the_java_partitioner_does(broker):
    """kafka-python's default is Java's murmur2; librdkafka must be told (its default is CRC32)."""
    topic = "partitioner.check"
    _create(broker.bootstrap, topic, 12)
    keys = [f"key-{i}".encode() for i in range(40)]
    java = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        java_parts = [java.send(topic, key=k, value=b"j").get(timeout=30).partition for k in keys]
    finally:
        java.close()
    murmur = client.producer(broker.bootstrap)
    try:
        assert [client.publish(murmur, topic, k, b"m")[0] for k in keys] == java_parts
    finally:
        murmur.close()
    from confluent_kafka import Producer

    default = Producer({"bootstrap.servers": broker.bootstrap})  # partitioner=consistent_random
    try:
        assert [client.publish(default, topic, k, b"d")[0] for k in keys] != java_parts
    finally:
        default.close()
