"""A vector case's bytes: payload → ExchangeRequest → signature → SignedMessage, and the tampering.

Signatures are made with the public development keys (``services.keyring``: key id
``dev-2026``, derivable by anyone), the published test keys of the vectors. A development
gate accepts them as they are; a production key set refuses every ``dev-`` key. Three more
development keys of the first signer, revoked, expired and not yet valid, show the gate's
key-status rejections (``STATUS_KEYS``).
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import avro.schema
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro import schemaless_reader

from schemas.categories import present_categories
from schemas.codec import MARKER, AvroCodec
from schemas.cpr import ordering_key
from schemas.registry import SchemaVersion
from services.agency import SUBJECT_FACTS
from services.keyring import DEV_KEY_ID, dev_private_key
from services.keyset import FORMAT
from services.signing import DOMAIN, public_bytes_b64, sign
from services.vectors.cases import OCCURRED_AT, STATUS_KEY_SIGNER, VectorCase

OTHER_SIGNER = "politikreds:midt-vestsjaelland"
_MESSAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://exchange-ledger.dk/vectors")


@dataclass(frozen=True)
class StatusKey:
    key_id: str
    seed_label: str  # the development key of this "org id" is the key
    validity: dict[str, Any]  # valid_from / valid_to / revoked_at, as in the key set


# Development keys of STATUS_KEY_SIGNER whose status makes the gate refuse a correct signature.
STATUS_KEYS = {
    "key_revoked": StatusKey("dev-vectors-revoked", f"{STATUS_KEY_SIGNER}|revoked",
                             {"revoked_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}),
    "key_expired": StatusKey("dev-vectors-expired", f"{STATUS_KEY_SIGNER}|expired", {"valid_to": date(2026, 1, 1)}),
    "key_not_yet_valid": StatusKey("dev-vectors-not-yet-valid", f"{STATUS_KEY_SIGNER}|not-yet-valid",
                                   {"valid_from": date(2999, 1, 1)}),
}

# What each tampering does, and whether the bytes are still built exactly as docs/integration.md says
# (True: only the content or the key is wrong, so an integrator's encoder must reproduce them).
TAMPERS: dict[str, tuple[str, bool]] = {
    "none": ("nothing: the same bytes as the vector it repeats", True),
    "no_domain_separator": ("the signature covers the request bytes without the domain separator", False),
    "other_signers_key": ("signed with another authority's key", False),
    "unknown_key_id": ("key_id names no key of the signer", False),
    "signer_is_not_sender": ("signer (and its key) differ from request.sender.org", True),
    "signer_without_keys": ("the signer has no key in the key set", True),
    "key_revoked": ("signed with a key revoked before the gate checks it", True),
    "key_expired": ("signed with a key whose valid_to has passed", True),
    "key_not_yet_valid": ("signed with a key whose valid_from is still to come", True),
    "big_endian_fingerprint": ("the SignedMessage fingerprint is byte-reversed", False),
    "apache_avro_fingerprint": ("the ExchangeRequest fingerprint is Apache avro 1.12's, over a canonical form "
                                "that keeps logicalType", False),
    "trailing_bytes": ("a zero byte follows the SignedMessage", False),
    "truncated": ("the message is cut after 8 bytes", False),
    "not_avro": ("the value is text", False),
    "invalid_cpr": ("the payload's cpr is not a valid CPR number", True),
}


def signing_key(case: VectorCase) -> tuple[str, str, Ed25519PrivateKey]:
    """(signer, key_id, private key) of a case."""
    signer = case.sender[0]
    if case.tamper == "signer_is_not_sender":
        return OTHER_SIGNER, DEV_KEY_ID, dev_private_key(OTHER_SIGNER)
    if case.tamper == "other_signers_key":
        return signer, DEV_KEY_ID, dev_private_key(OTHER_SIGNER)
    if case.tamper == "unknown_key_id":
        return signer, "dev-unknown", dev_private_key(signer)
    if case.tamper in STATUS_KEYS:
        status = STATUS_KEYS[case.tamper]
        return signer, status.key_id, dev_private_key(status.seed_label)
    return signer, DEV_KEY_ID, dev_private_key(signer)


def keyset_document(orgs: Iterable[str]) -> dict[str, Any]:
    """The key set the vectors are made and checked with: every org's development key, and the status keys."""
    keys: dict[str, list[dict[str, Any]]] = {
        org: [{"key_id": DEV_KEY_ID, "public_key": public_bytes_b64(dev_private_key(org))}] for org in sorted(orgs)}
    keys.setdefault(STATUS_KEY_SIGNER, [])
    for status in STATUS_KEYS.values():
        keys[STATUS_KEY_SIGNER].append({"key_id": status.key_id, "public_key": public_bytes_b64(
            dev_private_key(status.seed_label)), **status.validity})
    return {"format": FORMAT, "keys": keys}


def write_keyset(path: Path, orgs: Iterable[str]) -> Path:
    path.write_text(yaml.safe_dump(keyset_document(orgs), sort_keys=False), encoding="utf-8")
    return path


def message_id(case: VectorCase) -> str:
    return str(uuid.uuid5(_MESSAGE_IDS, case.after or case.name))


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
    key: bytes | None  # the Kafka record key

    @property
    def value(self) -> bytes:
        return self.message.data


def build(case: VectorCase, codec: AvroCodec) -> Built:
    latest = codec.registry.latest(case.payload_type)
    payload_schema = _version(codec, case.payload_type, case.payload_version)
    payload_bytes = codec.encode(case.payload_type, case.payload, case.payload_version)
    facts = case.request.get("subject", {})
    unknown = set(facts) - set(SUBJECT_FACTS)
    if unknown:
        raise ValueError(f"{case.name}: unknown subject facts {sorted(unknown)}")
    declared = case.data_categories if case.data_categories is not None else \
        sorted(present_categories(latest.raw, case.payload))
    sender = case.sender
    request = {
        "message_id": message_id(case),
        "occurred_at": OCCURRED_AT,
        "sender": {"org": sender[0], "role": sender[1]},
        "recipients": [{"org": o, "role": r} for o, r in case.request["recipients"]],
        "context": case.request["context"],
        "underlying_basis": case.request.get("underlying_basis"),
        "cooperation_id": case.request.get("cooperation_id"),
        "purpose": case.request["purpose"],
        "subject": dict(facts),
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
    request_record = _read_as_written(request_schema, request_bytes)
    if case.tamper == "apache_avro_fingerprint":
        apache = avro.schema.parse(json.dumps(request_schema.raw)).fingerprint("CRC-64-AVRO")
        request_bytes = MARKER + apache + request_bytes[len(MARKER) + 8:]

    signer, key_id, key = signing_key(case)
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
    cpr = case.payload.get("cpr")
    return Built(
        case,
        Layer(case.payload_type, payload_schema.version, _read_as_written(payload_schema, payload_bytes), payload_bytes),
        Layer("dk.xledger.ExchangeRequest", request_schema.version, request_record, request_bytes),
        signature,
        Layer("dk.xledger.SignedMessage", signed_schema.version, message_record, message_bytes),
        # The ordering key (schemas.cpr.ordering_key); a CPR number that is not valid has none.
        key=_ordering_key(cpr),
    )


def _ordering_key(cpr: str | None) -> bytes | None:
    if cpr is None:
        return None
    try:
        return ordering_key(cpr).encode("ascii")
    except ValueError:
        return None


def _version(codec: AvroCodec, name: str, version: int | None) -> SchemaVersion:
    versions = codec.registry.versions(name)
    return versions[-1] if version is None else next(v for v in versions if v.version == version)


def _read_as_written(writer: SchemaVersion, data: bytes) -> dict[str, Any]:
    """The record in its writer's own shape, with every default filled in (an old version stays old)."""
    return schemaless_reader(io.BytesIO(data[10:]), writer.parsed, writer.parsed)


__all__ = ["Built", "DOMAIN", "STATUS_KEYS", "TAMPERS", "build", "keyset_document", "signing_key", "write_keyset"]
