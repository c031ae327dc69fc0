"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures and Ed25519
witness cosignatures (https://c2sp.org/tlog-cosignature, ``cosignature/v1``).

A note is a text ending in a newline, a blank line, and one or more signature lines::

    — <key name> base64(key id (4 bytes) || signature)

The key id is ``SHA-256(name || 0x0A || type || public key)[:4]``: type 0x01 for a plain
Ed25519 signature over the text (what a log signs its checkpoints with), 0x04 for a
cosignature, whose signature is ``u64 timestamp || Ed25519 signature`` over::

    cosignature/v1\\n
    time <timestamp>\\n
    <the note text>

Verifier keys ("vkeys") are written ``<name>+<key id hex>+base64(type || public key)``, as
golang.org/x/mod/sumdb/note does. Only ``cryptography`` and the standard library are used,
so an outsider can check notes with this file alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ED25519",
    "COSIGNATURE_V1",
    "MAX_SIGNATURES",
    "NoteError",
    "NoteSignature",
    "Note",
    "NoteVerifier",
    "Ed25519Verifier",
    "Ed25519Signer",
    "CosignatureVerifier",
    "Cosigner",
    "key_id",
    "verifier_from_vkey",
    "merge_signatures",
    "open_note",
]

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
# The spec asks verifiers to accept at least 16 signatures and to bound the rest.
MAX_SIGNATURES = 100
_DASH = "\u2014"
_COSIGNATURE_HEADER = b"cosignature/v1\n"


class NoteError(ValueError):
    """A note, a signature line or a verifier key is malformed, or a known signature is bad."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if _b64(raw) != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, sig_type: int, public_key: Ed25519PublicKey | bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]``."""
    if not _valid_name(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    raw = public_key if isinstance(public_key, bytes) else _raw(public_key)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + raw).digest()[:4]


# --------------------------------------------------------------------------- note text


def merge_signatures(existing: Sequence[NoteSignature], extra: Iterable[NoteSignature]) -> tuple[NoteSignature, ...]:
    """``existing`` followed by those of ``extra`` from a key (name, key id) not yet present."""
    seen = {s.key for s in existing}
    added = []
    for s in extra:
        if s.key not in seen:
            seen.add(s.key)
            added.append(s)
    return tuple(existing) + tuple(added)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes      # 4 bytes
    signature: bytes   # what follows the key id

    def line(self) -> str:
        return f"{_DASH} {self.name} {_b64(self.key_id + self.signature)}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """One signature line, with or without its final newline."""
        body = line[:-1] if line.endswith("\n") else line
        if not body.startswith(_DASH + " "):
            raise NoteError("a signature line starts with an em dash and a space")
        name, sep, blob = body[2:].partition(" ")
        if not sep or not _valid_name(name) or not blob or " " in blob:
            raise NoteError("a signature line is '— <name> <base64>'")
        raw = _unb64(blob, "signature")
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key id and at least one byte")
        return cls(name, raw[:4], raw[4:])

    @property
    def key(self) -> tuple[str, bytes]:
        return self.name, self.key_id


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note with further signatures; one per (name, key id), earlier ones kept."""
        return Note(self.text, merge_signatures(self.signatures, extra))

    @classmethod
    def parse(cls, message: str | bytes, *, max_signatures: int = MAX_SIGNATURES) -> Note:
        """Split a signed note into its text and signature lines (nothing is verified here)."""
        if isinstance(message, bytes):
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NoteError("a note must be UTF-8") from exc
        if not isinstance(message, str):
            raise NoteError("a note must be text")
        if any(c < " " and c != "\n" for c in message):
            raise NoteError("a note must not contain control characters other than newline")
        split = message.rfind("\n\n")
        if split < 0:
            raise NoteError("a note is its text, a blank line and signature lines")
        text, sigs = message[: split + 1], message[split + 2:]
        if not sigs or not sigs.endswith("\n"):
            raise NoteError("a note ends with at least one newline-terminated signature line")
        lines = sigs[:-1].split("\n")
        if len(lines) > max_signatures:
            raise NoteError(f"a note may carry at most {max_signatures} signatures")
        return cls(text, tuple(NoteSignature.parse_line(line) for line in lines))


# --------------------------------------------------------------------------- verifiers and signers


class NoteVerifier(Protocol):
    """A key that checks one kind of signature line: named and identified like it."""

    name: str
    key_id: bytes

    def verify(self, text: bytes, signature: bytes) -> bool: ...


class Ed25519Verifier:
    """Plain Ed25519 over the note text (signature type 0x01): a log's checkpoint key."""

    sig_type = ED25519

    def __init__(self, name: str, public_key: Ed25519PublicKey):
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, self.sig_type, public_key)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + _raw(self.public_key))}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self.public_key.verify(signature, text)
            return True
        except InvalidSignature:
            return False


class CosignatureVerifier(Ed25519Verifier):
    """A witness's Ed25519 cosignature/v1 (signature type 0x04)."""

    sig_type = COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 8 + 64:
            return False
        (timestamp,) = struct.unpack(">Q", signature[:8])
        if timestamp >= 1 << 63:
            return False
        return super().verify(_cosigned_message(timestamp, text), signature[8:])

    @staticmethod
    def timestamp(signature: NoteSignature) -> int:
        return struct.unpack(">Q", signature.signature[:8])[0]


def _cosigned_message(timestamp: int, text: bytes) -> bytes:
    return _COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


class Ed25519Signer:
    sig_type = ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey):
        self.name = name
        self._key = private_key
        self.key_id = key_id(name, self.sig_type, private_key.public_key())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, self.public_key)

    def sign(self, text: bytes) -> NoteSignature:
        return NoteSignature(self.name, self.key_id, self._key.sign(text))


class Cosigner(Ed25519Signer):
    """A witness's key: signs ``cosignature/v1`` over a checkpoint it has checked."""

    sig_type = COSIGNATURE_V1

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.public_key)

    def sign(self, text: bytes, timestamp: int | None = None) -> NoteSignature:
        ts = int(time.time()) if timestamp is None else timestamp
        if not 0 <= ts < 1 << 63:
            raise NoteError("a cosignature timestamp is a non-negative 63-bit number")
        return NoteSignature(self.name, self.key_id,
                             struct.pack(">Q", ts) + self._key.sign(_cosigned_message(ts, text)))


_TYPE_NAMES = {ED25519: "an Ed25519 (type 0x01) key", COSIGNATURE_V1: "a cosignature/v1 (type 0x04) key"}


def verifier_from_vkey(vkey: str, sig_type: int | None = None) -> Ed25519Verifier:
    """An Ed25519 (0x01) or cosignature/v1 (0x04) verifier from ``name+hash+base64(type||key)``;
    with ``sig_type``, only a key of that type."""
    if not isinstance(vkey, str):
        raise NoteError("a verifier key is text")
    parts = vkey.strip().split("+", 2)  # base64 may itself hold '+'
    if len(parts) != 3:
        raise NoteError(f"verifier key {vkey.strip()[:60]!r} is not <name>+<hash>+<base64 key>")
    name, hash_hex, blob = parts
    if not _valid_name(name) or len(hash_hex) != 8:
        raise NoteError(f"verifier key {vkey.strip()[:60]!r} has a bad name or hash")
    raw = _unb64(blob, "verifier key")
    if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise NoteError("verifier key must be an Ed25519 (type 0x01) or cosignature/v1 (type 0x04) key")
    try:
        public = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError as exc:
        raise NoteError(f"verifier key is not an Ed25519 key: {exc}") from exc
    verifier = (CosignatureVerifier if raw[0] == COSIGNATURE_V1 else Ed25519Verifier)(name, public)
    if verifier.key_id.hex() != hash_hex.lower():
        raise NoteError(f"verifier key hash {hash_hex} does not match its name and key")
    if sig_type is not None and verifier.sig_type != sig_type:
        raise NoteError(f"verifier key {vkey.strip()[:60]!r} is not {_TYPE_NAMES[sig_type]}")
    return verifier


def open_note(message: str | bytes | Note, verifiers: Sequence[NoteVerifier]) -> tuple[Note, list[NoteSignature]]:
    """Parse a note and check it as the spec says: signatures from unknown keys are ignored, a
    known key whose signature fails rejects the whole note, and at least one must verify.

    Returns the note and the signatures that verified (one per key)."""
    note = message if isinstance(message, Note) else Note.parse(message)
    known = {(v.name, v.key_id): v for v in verifiers}
    text = note.text.encode("utf-8")
    good: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        verifier = known.get(sig.key)
        if verifier is None or sig.key in seen:
            continue
        seen.add(sig.key)
        if not verifier.verify(text, sig.signature):
            raise NoteError(f"signature by {sig.name} (key {sig.key_id.hex()}) does not verify")
        good.append(sig)
    if not good:
        names = sorted({f"{s.name}+{s.key_id.hex()}" for s in note.signatures})
        raise NoteError(f"no signature from a known key (the note is signed by {', '.join(names) or 'nobody'})")
    return note, good
