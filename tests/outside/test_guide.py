"""docs/integration.md is enough: its code, run as written, reproduces the vectors and talks to the broker,
and its tables name every reason and outcome the code can produce. (That its byte-by-byte example is
current is checked in tests/schemas/test_vectors.py.)"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.outside import client

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "integration.md"
TEXT = GUIDE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
VECTORS = REPO / "schemas" / "vectors"
DOCS = [json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json")) if p.name != "test-keys.json"]
REQUESTS = {v["name"]: v for d in DOCS for v in d["vectors"] if "message" in v}
OUTPUTS = {v["name"]: v for d in DOCS for v in d["vectors"] if "message" not in v and "record" in v}
SEEDS = json.loads((VECTORS / "test-keys.json").read_text())["private_seeds_hex"]


@pytest.fixture(scope="module")
def guide() -> dict:
    """The guide's Python blocks, run in order in one namespace, as a reader would paste them."""
    namespace: dict = {"__name__": "guide"}
    exec(compile("\n".join(BLOCKS), str(GUIDE), "exec"), namespace)
    return namespace


def test_the_guides_code_uses_no_project_code():
    tree = ast.parse("\n".join(BLOCKS))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] in {"schemas", "services", "ledger", "policies", "tests"}}


def test_the_guides_fingerprint_is_every_schemas(guide):
    import yaml

    doc = yaml.safe_load((REPO / "schemas" / "asyncapi.yaml").read_text())
    for key, entry in doc["components"]["schemas"].items():
        assert guide["fingerprint"](entry["schema"]).hex() == entry["x-xledger-fingerprint"], key


def _date_fields(layer: dict, record: dict, guide) -> dict:
    """The vector JSON's conventions (bytes as hex, dates as text), undone with the schema."""
    schemas = guide["Schemas"](REPO / "schemas")
    parsed = schemas.newest[layer["schema"]][1]
    import avro.schema
    import datetime as dt

    def convert(schema, value):
        if isinstance(schema, avro.schema.UnionSchema):
            return None if value is None else convert(next(s for s in schema.schemas if s.type != "null"), value)
        if schema.type == "record":
            return {f.name: convert(f.type, value[f.name]) for f in schema.fields}
        if schema.type == "array":
            return [convert(schema.items, v) for v in value]
        if schema.type == "bytes":
            return bytes.fromhex(value)
        if getattr(schema, "logical_type", None) == "date":
            return dt.date.fromisoformat(value)
        return value

    return convert(parsed, record)


NEWEST = sorted(n for n, v in REQUESTS.items() if v["built_by_the_rules"] and n != "release_notice.v1_allowed")


@pytest.mark.parametrize("name", NEWEST)
def test_the_guides_code_reproduces_the_vector(guide, name):
    v = REQUESTS[name]
    schemas = guide["Schemas"](REPO / "schemas")
    payload = schemas.write(v["payload"]["schema"], _date_fields(v["payload"], v["payload"]["record"], guide))
    request = {**_date_fields(v["request"], v["request"]["record"], guide), "payload": payload}
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEEDS[v["signing_key"]["signer"]][v["signing_key"]["key_id"]]))
    message = guide["signed_message"](schemas, v["signing_key"]["signer"], v["signing_key"]["key_id"], key, request)
    assert message.hex() == v["message"]["hex"]


def test_the_guides_ordering_key_is_the_vectors_kafka_key(guide):
    keyed = [v for v in REQUESTS.values() if v["built_by_the_rules"] and "cpr" in v["payload"]["record"]
             and v["name"] != "rejected.invalid_cpr"]
    assert len(keyed) > 10
    for v in keyed:
        assert guide["ordering_key"](v["payload"]["record"]["cpr"]) == v["kafka"]["key"], v["name"]
    assert REQUESTS["aggregate_statistics.allowed"]["kafka"]["key"] is None
    assert guide["ordering_key"]("1203911234") == guide["ordering_key"]("120391-1234") == "a814"  # as the guide says


@pytest.mark.parametrize("name", sorted(n for n in OUTPUTS if ".delivery." in n))
def test_the_guides_reader_opens_every_delivery(guide, name):
    v = OUTPUTS[name]
    schemas = guide["Schemas"](REPO / "schemas")
    delivery, payload_type, payload = guide["read_delivery"](schemas, bytes.fromhex(v["hex"]))
    assert (delivery["delivery_id"], payload_type) == (v["record"]["delivery_id"], v["record"]["payload_type"])
    written = REQUESTS[v["for"]]["payload"]["record"]
    as_json = client.to_json(payload)
    assert {k: as_json[k] for k in written} == written  # a newer reader adds only defaults


def test_the_guides_kafka_code_against_the_broker(guide, broker):
    """make_producer + publish_request put a vector on murmur2's partition; apply_new skips a re-sent id."""
    from kafka.partitioner.default import murmur2
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("exchange.requests", num_partitions=4, replication_factor=1),
                                  NewTopic("inbox.kommune.217", num_partitions=1, replication_factor=1)]).values():
        f.result(30)
    v = REQUESTS["release_notice.allowed"]
    producer = guide["make_producer"](broker.bootstrap)
    guide["publish_request"](producer, v["kafka"]["key"], bytes.fromhex(v["message"]["hex"]))
    delivery = OUTPUTS["release_notice.allowed.delivery.kommune.217"]
    headers = [("x-delivery-id", delivery["kafka"]["headers"]["x-delivery-id"].encode())]
    for _ in range(2):  # the relay's re-send after a crash: the same record twice
        producer.produce("inbox.kommune.217", key=delivery["kafka"]["key"].encode(), value=bytes.fromhex(delivery["hex"]),
                         headers=headers)
    producer.close()

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "guide", "enable.auto.commit": False})
    try:
        expected_partition = (murmur2(v["kafka"]["key"].encode()) & 0x7FFFFFFF) % 4
        consumer.assign([TopicPartition("exchange.requests", expected_partition, 0)])
        msg = consumer.poll(10)
        assert msg is not None and msg.value().hex() == v["message"]["hex"]
        consumer.assign([TopicPartition("inbox.kommune.217", 0, 0)])
        applied_values, applied = [], set()
        while guide["apply_new"](consumer, applied, applied_values.append) or not applied_values:
            pass
        assert len(applied_values) == 1 and applied == {delivery["record"]["delivery_id"]}
    finally:
        consumer.close()


def _table_codes(heading: str) -> set[str]:
    section = TEXT.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))


def test_every_dead_letter_reason_of_the_code_is_in_the_table():
    sources = [(REPO / "schemas" / "codec.py").read_text(), (REPO / "services" / "gate.py").read_text()]
    in_code = {m for s in sources for m in re.findall(r'(?:Rejected|CodecError|_rejected)\(\s*(?:\w+,\s*)?"([A-Z_]+)"', s)}
    in_code |= {m for s in sources for m in re.findall(r'reason="([A-Z_]+)"', s)}
    # The key-status reasons: services/keyset.py's REJECTION table.
    keyset = (REPO / "services" / "keyset.py").read_text()
    in_code |= set(re.findall(r'"(KEY_[A-Z_]+)"', keyset.split("REJECTION =", 1)[1].split("\n", 1)[0]))
    in_code -= {"UNKNOWN_SCHEMA"}  # an encoding error of the project's own writer, never on the wire
    assert {"BAD_SIGNATURE", "DUPLICATE_MESSAGE", "OVERSIZED", "INTERNAL_ERROR", "UNKNOWN_KEY",
            "KEY_REVOKED", "KEY_EXPIRED", "KEY_NOT_YET_VALID"} <= in_code  # the scan works
    assert in_code <= _table_codes("### Every dead-letter reason")


def test_every_receipt_outcome_is_in_the_table():
    schema = json.loads((REPO / "schemas" / "decision_receipt" / "v1.avsc").read_text())
    outcome = next(f for f in schema["fields"] if f["name"] == "outcome")
    assert set(outcome["type"]["symbols"]) == _table_codes("### Every outcome")


def test_the_guides_client_gets_its_receipts_from_the_real_gate(guide, settings, tmp_path):
    """The guide's code end to end: a registered key, an allowed, a denied and a rejected release notice,
    the receipts read and applied once each, and the delivery opened in the recipient's inbox."""
    import dataclasses
    import datetime as dt

    from services.keyset import KeySetFile
    from services.runtime import Runtime
    from tests.harness import running

    key, public = guide["new_key_pair"]()
    keyset = KeySetFile(tmp_path / "keyset.yaml")
    keyset.add("kriminalforsorgen:horserod", "horserod-guide", public, valid_from=dt.date.today())
    runtime = Runtime(dataclasses.replace(settings, keyset=str(keyset.path)))
    runtime.create_topics(["kriminalforsorgen:horserod", "kommune:217"])
    schemas = guide["Schemas"](REPO / "schemas")
    producer = guide["make_producer"](settings.bootstrap_servers)
    today = dt.date.today()
    facts = dict(full_name="Testperson Delta", age=35, recipient={"org": "kommune:217", "role": "MUNI_SOCIAL_ADULT"})
    allowed = guide["send_release_notice"](producer, schemas, key, "horserod-guide", cpr="1203911234",
                                           release=today + dt.timedelta(days=21), **facts)
    denied = guide["send_release_notice"](producer, schemas, key, "horserod-guide", cpr="0508882345",
                                          release=today + dt.timedelta(days=4 * 365), **facts)
    rejected = guide["send_release_notice"](producer, schemas, key, "horserod-guide", cpr="3113911234",
                                            release=today + dt.timedelta(days=21), **facts)  # not a real date
    producer.close()

    receipts, deliveries, applied = [], [], set()
    # The embedded broker forms a group in about half the session timeout (45 s by default).
    fast = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 50}
    consumers = [guide["make_consumer"](settings.bootstrap_servers, "guide-sender", "receipts.kriminalforsorgen.horserod",
                                        **fast),
                 guide["make_consumer"](settings.bootstrap_servers, "guide-recipient", "inbox.kommune.217", **fast)]
    try:
        with running(runtime.gate_worker("gate-1"), runtime.relay()):
            deadline = dt.datetime.now() + dt.timedelta(seconds=60)
            while (len(receipts) < 3 or not deliveries) and dt.datetime.now() < deadline:
                guide["apply_new"](consumers[0], applied, lambda v: receipts.append(guide["read_receipt"](schemas, v)))
                guide["apply_new"](consumers[1], applied, lambda v: deliveries.append(guide["read_delivery"](schemas, v)))
    finally:
        for c in consumers:
            c.close()
        runtime.close()
    outcomes = {r["message_id"]: (r["outcome"], r["rule"] if r["outcome"] == "ALLOW" else r["reason"]) for r in receipts}
    assert outcomes == {allowed: ("ALLOW", "P5"), denied: ("DENY", "DENY_SUBJECT_OUT_OF_SCOPE"),
                        rejected: ("REJECTED", "INVALID_RECORD")}
    [(delivery, payload_type, payload)] = deliveries
    assert (delivery["message_id"], payload_type, payload["full_name"]) == (
        allowed, "dk.xledger.payload.ReleaseNotice", "Testperson Delta")
