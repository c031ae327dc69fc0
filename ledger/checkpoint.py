"""Signed checkpoints: the log operator's Ed25519 commitment to (origin, size, root, time).

The signed bytes are the C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint)::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n
    time <ISO-8601 UTC timestamp>\\n

so ``SignedCheckpoint.to_note`` can render it as a C2SP signed note, checkable with
existing transparency-log tooling (Go's golang.org/x/mod/sumdb/note, witnesses) given
``note_verifier_key(origin, public_key)``. The signer and the verifier are separate objects: only the
operator holds a ``CheckpointSigner``; auditors need nothing but the public key.

JSON form of a ``SignedCheckpoint`` (``to_json``/``from_json``), all keys required::

    {
      "format":    "exchange-ledger/signed-checkpoint/v1",
      "origin":    "exchange-ledger/<deployment>",
      "tree_size": 1234,                      # JSON integer
      "root_hash": "<standard base64, 32 bytes>",
      "timestamp": "2025-11-26T08:04:00Z",    # UTC, 'Z' suffix, optional fraction
      "key_id":    "<free text naming the key, e.g. key_fingerprint(public_key)>",
      "signature": "<standard base64, 64-byte Ed25519 signature over the body above>"
    }
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "FORMAT",
    "CheckpointError",
    "Checkpoint",
    "SignedCheckpoint",
    "CheckpointSigner",
    "CheckpointVerifier",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "encode_private_key",
    "encode_public_key",
    "key_fingerprint",
    "note_verifier_key",
    "signed_note",
    "utc_timestamp",
]

FORMAT = "exchange-ledger/signed-checkpoint/v1"
_HASH_SIZE = 32
_SIGNATURE_SIZE = 64
_JSON_KEYS = frozenset(
    {"format", "origin", "tree_size", "root_hash", "timestamp", "key_id", "signature"}
)
# One spelling per instant, so the signed body is canonical: seconds precision or a
# fraction, always UTC with a 'Z'.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z", re.ASCII)


class CheckpointError(ValueError):
    """A checkpoint is malformed, or its signature or key does not check out."""


# --------------------------------------------------------------------------- encoding helpers


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise CheckpointError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    # Reject alternative spellings of the same bytes; signed data has one encoding.
    if _b64encode(raw) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    if size is not None and len(raw) != size:
        raise CheckpointError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with a 'Z' suffix, the spelling ``Checkpoint.timestamp`` requires."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise CheckpointError("timestamp must be timezone-aware")
    moment = moment.astimezone(timezone.utc)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """What the operator commits to: the tree over the log's first ``tree_size`` entries."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: str

    def __post_init__(self) -> None:
        # Validated at construction so a Checkpoint that exists always has a canonical body.
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointError("origin must be a non-empty string")
        if any(c.isspace() and c != " " for c in self.origin) or self.origin != self.origin.strip():
            raise CheckpointError("origin must be one line without leading/trailing space")
        try:
            self.origin.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CheckpointError("origin must be valid Unicode text") from exc
        if (
            not isinstance(self.tree_size, int)
            or isinstance(self.tree_size, bool)
            or self.tree_size < 0
        ):
            raise CheckpointError("tree_size must be a non-negative integer")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise CheckpointError(f"root_hash must be {_HASH_SIZE} bytes")
        if not isinstance(self.timestamp, str) or not _TIMESTAMP.fullmatch(self.timestamp):
            raise CheckpointError(
                "timestamp must be ISO-8601 UTC like 2025-11-26T08:04:00Z "
                f"(got {self.timestamp!r})"
            )
        try:
            datetime.fromisoformat(self.timestamp[:19])
        except ValueError as exc:
            raise CheckpointError(f"timestamp {self.timestamp!r} is not a real date") from exc

    def body(self) -> bytes:
        """The exact bytes that are signed (C2SP tlog-checkpoint with a time extension)."""
        return (
            f"{self.origin}\n{self.tree_size}\n{_b64encode(self.root_hash)}\n"
            f"time {self.timestamp}\n"
        ).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes | str) -> Checkpoint:
        """Parse a body produced by ``body()``; the inverse, byte for byte."""
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError as exc:
            raise CheckpointError("checkpoint body is not UTF-8") from exc
        if not isinstance(text, str):
            raise CheckpointError("checkpoint body must be text")
        lines = text.split("\n")
        if len(lines) != 5 or lines[4] != "" or not lines[3].startswith("time "):
            raise CheckpointError("checkpoint body must be origin, size, root and time lines")
        if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]):
            raise CheckpointError("tree size line must be a canonical decimal")
        checkpoint = cls(
            origin=lines[0],
            tree_size=int(lines[1]),
            root_hash=_b64decode(lines[2], "root hash", _HASH_SIZE),
            timestamp=lines[3][len("time ") :],
        )
        if checkpoint.body().decode("utf-8") != text:
            raise CheckpointError("checkpoint body is not canonical")
        return checkpoint


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    key_id: str
    signature: bytes

    def to_note(self, public_key: Ed25519PublicKey | bytes | str, name: str | None = None) -> str:
        """The C2SP signed-note text; the key name defaults to the origin, as is customary."""
        return signed_note(
            self.checkpoint.body(), name or self.checkpoint.origin, public_key, self.signature
        )

    def to_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "format": FORMAT,
            "origin": cp.origin,
            "tree_size": cp.tree_size,
            "root_hash": _b64encode(cp.root_hash),
            "timestamp": cp.timestamp,
            "key_id": self.key_id,
            "signature": _b64encode(self.signature),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> SignedCheckpoint:
        if not isinstance(data, dict):
            raise CheckpointError("signed checkpoint must be a JSON object")
        if data.get("format") != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format {data.get('format')!r}")
        missing, unknown = _JSON_KEYS - data.keys(), data.keys() - _JSON_KEYS
        if missing or unknown:
            raise CheckpointError(
                f"signed checkpoint keys: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        if not isinstance(data["key_id"], str) or not data["key_id"]:
            raise CheckpointError("key_id must be a non-empty string")
        checkpoint = Checkpoint(
            origin=data["origin"],
            tree_size=data["tree_size"],
            root_hash=_b64decode(data["root_hash"], "root_hash", _HASH_SIZE),
            timestamp=data["timestamp"],
        )
        return cls(
            checkpoint=checkpoint,
            key_id=data["key_id"],
            signature=_b64decode(data["signature"], "signature", _SIGNATURE_SIZE),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedCheckpoint:
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError
            raise CheckpointError(f"signed checkpoint is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# --------------------------------------------------------------------------- keys


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def _key_text(data: bytes | str) -> tuple[bytes, bool]:
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    return raw, raw.lstrip().startswith(b"-----BEGIN")


def load_private_key(data: bytes | str | Ed25519PrivateKey) -> Ed25519PrivateKey:
    """From an Ed25519PrivateKey, unencrypted PKCS#8 PEM, raw 32 bytes, or their base64."""
    if isinstance(data, Ed25519PrivateKey):
        return data
    if not isinstance(data, (bytes, bytearray, str)):
        raise CheckpointError("private key must be PEM, raw bytes or base64 text")
    raw, is_pem = _key_text(data)
    try:
        if is_pem:
            key = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise CheckpointError("PEM private key is not Ed25519")
            return key
        if isinstance(data, str) or len(raw) != 32:
            raw = _b64decode(raw.decode("ascii").strip(), "private key", 32)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except CheckpointError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot load Ed25519 private key: {exc}") from exc


def load_public_key(data: bytes | str | Ed25519PublicKey) -> Ed25519PublicKey:
    """From an Ed25519PublicKey, SubjectPublicKeyInfo PEM, raw 32 bytes, or their base64."""
    if isinstance(data, Ed25519PublicKey):
        return data
    if not isinstance(data, (bytes, bytearray, str)):
        raise CheckpointError("public key must be PEM, raw bytes or base64 text")
    raw, is_pem = _key_text(data)
    try:
        if is_pem:
            key = serialization.load_pem_public_key(raw)
            if not isinstance(key, Ed25519PublicKey):
                raise CheckpointError("PEM public key is not Ed25519")
            return key
        if isinstance(data, str) or len(raw) != 32:
            raw = _b64decode(raw.decode("ascii").strip(), "public key", 32)
        return Ed25519PublicKey.from_public_bytes(raw)
    except CheckpointError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot load Ed25519 public key: {exc}") from exc


def encode_public_key(key: Ed25519PublicKey) -> str:
    """Raw 32-byte public key in standard base64: the form auditors are given."""
    return _b64encode(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def encode_private_key(key: Ed25519PrivateKey) -> str:
    """Raw 32-byte private seed in standard base64 (for XLEDGER_* secrets)."""
    return _b64encode(
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )


def key_fingerprint(key: Ed25519PublicKey | bytes | str) -> str:
    """A stable default key_id: 'ed25519:' + first 8 bytes of SHA-256(raw key), in hex."""
    return "ed25519:" + hashlib.sha256(_raw_public(key)).digest()[:8].hex()


def _raw_public(key: Ed25519PublicKey | bytes | str) -> bytes:
    return load_public_key(key).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


_NOTE_ED25519 = b"\x01"  # signed-note signature type for Ed25519


def _note_key_hash(name: str, key: Ed25519PublicKey | bytes | str) -> bytes:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise CheckpointError("note key names must be non-empty, without spaces or '+'")
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + _NOTE_ED25519 + _raw_public(key)
    ).digest()[:4]


def note_verifier_key(name: str, public_key: Ed25519PublicKey | bytes | str) -> str:
    """The signed-note verifier key string ``<name>+<hash hex>+<base64(0x01 || key)>``."""
    key_hash = _note_key_hash(name, public_key)
    return f"{name}+{key_hash.hex()}+{_b64encode(_NOTE_ED25519 + _raw_public(public_key))}"


def signed_note(
    text: bytes, name: str, public_key: Ed25519PublicKey | bytes | str, signature: bytes
) -> str:
    """A C2SP signed note of ``text`` carrying one Ed25519 ``signature`` over it."""
    if not text.endswith(b"\n"):
        raise CheckpointError("signed-note text must end with a newline")
    line = _b64encode(_note_key_hash(name, public_key) + signature)
    return text.decode("utf-8") + f"\n\u2014 {name} {line}\n"


# --------------------------------------------------------------------------- roles


class CheckpointSigner:
    """Held by the log operator only."""

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError("CheckpointSigner needs an Ed25519PrivateKey")
        if not isinstance(key_id, str) or not key_id:
            raise CheckpointError("key_id must be a non-empty string")
        self._key = private_key
        self.key_id = key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, checkpoint: Checkpoint) -> SignedCheckpoint:
        if not isinstance(checkpoint, Checkpoint):
            raise CheckpointError("sign takes a Checkpoint")
        return SignedCheckpoint(
            checkpoint=checkpoint,
            key_id=self.key_id,
            signature=self._key.sign(checkpoint.body()),
        )


class CheckpointVerifier:
    """Held by anyone; needs only the operator's public key.

    ``key_id=None`` skips the label check (the signature alone decides, since only this
    key can produce it); ``origin`` pins the log so a checkpoint of another deployment,
    signed with a shared key, cannot be passed off as this one's.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey | bytes | str,
        key_id: str | None,
        *,
        origin: str | None = None,
    ) -> None:
        self._key = load_public_key(public_key)
        self.key_id = key_id
        self.origin = origin

    def verify(self, signed: SignedCheckpoint) -> None:
        if not isinstance(signed, SignedCheckpoint):
            raise CheckpointError("expected a SignedCheckpoint")
        if self.key_id is not None and signed.key_id != self.key_id:
            raise CheckpointError(
                f"checkpoint signed by key {signed.key_id!r}, expected {self.key_id!r}"
            )
        if self.origin is not None and signed.checkpoint.origin != self.origin:
            raise CheckpointError(
                f"checkpoint is for origin {signed.checkpoint.origin!r}, "
                f"expected {self.origin!r}"
            )
        if not isinstance(signed.signature, bytes) or len(signed.signature) != _SIGNATURE_SIZE:
            raise CheckpointError(f"signature must be {_SIGNATURE_SIZE} bytes")
        try:
            self._key.verify(signed.signature, signed.checkpoint.body())
        except InvalidSignature:
            raise CheckpointError(
                f"bad checkpoint signature (origin {signed.checkpoint.origin!r}, "
                f"size {signed.checkpoint.tree_size}, key {signed.key_id!r})"
            ) from None
