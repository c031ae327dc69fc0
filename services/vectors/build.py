"""A vector case's bytes: payload → ExchangeRequest → signature → SignedMessage, and the tampering.

Signatures are made with the published TEST keys (``test_private_key``): anyone can
recompute them, so they are accepted only where the test keys are registered on purpose
(the vector generator and checker, the test suite), never by a deployment.
"""

from __future__ import annotations

import hashlib
import io
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import avro.schema
from fastavro import schemaless_reader
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.directory import Directory, KeyEntry
from schemas.categories import present_categories
from schemas.codec import MARKER, AvroCodec
from schemas.registry import SchemaVersion
from services.agency import SUBJECT_FACTS
from services.signing import DOMAIN, public_bytes_b64, sign
from services.vectors.cases import OCCURRED_AT, VectorCase

TEST_KEY_ID = "test-vectors"
_TEST_KEY_LABEL = b"exchange-ledger conformance test key|"
_MESSAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://exchange-ledger.dk/vectors")

# What each tampering does, and whether the bytes are still built exactly as docs/integration.md says
# (True: only the content is wrong, so an integrator's encoder must reproduce them).
TAMPERS: dict[str, tuple[str, bool]] = {
    "none": ("nothing: the same bytes as the vector it repeats", True),
    "no_domain_separator": ("the signature covers the request bytes without the domain separator", False),
    "other_signers_key": ("signed with another authority's test key", False),
    "unknown_key_id": ("key_id names no key of the signer", False),
    "signer_is_not_sender": ("signer (and its key) differ from request.sender.org", True),
    "big_endian_fingerprint": ("the SignedMessage fingerprint is byte-reversed", False),
    "apache_avro_fingerprint": ("the ExchangeRequest fingerprint is Apache avro 1.12's, over a canonical form "
                                "that keeps logicalType", False),
    "trailing_bytes": ("a zero byte follows the SignedMessage", False),
    "truncated": ("the message is cut after 8 bytes", False),
    "not_avro": ("the value is text", False),
    "pseudonym_mismatch": ("subject.pseudonym belongs to another CPR number", True),
    "invalid_cpr": ("the payload's cpr is not a valid CPR number", True),
}
OTHER_SIGNER = "politikreds:midt-vestsjaelland"


def test_private_key(org: str) -> Ed25519PrivateKey:
    """The published TEST key of ``org``: Ed25519 with seed SHA-256("exchange-ledger conformance test key|" + org)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_TEST_KEY_LABEL + org.encode()).digest())


def test_key_entry(org: str) -> KeyEntry:
    return KeyEntry(key_id=TEST_KEY_ID, public_key=public_bytes_b64(test_private_key(org)))


def register_test_keys(directory: Directory, orgs: list[str]) -> None:
    """Adds the TEST key of each org to the gate's directory: for vectors and tests only."""
    for org in orgs:
        entries = directory.keys.setdefault(org, [])
        if not any(k.key_id == TEST_KEY_ID for k in entries):
            entries.append(test_key_entry(org))


def message_id(case: VectorCase) -> str:
    return str(uuid.uuid5(_MESSAGE_IDS, case.after or case.name))


def pseudonym_of(cpr: str, secret: bytes) -> str:
    # Plain HMAC over the digits, without validating them: a vector may carry an invalid CPR on purpose.
    return hmac.new(secret, cpr.replace("-", "").encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Layer:
    schema: str
    version: int
    record: dict[str, Any] | None
    data: bytes


@dataclass(frozen=True)
class Built:
    case: VectorCase
    payload: Layer
    request: Layer
    signature: bytes
    message: Layer  # what goes on the wire; record is None when the bytes are not a SignedMessage
    key: bytes  # the Kafka record key

    @property
    def value(self) -> bytes:
        return self.message.data


def build(case: VectorCase, codec: AvroCodec, pseudonym_secret: bytes) -> Built:
    latest = codec.registry.latest(case.payload_type)
    payload_schema = next(v for v in codec.registry.versions(case.payload_type)
                          if v.version == (case.payload_version or latest.version))
    payload_bytes = codec.encode(case.payload_type, case.payload, case.payload_version)
    payload_record = _read_as_written(payload_schema, payload_bytes)
    cpr = case.payload.get("cpr")
    subject_pseudonym = "0" * 64 if cpr is None else pseudonym_of(cpr, pseudonym_secret)
    if case.tamper == "pseudonym_mismatch":
        subject_pseudonym = pseudonym_of("0101900000", pseudonym_secret)
    facts = case.request.get("subject", {})
    unknown = set(facts) - set(SUBJECT_FACTS)
    if unknown:
        raise ValueError(f"{case.name}: unknown subject facts {sorted(unknown)}")
    declared = case.data_categories if case.data_categories is not None else \
        sorted(present_categories(latest.raw, case.payload))
    request = {
        "message_id": message_id(case),
        "occurred_at": OCCURRED_AT,
        "sender": {"org": case.sender[0], "role": case.sender[1]},
        "recipients": [{"org": o, "role": r} for o, r in case.request["recipients"]],
        "context": case.request["context"],
        "underlying_basis": case.request.get("underlying_basis"),
        "cooperation_id": case.request.get("cooperation_id"),
        "purpose": case.request["purpose"],
        "subject": {"pseudonym": subject_pseudonym, **facts},
        "data_categories": declared,
        "necessity": case.request.get("necessity"),
        "third_party_justification": case.request.get("third_party_justification"),
        "mandatory": case.request.get("mandatory", False),
        "provenance": case.request.get("provenance"),
        "consent": case.request.get("consent"),
        "payload_type": case.payload_type,
        "payload": payload_bytes,
    }
    request_schema = codec.registry.latest("dk.xledger.ExchangeRequest")
    request_bytes = codec.encode("dk.xledger.ExchangeRequest", request)
    if case.tamper == "apache_avro_fingerprint":
        apache = avro.schema.parse(json.dumps(request_schema.raw)).fingerprint("CRC-64-AVRO")
        request_bytes = MARKER + apache + request_bytes[len(MARKER) + 8:]
    request_record = codec.decode(request_bytes).record if case.tamper != "apache_avro_fingerprint" else \
        codec.decode(MARKER + request_schema.fingerprint + request_bytes[10:]).record

    signer = case.sender[0]
    key = test_private_key(signer)
    key_id = TEST_KEY_ID
    if case.tamper == "other_signers_key":
        key = test_private_key(OTHER_SIGNER)
    elif case.tamper == "unknown_key_id":
        key_id = "test-unknown"
    elif case.tamper == "signer_is_not_sender":
        signer, key = OTHER_SIGNER, test_private_key(OTHER_SIGNER)
    signature = key.sign(request_bytes) if case.tamper == "no_domain_separator" else sign(request_bytes, key)
    signed = {"signer": signer, "key_id": key_id, "signature": signature, "body": request_bytes}
    signed_schema = codec.registry.latest("dk.xledger.SignedMessage")
    message_bytes = codec.encode("dk.xledger.SignedMessage", signed)
    message_record: dict[str, Any] | None = signed
    if case.tamper == "big_endian_fingerprint":
        message_bytes = MARKER + signed_schema.fingerprint[::-1] + message_bytes[10:]
    elif case.tamper == "trailing_bytes":
        message_bytes += b"\x00"
    elif case.tamper == "truncated":
        message_bytes, message_record = message_bytes[:8], None
    elif case.tamper == "not_avro":
        message_bytes, message_record = b"not an avro message", None
    return Built(
        case,
        Layer(case.payload_type, payload_schema.version, payload_record, payload_bytes),
        Layer("dk.xledger.ExchangeRequest", request_schema.version, request_record, request_bytes),
        signature,
        Layer("dk.xledger.SignedMessage", signed_schema.version, message_record, message_bytes),
        key=subject_pseudonym.encode(),
    )


def _read_as_written(writer: SchemaVersion, data: bytes) -> dict[str, Any]:
    """The record in its writer's own shape, with every default filled in (an old version stays old)."""
    return schemaless_reader(io.BytesIO(data[10:]), writer.parsed, writer.parsed)


__all__ = ["Built", "DOMAIN", "TAMPERS", "TEST_KEY_ID", "build", "register_test_keys", "test_private_key"]
