"""Signed checkpoints: the log operator's Ed25519 commitment to (origin, size, root).

A checkpoint is a C2SP signed note (https://c2sp.org/tlog-checkpoint) whose text is::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n

followed by a blank line and signature lines (``ledger.note``): first the log's own
(key name = origin, Ed25519, note key id ``SHA-256(origin || 0x0A || 0x01 || key)[:4]``),
then any witness cosignatures. This is the form written since v2, and the one that
golang.org/x/mod/sumdb/note and C2SP witnesses read.

Ledgers written before v2 hold checkpoints in a JSON form (still read and verified,
never written); their signed body has a fourth line ``time <ISO-8601 UTC>``::

    {
      "format":    "exchange-ledger/signed-checkpoint/v1",
      "origin":    "exchange-ledger/<deployment>",
      "tree_size": 1234,
      "root_hash": "<standard base64, 32 bytes>",
      "timestamp": "2025-11-26T08:04:00Z",
      "key_id":    "<free text naming the key, e.g. key_fingerprint(public_key)>",
      "signature": "<standard base64, 64-byte Ed25519 signature over the body>"
    }

Keys rotate: a new key has a new note key id, and a *key history* (``parse_key_history``)
lists the earlier public keys with the tree sizes each may have signed, so checkpoints
signed before a rotation still verify. The signer and the verifier are separate objects:
only the operator holds a ``CheckpointSigner``; auditors need nothing but public keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.note import (
    ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    Note,
    NoteError,
    NoteSignature,
    key_id as note_key_id,
    merge_signatures,
    verifier_from_vkey,
)

__all__ = [
    "FORMAT",
    "NOTE_FORMAT",
    "CheckpointError",
    "UnknownKeyError",
    "Checkpoint",
    "SignedCheckpoint",
    "CheckpointSigner",
    "CheckpointVerifier",
    "LogKey",
    "parse_key_history",
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
# The JSON wrapper of a note where JSON is needed (proof bundles): {"format": ..., "note": "..."}.
NOTE_FORMAT = "exchange-ledger/checkpoint-note/v2"
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


class UnknownKeyError(CheckpointError):
    """No key the verifier knows signed this checkpoint (a wrong key or origin, or a forgery)."""


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
    """What the operator commits to: the tree over the log's first ``tree_size`` entries.

    ``timestamp`` is set only on checkpoints of the v1 JSON form, whose body carries it.
    """

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: str | None = None

    def __post_init__(self) -> None:
        # Validated at construction so a Checkpoint that exists always has a canonical body.
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointError("origin must be a non-empty string")
        if any(c.isspace() and c != " " for c in self.origin) or self.origin != self.origin.strip():
            raise CheckpointError("origin must be one line without leading/trailing space")
        if any(c < " " for c in self.origin):
            raise CheckpointError("origin must not contain control characters")
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
        if self.timestamp is None:
            return
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
        """The exact bytes that are signed: the C2SP tlog-checkpoint note text (v1: with a
        ``time`` extension line)."""
        text = f"{self.origin}\n{self.tree_size}\n{_b64encode(self.root_hash)}\n"
        if self.timestamp is not None:
            text += f"time {self.timestamp}\n"
        return text.encode("utf-8")

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
        if not (len(lines) == 4 or (len(lines) == 5 and lines[3].startswith("time "))) or lines[-1] != "":
            raise CheckpointError("checkpoint body must be origin, size and root lines (and a v1 time line)")
        if not re.fullmatch(r"0|[1-9][0-9]*", lines[1], re.ASCII):
            raise CheckpointError("tree size line must be a canonical decimal")
        checkpoint = cls(
            origin=lines[0],
            tree_size=int(lines[1]),
            root_hash=_b64decode(lines[2], "root hash", _HASH_SIZE),
            timestamp=lines[3][len("time "):] if len(lines) == 5 else None,
        )
        if checkpoint.body().decode("utf-8") != text:
            raise CheckpointError("checkpoint body is not canonical")
        return checkpoint


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and its signatures.

    Since v2 it is a signed note: ``signatures`` holds the log's signature line and any
    witness cosignatures. A checkpoint read from the v1 JSON form has no note signatures
    but ``legacy_key_id`` and ``legacy_signature`` (plain Ed25519 over the body).
    """

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...] = ()
    legacy_key_id: str | None = None
    legacy_signature: bytes | None = None

    @property
    def is_legacy(self) -> bool:
        return self.legacy_signature is not None

    @property
    def key_id(self) -> str:
        """What names the signing key: the v1 label, or ``<name>+<note key id>`` of the first
        signature line (the log's own)."""
        if self.is_legacy:
            return self.legacy_key_id or ""
        return f"{self.signatures[0].name}+{self.signatures[0].key_id.hex()}" if self.signatures else ""

    # -- note form ---------------------------------------------------------------------------

    def note(self, public_key: Ed25519PublicKey | bytes | str | None = None, name: str | None = None) -> Note:
        """The signed note. A v1 checkpoint becomes one given the key that signed it (its JSON
        does not say which key; the note's key id does)."""
        if not self.is_legacy:
            return Note(self.checkpoint.body().decode("utf-8"), self.signatures)
        if public_key is None:
            raise CheckpointError("a v1 checkpoint becomes a note only given its public key")
        name = name or self.checkpoint.origin
        sig = NoteSignature(name, note_key_id(name, ED25519, _raw_public(public_key)), self.legacy_signature)
        return Note(self.checkpoint.body().decode("utf-8"), (sig,) + self.signatures)

    def to_note(self, public_key: Ed25519PublicKey | bytes | str | None = None, name: str | None = None) -> str:
        """The C2SP signed-note text (with any cosignatures)."""
        return self.note(public_key, name).render()

    @classmethod
    def from_note(cls, text: str | bytes) -> SignedCheckpoint:
        try:
            note = Note.parse(text)
        except NoteError as exc:
            raise CheckpointError(f"checkpoint note is malformed: {exc}") from exc
        return cls(Checkpoint.from_body(note.text), note.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> SignedCheckpoint:
        """This checkpoint with further signature lines (cosignatures); duplicates dropped."""
        return replace(self, signatures=merge_signatures(self.signatures, extra))

    def log_signed(self) -> SignedCheckpoint:
        """Only what the log signed: its signature lines (named by the origin), no cosignatures."""
        return replace(self, signatures=tuple(s for s in self.signatures if s.name == self.checkpoint.origin))

    # -- stored and JSON forms ---------------------------------------------------------------

    def stored(self) -> str:
        """The text kept in the ledger: the signed note, or the v1 JSON it was read from."""
        return self.to_json() if self.is_legacy else self.to_note()

    @classmethod
    def parse(cls, text: str | bytes) -> SignedCheckpoint:
        """A signed note, or a v1 JSON checkpoint (or its JSON wrapper ``to_dict``)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CheckpointError("checkpoint is not UTF-8 text") from exc
        if not isinstance(text, str):
            raise CheckpointError("checkpoint must be text")
        if text.lstrip().startswith("{"):
            # A note's signature lines ("— name sig") are never JSON, so whatever parses as JSON is
            # the v1 form, and an origin that starts with '{' still reads as a note.
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if data is not None:
                return cls.from_dict(data)
        return cls.from_note(text)

    def to_dict(self) -> dict[str, Any]:
        if not self.is_legacy:
            return {"format": NOTE_FORMAT, "note": self.to_note()}
        cp = self.checkpoint
        return {
            "format": FORMAT,
            "origin": cp.origin,
            "tree_size": cp.tree_size,
            "root_hash": _b64encode(cp.root_hash),
            "timestamp": cp.timestamp,
            "key_id": self.legacy_key_id,
            "signature": _b64encode(self.legacy_signature),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> SignedCheckpoint:
        if not isinstance(data, dict):
            raise CheckpointError("signed checkpoint must be a JSON object")
        if data.get("format") == NOTE_FORMAT:
            if set(data) != {"format", "note"} or not isinstance(data["note"], str):
                raise CheckpointError(f"a {NOTE_FORMAT} object has exactly the keys format and note (text)")
            return cls.from_note(data["note"])
        if data.get("format") != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format {data.get('format')!r}")
        missing, unknown = _JSON_KEYS - data.keys(), data.keys() - _JSON_KEYS
        if missing or unknown:
            raise CheckpointError(
                f"signed checkpoint keys: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        if not isinstance(data["key_id"], str) or not data["key_id"]:
            raise CheckpointError("key_id must be a non-empty string")
        if data["timestamp"] is None:
            raise CheckpointError("a v1 checkpoint has a timestamp")
        checkpoint = Checkpoint(
            origin=data["origin"],
            tree_size=data["tree_size"],
            root_hash=_b64decode(data["root_hash"], "root_hash", _HASH_SIZE),
            timestamp=data["timestamp"],
        )
        return cls(
            checkpoint=checkpoint,
            legacy_key_id=data["key_id"],
            legacy_signature=_b64decode(data["signature"], "signature", _SIGNATURE_SIZE),
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


def note_verifier_key(name: str, public_key: Ed25519PublicKey | bytes | str) -> str:
    """The signed-note verifier key string ``<name>+<hash hex>+<base64(0x01 || key)>``."""
    try:
        return Ed25519Verifier(name, load_public_key(public_key)).vkey
    except NoteError as exc:
        raise CheckpointError(str(exc)) from exc


def signed_note(
    text: bytes, name: str, public_key: Ed25519PublicKey | bytes | str, signature: bytes
) -> str:
    """A C2SP signed note of ``text`` carrying one Ed25519 ``signature`` over it."""
    if not text.endswith(b"\n"):
        raise CheckpointError("signed-note text must end with a newline")
    try:
        kid = note_key_id(name, ED25519, _raw_public(public_key))
    except NoteError as exc:
        raise CheckpointError(str(exc)) from exc
    return Note(text.decode("utf-8"), (NoteSignature(name, kid, signature),)).render()


# --------------------------------------------------------------------------- key history


@dataclass(frozen=True)
class LogKey:
    """A log public key and the checkpoint sizes it may sign (``first_size``..``last_size``,
    inclusive; ``last_size`` None: no end). ``name`` is the note key name (the origin);
    None accepts it for whatever origin the verifier is pinned to."""

    public_key: Ed25519PublicKey
    name: str | None = None
    first_size: int = 0
    last_size: int | None = None

    def covers(self, size: int) -> bool:
        return self.first_size <= size and (self.last_size is None or size <= self.last_size)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def note_verifier(self, origin: str) -> Ed25519Verifier:
        return Ed25519Verifier(self.name or origin, self.public_key)

    def validity(self) -> str:
        return f"sizes {self.first_size}..{'' if self.last_size is None else self.last_size}"

    def history_line(self, origin: str | None = None) -> str:
        """One line of a key history file: ``<vkey> <first size> <last size>``."""
        name = self.name or origin
        if name is None:
            raise CheckpointError("a key history line needs the key name (the log origin)")
        last = "-" if self.last_size is None else str(self.last_size)
        return f"{Ed25519Verifier(name, self.public_key).vkey} {self.first_size} {last}"


def parse_key_history(text: str) -> list[LogKey]:
    """A key history file: one retired log key per line, ``<vkey> <first size> <last size>``
    (the tree sizes of the checkpoints it signed, inclusive; '-' for no end). Blank lines
    and lines starting with '#' are ignored."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise CheckpointError(f"key history line {number}: expected '<vkey> <first size> <last size>'")
        try:
            verifier = verifier_from_vkey(parts[0], ED25519)
        except NoteError as exc:
            raise CheckpointError(f"key history line {number}: {exc}") from exc
        if not re.fullmatch(r"[0-9]+", parts[1]) or not re.fullmatch(r"[0-9]+|-", parts[2]):
            raise CheckpointError(f"key history line {number}: sizes are decimal numbers ('-' for no end)")
        first, last = int(parts[1]), None if parts[2] == "-" else int(parts[2])
        if last is not None and last < first:
            raise CheckpointError(f"key history line {number}: last size {last} is below first size {first}")
        keys.append(LogKey(verifier.public_key, verifier.name, first, last))
    return keys


# --------------------------------------------------------------------------- roles


class CheckpointSigner:
    """Held by the log operator only. Signs checkpoints as C2SP notes named by their origin."""

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str | None = None) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError("CheckpointSigner needs an Ed25519PrivateKey")
        if key_id is not None and (not isinstance(key_id, str) or not key_id):
            raise CheckpointError("key_id must be a non-empty string")
        self._key = private_key
        self.key_id = key_id or key_fingerprint(private_key.public_key())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, checkpoint: Checkpoint) -> SignedCheckpoint:
        if not isinstance(checkpoint, Checkpoint):
            raise CheckpointError("sign takes a Checkpoint")
        try:
            signer = Ed25519Signer(checkpoint.origin, self._key)
        except NoteError as exc:
            raise CheckpointError(f"origin cannot name a note key: {exc}") from exc
        return SignedCheckpoint(checkpoint, (signer.sign(checkpoint.body()),))


class CheckpointVerifier:
    """Held by anyone; needs only the operator's public key(s).

    ``public_key`` is the current key; ``history`` the retired ones (``parse_key_history``).
    The current key may sign sizes after the last retired key's range. ``key_id`` (a v1
    label, a ``key_fingerprint`` or a note key id in hex) pins the current key's label;
    ``origin`` pins the log so a checkpoint of another deployment, signed with a shared
    key, cannot be passed off as this one's.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey | bytes | str,
        key_id: str | None = None,
        *,
        origin: str | None = None,
        history: Sequence[LogKey] = (),
    ) -> None:
        first = max((k.last_size + 1 for k in history if k.last_size is not None), default=0)
        self.current = LogKey(load_public_key(public_key), None, first, None)
        self.keys = [self.current, *history]
        self.key_id = key_id
        self.origin = origin

    def verify(self, signed: SignedCheckpoint) -> LogKey:
        """Raise CheckpointError unless a known key, valid for this size, signed it; return that key."""
        if not isinstance(signed, SignedCheckpoint):
            raise CheckpointError("expected a SignedCheckpoint")
        cp = signed.checkpoint
        if self.origin is not None and cp.origin != self.origin:
            raise UnknownKeyError(f"checkpoint is for origin {cp.origin!r}, expected {self.origin!r}")
        key = self._legacy_key(signed) if signed.is_legacy else self._note_key(signed)
        if not key.covers(cp.tree_size):
            raise CheckpointError(
                f"checkpoint of size {cp.tree_size} is signed by key {key.fingerprint}, which may sign "
                f"only {key.validity()} (key history)"
            )
        return key

    def _legacy_key(self, signed: SignedCheckpoint) -> LogKey:
        cp, label = signed.checkpoint, signed.legacy_key_id or ""
        if self.key_id is not None and label != self.key_id and not any(
                k.fingerprint == label for k in self.keys if k is not self.current):
            raise UnknownKeyError(f"checkpoint signed by key {label!r}, expected {self.key_id!r}")
        named = [k for k in self.keys if k.fingerprint == label]
        # The v1 label is free text; an unmatched label still verifies against every known key.
        for key in named or self.keys:
            if key.name is not None and key.name != cp.origin:
                continue
            try:
                key.public_key.verify(signed.legacy_signature, cp.body())
                return key
            except InvalidSignature:
                continue
        if named or self.key_id is not None:
            raise CheckpointError(
                f"bad checkpoint signature (origin {cp.origin!r}, size {cp.tree_size}, key {label!r})")
        raise UnknownKeyError(
            f"checkpoint of size {cp.tree_size} (key {label!r}) is not signed by any known key")

    def _note_key(self, signed: SignedCheckpoint) -> LogKey:
        cp = signed.checkpoint
        text = cp.body()
        by_id = {}
        for key in self.keys:
            try:
                verifier = key.note_verifier(cp.origin)
            except NoteError as exc:
                raise CheckpointError(f"origin {cp.origin!r} cannot name a note key: {exc}") from exc
            by_id.setdefault((verifier.name, verifier.key_id), (key, verifier))
        for sig in signed.signatures:
            found = by_id.get(sig.key)
            if found is None:
                continue
            key, verifier = found
            if not verifier.verify(text, sig.signature):
                raise CheckpointError(
                    f"bad checkpoint signature (origin {cp.origin!r}, size {cp.tree_size}, "
                    f"key {sig.name}+{sig.key_id.hex()})")
            if self.key_id is not None and key is self.current and self.key_id not in (
                    key.fingerprint, sig.key_id.hex()):
                raise UnknownKeyError(f"checkpoint signed by key {sig.key_id.hex()}, expected {self.key_id!r}")
            return key
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signed.signatures) or "nobody"
        raise UnknownKeyError(
            f"checkpoint of size {cp.tree_size} is not signed by any known key (signed by {names})")
