"""Runs every vector case through the real gate and relay and writes what they produced.

An embedded broker and a fresh SQLite ledger, the gate and relay of ``Runtime``, the
development keys in its key set: each case is published in order (the Kafka key and value an
agency would send), and every record the system writes back (receipts, inbox deliveries,
dead letters) is captured, byte for byte, into ``schemas/vectors/*.json``. A case whose
outcome differs from the expectation written in ``cases.py`` stops the generation.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from schemas.registry import SCHEMA_ROOT
from services import topics
from services.agency import assign_from_start
from services.broker import EmbeddedBroker
from services.config import Settings
from services.runtime import Runtime
from services.signing import DOMAIN
from services.kafka import make_consumer, make_producer
from services.vectors.build import OTHER_SIGNER, TAMPERS, Built, build, keyset_document, signing_key, write_keyset
from services.vectors.cases import CASES, OCCURRED_AT, VectorCase
from services.vectors.guide import GUIDE, refresh_file
from services.vectors.jsonform import to_json

VECTORS_DIR = SCHEMA_ROOT / "vectors"
GATE_CLOCK = datetime.fromisoformat(OCCURRED_AT).astimezone(timezone.utc)
REGENERATE = "xledger schemas vectors generate"
RECEIPTS_FILE, DELIVERIES_FILE, DEAD_LETTERS_FILE, KEYS_FILE = (
    "decision_receipt.json", "delivered_exchange.json", "dead_letter.json", "test-keys.json")


class VectorMismatch(RuntimeError):
    """The running system answered a case differently from what cases.py expects."""


def generate(output: Path = VECTORS_DIR, cases: list[VectorCase] = CASES, timeout: float = 60.0,
             guide: Path | None = GUIDE) -> list[Path]:
    """Writes the vector files into ``output`` and refreshes the worked example in ``guide``; returns the paths
    written."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        keyset = write_keyset(Path(tmp) / "keyset.yaml", keyset_orgs(cases))
        settings = Settings.development(ledger_url=f"sqlite:///{tmp}/vectors.sqlite", keyset=str(keyset))
        rt = Runtime(settings.with_embedded_broker(broker.bootstrap))
        try:
            built = [build(c, rt.codec) for c in cases]
            captured = _run(rt, built, timeout)
        finally:
            rt.close()
    documents = _documents(rt, built, captured)
    _check_expectations(built, documents)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in documents.items():
        path = output / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    if guide is not None:
        requests = {v["name"]: v for doc in documents.values() for v in doc.get("vectors", []) if "message" in v}
        if refresh_file(requests, rt.codec.registry, guide):
            written.append(guide)
    return written


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def orgs_of(cases: list[VectorCase]) -> list[str]:
    """Every authority the cases send as or to (each gets its topics)."""
    return sorted({c.sender[0] for c in cases} | {o for c in cases for o, _ in c.request["recipients"]} | {OTHER_SIGNER})


def keyset_orgs(cases: list[VectorCase]) -> list[str]:
    """The authorities whose development key is in the vectors' key set: all but the one that shows UNKNOWN_SIGNER."""
    without = {c.sender[0] for c in cases if c.tamper == "signer_without_keys"}
    return [org for org in orgs_of(cases) if org not in without]


# -- running the system ---------------------------------------------------------------------


def _run(rt: Runtime, built: list[Built], timeout: float) -> dict[str, Any]:
    orgs = orgs_of([b.case for b in built])
    created = rt.create_topics(orgs)
    producer = make_producer(rt.settings, client_id="vectors")
    positions: dict[tuple[int, int], str] = {}
    try:
        for b in built:  # one at a time, so that offsets and the gate's order are the same every run
            # A record without a key goes to a random partition; here to the first, so that the
            # position (which a REJECTED receipt's ids derive from) is the same on every run.
            meta = producer.send(topics.REQUESTS, key=b.key, value=b.value,
                                 partition=0 if b.key is None else None).get(timeout=30)
            positions[(meta.partition, meta.offset)] = b.case.name
    finally:
        producer.close()
    worker = rt.gate_worker("vectors-gate")
    # The gate checks keys on its own clock and names the time in a key's rejection: fixed to the
    # exchange time, so that the vectors are the same on every run.
    worker.pipeline.clock = lambda: GATE_CLOCK
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while sum(_recorded(rt).values()) < len(built):
            if time.monotonic() > deadline:
                raise VectorMismatch(f"the gate recorded {sum(_recorded(rt).values())} of {len(built)} cases "
                                     f"within {timeout} s")
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=15)
        worker.consumer.close()
        worker.producer.close()
    relay = rt.relay()
    try:
        while relay.run_once():
            pass
    finally:
        relay.producer.close()
    published = relay.stats["inbox"] + relay.stats["receipts"] + relay.stats.get("rejected_receipts", 0)
    expected = {"out": published, "dlq": worker.stats["rejected"]}
    outputs = [t for t in created if t.startswith(("inbox.", "receipts."))]
    return {"positions": positions, "out": _read(rt, outputs, expected["out"], timeout),
            "dlq": _read(rt, [topics.DEAD_LETTERS], expected["dlq"], timeout)}


def _recorded(rt: Runtime) -> dict[str, int]:
    counts = rt.ledger.counts()
    return {"requests": counts["requests"], "rejected": counts["rejected"]}


def _read(rt: Runtime, names: list[str], expect: int, timeout: float) -> list:
    records: list = []
    consumers: list[KafkaConsumer] = []
    try:
        for name in names:
            consumers.append(assign_from_start(make_consumer(rt.settings, None, client_id="vectors"), name))
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline and (len(records) < expect or quiet < 3):
            got = [r for c in consumers for batch in c.poll(timeout_ms=100).values() for r in batch]
            records += got
            quiet = 0 if got else quiet + 1
    finally:
        for c in consumers:
            c.close()
    if len(records) != expect:
        raise VectorMismatch(f"expected {expect} records on {len(names)} topics, read {len(records)}")
    return records


# -- the documents --------------------------------------------------------------------------


def _layer(rt: Runtime, layer) -> dict[str, Any]:
    version = next(v for v in rt.codec.registry.versions(layer.schema) if v.version == layer.version)
    return {"schema": layer.schema, "version": layer.version, "fingerprint": version.fingerprint.hex(),
            "record": None if layer.record is None else to_json(layer.record), "hex": layer.data.hex()}


def _slug(org: str) -> str:
    return org.replace(":", ".")


def _documents(rt: Runtime, built: list[Built], captured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    outputs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    receipts, deliveries, dead = [], [], []
    for rec in captured["out"]:
        decoded = rt.codec.decode(rec.value)
        r = decoded.record
        rejected = r.get("outcome") == "REJECTED"
        # A duplicate shares its message id with the original; only the original is decided.
        owners = [b.case.name for b in built if b.request.record is not None
                  and b.request.record["message_id"] == r["message_id"] and b.case.rejected == rejected]
        if len(owners) != 1:
            raise VectorMismatch(f"{rec.topic} record for message {r['message_id']} belongs to {owners or 'no case'}")
        owner = owners[0]
        kind = "receipt" if decoded.name == "dk.xledger.DecisionReceipt" else "delivery"
        vector = {
            # A REJECTED receipt answers the whole request: its recipient is empty.
            "name": f"{owner}.{kind}" + (f".{_slug(r['recipient'])}" if r["recipient"] else ""),
            "for": owner,
            "kafka": {"topic": rec.topic, "key": None if rec.key is None else rec.key.decode(),
                      "headers": {k: v.decode() for k, v in rec.headers}},
            "schema": decoded.name, "version": decoded.writer_version,
            "fingerprint": rec.value[2:10].hex(), "record": to_json(r), "hex": rec.value.hex(),
        }
        if rejected:
            # Derived from the topic, partition and offset the gate read the request from.
            vector["position_dependent"] = ["receipt_id", "exchange_id", "x-delivery-id"]
        (receipts if kind == "receipt" else deliveries).append(vector)
        outputs[owner].append(vector)
    for rec in captured["dlq"]:
        headers = {k: v.decode() for k, v in rec.headers}
        owner = captured["positions"][(int(headers["x-source-partition"]), int(headers["x-source-offset"]))]
        vector = {
            "name": f"{owner}.dead_letter", "for": owner,
            "kafka": {"topic": rec.topic, "key": None if rec.key is None else rec.key.decode(),
                      "headers": {k: v for k, v in headers.items() if not k.startswith("x-source-")}},
            "position_headers": sorted(k for k in headers if k.startswith("x-source-")),
            "hex": (rec.value or b"").hex(),
        }
        dead.append(vector)
        outputs[owner].append(vector)

    files: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in built:
        files[b.case.file or rt.codec.registry.latest(b.case.payload_type).folder].append(
            _request_vector(rt, b, outputs[b.case.name]))
    docs: dict[str, dict[str, Any]] = {}
    for file, vectors in files.items():
        docs[f"{file}.json"] = _doc(f"requests: {file}", "dk.xledger.SignedMessage on exchange.requests", vectors)
    docs[RECEIPTS_FILE] = _doc("receipts", "dk.xledger.DecisionReceipt on receipts.<sender>", _sorted(receipts))
    docs[DELIVERIES_FILE] = _doc("deliveries", "dk.xledger.DeliveredExchange on inbox.<recipient>", _sorted(deliveries))
    docs[DEAD_LETTERS_FILE] = _doc("dead letters", "the original value on exchange.requests.dlq", _sorted(dead))
    docs[KEYS_FILE] = _keys_doc([b.case for b in built])
    return docs


def _sorted(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(vectors, key=lambda v: v["name"])


def _doc(title: str, kind: str, vectors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"generated_by": REGENERATE, "title": title, "kind": kind, "vectors": vectors}


def _request_vector(rt: Runtime, b: Built, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    c = b.case
    signer, key_id, _ = signing_key(c)
    expected: dict[str, Any]
    if c.rejected:
        expected = {"gate": "REJECTED", "reason": c.expect, "rejected_receipt": c.rejected_receipt}
    else:
        expected = {"gate": "DECIDED", "decisions": [
            {"recipient": org, "outcome": outcome, ("rule" if outcome == "ALLOW" else "reason"): code}
            for org, (outcome, code) in c.expect.items()]}
    expected["records"] = sorted(o["name"] for o in outputs)
    vector = {
        "name": c.name,
        "description": c.description,
        **({"what_is_wrong": TAMPERS[c.tamper][0]} if c.tamper else {}),
        "built_by_the_rules": TAMPERS[c.tamper][1] if c.tamper else True,
        **({"send_after": c.after} if c.after else {}),
        "sender": {"org": c.sender[0], "role": c.sender[1]},
        "signing_key": {"signer": signer, "key_id": key_id},
        "payload": _layer(rt, b.payload),
        "request": _layer(rt, b.request),
        "signature": {"domain_separator_hex": DOMAIN.hex(), "signed_bytes": "domain_separator_hex + request.hex",
                      "hex": b.signature.hex()},
        "message": _layer(rt, b.message),
        "kafka": {"topic": topics.REQUESTS, "key": None if b.key is None else b.key.decode(), "value": "message.hex"},
        "expected": expected,
    }
    return vector


def _keys_doc(cases: list[VectorCase]) -> dict[str, Any]:
    """The keys that signed the vectors, private halves included, and the key set the gate checked them with."""
    private = {}
    for c in cases:
        signer, key_id, key = signing_key(c)
        private.setdefault(signer, {})[key_id] = key.private_bytes_raw().hex()
    return {
        "generated_by": REGENERATE,
        "title": "the public development keys that signed the vectors, and the key set they were checked with",
        "warning": "Anyone can sign with these keys. Their ids start with 'dev-', and a production key set "
                   "refuses them; a development gate accepts them.",
        "derivation": "Ed25519 private key seed = SHA-256('exchange-ledger development signing key|' + label, "
                      "UTF-8), where label is the authority id (key id dev-2026), or for the three status keys "
                      "the authority id + '|revoked', '|expired' or '|not-yet-valid'",
        "private_seeds_hex": {org: dict(sorted(keys.items())) for org, keys in sorted(private.items())},
        "keyset": to_json(keyset_document(keyset_orgs(cases))),
    }


def _check_expectations(built: list[Built], docs: dict[str, dict[str, Any]]) -> None:
    """Every case got what cases.py says: the decisions in its receipts, or its dead letter's reason."""
    receipts = {v["name"]: v for v in docs[RECEIPTS_FILE]["vectors"]}
    dead = {v["for"]: v for v in docs[DEAD_LETTERS_FILE]["vectors"]}
    problems = []
    for b in built:
        c = b.case
        if c.rejected:
            got = dead.get(c.name, {}).get("kafka", {}).get("headers", {}).get("x-error-reason")
            if got != c.expect:
                problems.append(f"{c.name}: expected rejection {c.expect}, got {got or 'no dead letter'}")
            answer = receipts.get(f"{c.name}.receipt", {}).get("record")
            if c.rejected_receipt != (answer is not None and answer["outcome"] == "REJECTED"
                                      and answer["reason"] == c.expect):
                problems.append(f"{c.name}: expected {'a' if c.rejected_receipt else 'no'} REJECTED receipt "
                                f"({c.expect}), got {answer and (answer['outcome'], answer['reason'])}")
            continue
        for org, (outcome, code) in c.expect.items():
            r = receipts.get(f"{c.name}.receipt.{_slug(org)}", {}).get("record")
            got = None if r is None else (r["outcome"], r["rule"] if r["outcome"] == "ALLOW" else r["reason"])
            if got != (outcome, code):
                problems.append(f"{c.name} → {org}: expected {outcome} {code}, got {got or 'no receipt'}")
    if problems:
        raise VectorMismatch("; ".join(problems))


__all__ = ["REGENERATE", "VECTORS_DIR", "VectorMismatch", "generate", "render"]
