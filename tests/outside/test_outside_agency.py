"""An outside agency, built from docs/integration.md and the .avsc files, talks to the real gate and relay.

Kriminalforsorgen's new case system is played here with no code of exchange-ledger for
encoding, signing or Kafka: Apache ``avro`` with the specification's fingerprint, an
Ed25519 key of its own made with ``cryptography``, and confluent-kafka (librdkafka) as
producer and consumer. The project is used only for what the operator runs: the broker,
the gate, the relay, and registering the agency's public key in the gate's key set.
It publishes an allowed, a denied and two broken requests, then reads its receipts (ALLOW, DENY and
REJECTED), the recipient's inbox and the dead-letter topic, on both ledger back-ends.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.outside import client

REPO = Path(__file__).resolve().parents[2]
SENDER = {"org": "kriminalforsorgen:horserod", "role": "KRIMINALFORSORGEN"}
RECIPIENT = {"org": "kommune:217", "role": "MUNI_SOCIAL_ADULT"}
KEY_ID = "horserod-casesystem-2026"


def ordering_key(cpr: str) -> bytes:
    """docs/integration.md, "The ordering key": 4 hex digits of SHA-256("xledger-order-v1|" + the 10 digits)."""
    return hashlib.sha256(b"xledger-order-v1|" + cpr.encode("ascii")).digest()[:2].hex().encode("ascii")


class Agency:
    """What the integrator wrote: build, sign and publish a release notice."""

    def __init__(self, bootstrap: str):
        self.contracts = client.Contracts(REPO / "schemas")
        self.key = Ed25519PrivateKey.generate()
        self.producer = client.producer(bootstrap)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def release_notice(self, cpr: str, release: dt.date, *, declared: list[str]) -> tuple[str, bytes, bytes]:
        payload = {
            "cpr": cpr, "full_name": "Testperson Gamma", "institution": "Horserød Fængsel",
            "release_date": release, "release_type": "PAROLE", "conditions": ["Tilsyn"],
            "housing_need": "Har ingen bolig.", "treatment_need": None, "contact_officer": None,
            "municipality_contact": None,
        }
        message_id = str(uuid.uuid4())
        request = {
            "message_id": message_id,
            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "sender": SENDER, "recipients": [RECIPIENT],
            "context": "KSP", "underlying_basis": None, "cooperation_id": "ksp:helsingor",
            "purpose": "RELEASE_PLANNING",
            "subject": {"age": 35, "socially_vulnerable": False, "crime_risk": False, "convicted": True,
                        "custody_status": "IN_KIF_INSTITUTION", "release_date": release,
                        "radicalisation_assessed": False, "pseudonym": ""},  # deprecated: always empty
            "data_categories": declared,
            "necessity": "Bolig skal være klar på løsladelsesdagen.", "third_party_justification": None,
            "mandatory": False, "provenance": None, "consent": None,
            "payload_type": "dk.xledger.payload.ReleaseNotice",
            "payload": self.contracts.encode("dk.xledger.payload.ReleaseNotice", payload),
        }
        body = self.contracts.encode("dk.xledger.ExchangeRequest", request)
        signed = {"signer": SENDER["org"], "key_id": KEY_ID, "signature": client.sign(self.key, body), "body": body}
        return message_id, ordering_key(cpr), self.contracts.encode("dk.xledger.SignedMessage", signed)

    def publish(self, key: bytes | None, value: bytes) -> tuple[int, int]:
        return client.publish(self.producer, "exchange.requests", key, value)


def test_an_outside_agency_gets_receipts_and_a_delivery(settings, tmp_path):
    # --- the operator: the agency's key in the key set, topics, the gate and the relay ---
    from services.keyset import KeySetFile
    from services.runtime import Runtime
    from tests.harness import running

    agency = Agency(settings.bootstrap_servers)
    keyset = KeySetFile(tmp_path / "keyset.yaml")
    keyset.add(SENDER["org"], KEY_ID, agency.public_key_b64, valid_from=dt.date(2026, 1, 1))
    runtime = Runtime(dataclasses.replace(settings, keyset=str(keyset.path)))
    runtime.create_topics([SENDER["org"], RECIPIENT["org"]])

    # --- the agency: one allowed, one denied, one malformed, one that is not Avro at all ---
    today = dt.date.today()
    all_categories = ["CRIMINAL", "HEALTH", "IDENTITY", "RENT_PRIVATE"]
    allowed_id, allowed_key, allowed = agency.release_notice("1203911234", today + dt.timedelta(days=21),
                                                             declared=all_categories)
    denied_id, denied_key, denied = agency.release_notice("0508882345", today + dt.timedelta(days=4 * 365),
                                                          declared=all_categories)
    malformed_id, _, malformed = agency.release_notice("3113911234", today + dt.timedelta(days=21), declared=all_categories)
    sent = {
        "allowed": agency.publish(allowed_key, allowed),
        "denied": agency.publish(denied_key, denied),
        "malformed": agency.publish(None, malformed),  # the CPR number is not a date: INVALID_RECORD
        "garbage": agency.publish(b"x", b"not an avro message"),
    }
    agency.producer.close()

    reader = client.Reader(settings.bootstrap_servers,
                           ["receipts.kriminalforsorgen.horserod", "inbox.kommune.217", "exchange.requests.dlq"])
    try:
        with running(runtime.gate_worker("gate-1"), runtime.relay()):
            records = reader.read_until(lambda rs: _count(rs, "receipts.") >= 3 and _count(rs, "inbox.") >= 1
                                        and _count(rs, "exchange.requests.dlq") >= 2)
    finally:
        reader.close()
        runtime.close()

    receipts = [agency.contracts.decode(r.value)[1] for r in records if r.topic.startswith("receipts.")]
    by_message = {r["message_id"]: r for r in receipts}
    assert (by_message[allowed_id]["outcome"], by_message[allowed_id]["rule"]) == ("ALLOW", "P5")
    assert (by_message[denied_id]["outcome"], by_message[denied_id]["reason"]) == ("DENY", "DENY_SUBJECT_OUT_OF_SCOPE")
    # The malformed request was signed correctly, so its sender hears why it was refused; the garbage
    # cannot be attributed to anyone, so only the dead-letter topic has it.
    rejected = by_message[malformed_id]
    assert (rejected["outcome"], rejected["reason"], rejected["recipient"]) == ("REJECTED", "INVALID_RECORD", "")
    assert "cpr" in rejected["detail"] and "3113911234" not in rejected["detail"]
    assert len(receipts) == 3
    for r in records:
        if r.topic.startswith(("receipts.", "inbox.")):
            writer, decoded = agency.contracts.decode(r.value)
            # Idempotent consumption rests on this header: the same id on a re-sent record.
            assert r.headers["x-delivery-id"].decode() == decoded.get("delivery_id", decoded.get("receipt_id"))

    [inbox] = [agency.contracts.decode(r.value)[1] for r in records if r.topic == "inbox.kommune.217"]
    assert (inbox["message_id"], inbox["rule"], inbox["sender"]["org"]) == (allowed_id, "P5", SENDER["org"])
    _, payload = agency.contracts.decode(inbox["payload"])
    assert payload["cpr"] == "1203911234" and payload["release_date"] == today + dt.timedelta(days=21)

    dead = {(int(r.headers["x-source-partition"]), int(r.headers["x-source-offset"])): r
            for r in records if r.topic == "exchange.requests.dlq"}
    assert dead[sent["malformed"]].headers["x-error-reason"] == b"INVALID_RECORD"
    assert dead[sent["malformed"]].value == malformed
    assert dead[sent["garbage"]].headers["x-error-reason"] == b"BAD_MARKER"
    assert sent["allowed"] not in dead and sent["denied"] not in dead


def _count(records, prefix: str) -> int:
    return sum(r.topic.startswith(prefix) for r in records)
