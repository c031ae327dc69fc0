"""An outside agency's client, written from docs/integration.md and the .avsc files alone.

It imports nothing of exchange-ledger: Apache ``avro`` encodes and decodes, the
single-object fingerprint is computed here from the Avro specification (Parsing
Canonical Form, then CRC-64-AVRO, little-endian), ``cryptography`` signs with
Ed25519, and ``confluent-kafka`` talks to the broker. ``test_independence`` keeps
it that way. The project's own codec (fastavro) is what it is checked against.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import avro.io
import avro.schema
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MARKER = b"\xc3\x01"
DOMAIN = b"xledger-sig-v1\x00"

# --- Avro specification: Parsing Canonical Form and CRC-64-AVRO ---------------------------------

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_KEEP = ("name", "type", "fields", "symbols", "items", "values", "size")  # [STRIP] and [ORDER]


def canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of a schema given as parsed JSON (Avro specification 1.12)."""
    return _canonical(schema, namespace="", seen=set())


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _canonical(s: Any, namespace: str, seen: set[str]) -> str:
    if isinstance(s, str):
        return json.dumps(s if s in PRIMITIVES else _fullname(s, namespace), ensure_ascii=False)
    if isinstance(s, list):
        return "[" + ",".join(_canonical(b, namespace, seen) for b in s) + "]"
    kind = s["type"]
    if kind in PRIMITIVES:  # [PRIMITIVES]: {"type": "int", "logicalType": "date"} is "int"
        return json.dumps(kind)
    if kind in ("record", "error", "enum", "fixed"):
        name = _fullname(s["name"], s.get("namespace", namespace))
        if name in seen:
            return json.dumps(name)
        seen.add(name)
        namespace = name.rpartition(".")[0]  # [FULLNAMES]: nested names inherit the enclosing namespace
        parts = [f'"name":{json.dumps(name, ensure_ascii=False)}', f'"type":{json.dumps("record" if kind == "error" else kind)}']
        if kind in ("record", "error"):
            fields = ",".join(
                f'{{"name":{json.dumps(f["name"], ensure_ascii=False)},"type":{_canonical(f["type"], namespace, seen)}}}'
                for f in s["fields"]
            )
            parts.append(f'"fields":[{fields}]')
        elif kind == "enum":
            parts.append('"symbols":' + json.dumps(s["symbols"], ensure_ascii=False, separators=(",", ":")))
        else:
            parts.append(f'"size":{int(s["size"])}')
        return "{" + ",".join(parts) + "}"
    if kind == "array":
        return f'{{"type":"array","items":{_canonical(s["items"], namespace, seen)}}}'
    if kind == "map":
        return f'{{"type":"map","values":{_canonical(s["values"], namespace, seen)}}}'
    return _canonical(kind, namespace, seen)  # {"type": "SomeNamedType"}


_EMPTY = 0xC15D213AA4D7A795


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc_table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint(schema: Any) -> bytes:
    """The 8 bytes after C3 01: CRC-64-AVRO of the canonical form, least significant byte first."""
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")


# --- The contracts: schemas/<folder>/v<N>.avsc -------------------------------------------------


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    raw: dict[str, Any]
    schema: avro.schema.Schema
    fingerprint: bytes


class Contracts:
    """Every schema version of the repository's ``schemas/`` folder, found by name or fingerprint."""

    def __init__(self, root: Path):
        self.by_fingerprint: dict[bytes, Contract] = {}
        self.by_name: dict[str, list[Contract]] = {}
        for path in sorted(root.glob("*/v*.avsc")):
            raw = json.loads(path.read_text(encoding="utf-8"))
            name = _fullname(raw["name"], raw.get("namespace", ""))
            c = Contract(name, int(path.stem[1:]), raw, avro.schema.parse(json.dumps(raw)), fingerprint(raw))
            self.by_fingerprint[c.fingerprint] = c
            self.by_name.setdefault(name, []).append(c)
        for versions in self.by_name.values():
            versions.sort(key=lambda c: c.version)

    def latest(self, name: str) -> Contract:
        return self.by_name[name][-1]

    def version(self, name: str, version: int | None) -> Contract:
        if version is None:
            return self.latest(name)
        return next(c for c in self.by_name[name] if c.version == version)

    def encode(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        c = self.version(name, version)
        buf = io.BytesIO()
        buf.write(MARKER + c.fingerprint)
        avro.io.DatumWriter(c.schema).write(record, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def decode(self, data: bytes) -> tuple[Contract, dict[str, Any]]:
        """Reads with the writer's schema (found by fingerprint) into the newest version of the record."""
        if data[:2] != MARKER:
            raise ValueError(f"not single-object encoded: starts {data[:2].hex()}")
        writer = self.by_fingerprint[data[2:10]]
        reader = self.latest(writer.name)
        buf = io.BytesIO(data[10:])
        record = avro.io.DatumReader(writer.schema, reader.schema).read(avro.io.BinaryDecoder(buf))
        if buf.tell() != len(data) - 10:
            raise ValueError("trailing bytes")
        return writer, record


# --- Vector JSON: bytes as hex, dates as YYYY-MM-DD (schemas/vectors/README.md) ---------------


def from_json(schema: avro.schema.Schema, value: Any) -> Any:
    """A record as the vector files write it, turned into what Apache avro writes."""
    t = schema.type
    if t == "union":
        if value is None:
            return None
        branch = next(b for b in schema.schemas if b.type != "null")
        return from_json(branch, value)
    if t == "record":
        return {f.name: from_json(f.type, value[f.name]) for f in schema.fields if f.name in value}
    if t == "array":
        return [from_json(schema.items, v) for v in value]
    if t == "bytes":
        return bytes.fromhex(value)
    if t == "int" and getattr(schema, "logical_type", None) == "date":
        return dt.date.fromisoformat(value)
    return value


def to_json(value: Any) -> Any:
    """What Apache avro read, in the vector files' JSON conventions."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# --- Signing -------------------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, request_bytes: bytes) -> bytes:
    return key.sign(DOMAIN + request_bytes)


# --- Kafka ---------------------------------------------------------------------------------------


def producer(bootstrap: str) -> Producer:
    # murmur2_random: the same partition for a key as the Java client (and the gate's own clients).
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                     "enable.idempotence": True, "acks": "all"})


def publish(p: Producer, topic: str, key: bytes | None, value: bytes,
            headers: Iterable[tuple[str, bytes]] = ()) -> tuple[int, int]:
    """Produces one record and waits for the broker; returns (partition, offset)."""
    result: list[Any] = []
    p.produce(topic, key=key, value=value, headers=list(headers),
              on_delivery=lambda err, msg: result.append((err, msg)))
    p.flush(30)
    if not result:
        raise TimeoutError(f"no delivery report for {topic}")
    err, msg = result[0]
    if err is not None:
        raise KafkaException(err)
    return msg.partition(), msg.offset()


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class Reader:
    """Reads whole topics from their first offset, outside any consumer group."""

    def __init__(self, bootstrap: str, topics: Iterable[str]):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "outside-agency",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        parts = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            parts += [TopicPartition(topic, p, 0) for p in sorted(meta.partitions)]
        self.consumer.assign(parts)
        self.records: list[Record] = []

    def read_until(self, done, timeout: float = 60.0) -> list[Record]:
        """Polls until ``done(records)`` holds, then returns every record read so far."""
        deadline = time.monotonic() + timeout
        while not done(self.records) and time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            self.records.append(Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value() or b"",
                                       dict(msg.headers() or [])))
        return self.records

    def close(self) -> None:
        self.consumer.close()
