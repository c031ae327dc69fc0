"""Crypto-shredding: personal data is sealed under a per-subject key that can be destroyed.

The ledger is append-only and hashed into a Merkle tree, so personal data cannot be deleted
from it. Instead every subject's data is encrypted under that subject's own AES-256-GCM data
key; erasure destroys the key. The ciphertext stays, its hashes still verify, and it can
never be read again.

Key wrapping: a data key is stored only wrapped under the deployment master key, with
AES-256-GCM whose associated data is the subject pseudonym and key id. We chose that over
RFC 3394 AES key wrap because the binding matters here: an operator who copies subject A's
wrapped key into subject B's row (to keep B readable after B's erasure, or to make B's new
data readable to whoever holds A's key) gets an authentication failure, whereas RFC 3394
would unwrap it happily. The cost is a random nonce per wrap; one wrap per subject key
stays far below GCM's 2**32 random-nonce limit per master key.

Formats (version byte first, so either can change without ambiguity)::

    wrapped key = 0x01 || key_id (16) || nonce (12) || GCM_master(data key, aad = context)
    sealed blob = 0x01 || key_id (16) || nonce (12) || GCM_data(plaintext, aad = context)

``key_id`` = 8 random bytes || first 8 bytes of HMAC-SHA256(master, subject || random):
the random half tells generations apart (a subject erased and seen again gets a new key),
the HMAC half lets ``open`` tell "this blob's key was destroyed" (``SubjectErased``) from
"this blob is not this subject's" (``DecryptionError``) without keeping tombstones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "SubjectCryptoError",
    "DecryptionError",
    "SubjectErased",
    "DataKey",
    "encrypt",
    "decrypt",
    "generate_master_key",
    "load_master_key",
    "wrap_key",
    "new_wrapped_key",
    "unwrap_key",
    "KeyStore",
    "InMemoryKeyStore",
    "SubjectCipher",
]

KEY_SIZE = 32
NONCE_SIZE = 12
KEY_ID_SIZE = 16
_TAG_SIZE = 16
_VERSION = b"\x01"
_WRAP_CONTEXT = b"exchange-ledger/subject-key/v1\x00"
_DATA_CONTEXT = b"exchange-ledger/subject-data/v1\x00"
_KEY_ID_CONTEXT = b"exchange-ledger/subject-key-id/v1\x00"


class SubjectCryptoError(Exception):
    """Base class for this module's errors."""


class DecryptionError(SubjectCryptoError):
    """Ciphertext, key or associated data do not match: tampering or misuse."""


class SubjectErased(SubjectCryptoError):
    """The subject's key was destroyed, so the data is gone by design."""


# --------------------------------------------------------------------------- primitives


@dataclass(frozen=True)
class DataKey:
    """A subject's AES-256-GCM key. The secret is left out of repr so it never hits a log."""

    key_id: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_SIZE:
            raise ValueError(f"key_id must be {KEY_ID_SIZE} bytes")
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_SIZE:
            raise ValueError(f"data key must be {KEY_SIZE} bytes")

    @classmethod
    def generate(cls, key_id: bytes | None = None) -> DataKey:
        return cls(key_id or os.urandom(KEY_ID_SIZE), AESGCM.generate_key(bit_length=256))


def _secret(key: DataKey | bytes) -> bytes:
    raw = key.secret if isinstance(key, DataKey) else key
    if not isinstance(raw, bytes) or len(raw) != KEY_SIZE:
        raise ValueError(f"AES-256-GCM needs a {KEY_SIZE}-byte key")
    return raw


def encrypt(key: DataKey | bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a fresh random 96-bit nonce: returns nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(_secret(key)).encrypt(nonce, bytes(plaintext), bytes(aad))


def decrypt(key: DataKey | bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of ``encrypt``; DecryptionError if anything was altered or the aad differs."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < NONCE_SIZE + _TAG_SIZE:
        raise DecryptionError("ciphertext is truncated")
    try:
        return AESGCM(_secret(key)).decrypt(bytes(blob[:NONCE_SIZE]), bytes(blob[NONCE_SIZE:]),
                                            bytes(aad))
    except InvalidTag:
        raise DecryptionError("authentication failed: wrong key, wrong aad or tampered data") from None


def _frame(*parts: bytes) -> bytes:
    # Length-prefix each part so that no two different tuples share an encoding.
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _subject_bytes(subject_id: str) -> bytes:
    if not isinstance(subject_id, str) or not subject_id:
        raise ValueError("subject_id must be a non-empty string (the subject pseudonym)")
    return subject_id.encode("utf-8")


# --------------------------------------------------------------------------- master key


def generate_master_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def load_master_key(text: str | bytes) -> bytes:
    """From raw 32 bytes or their standard base64 (e.g. an XLEDGER_* environment variable)."""
    if isinstance(text, bytes) and len(text) == KEY_SIZE:
        return text
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
        raise ValueError("master key must be 32 bytes or their base64") from exc
    if len(raw) != KEY_SIZE:
        raise ValueError(f"master key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def _key_id_tag(master_key: bytes, subject: bytes, random_half: bytes) -> bytes:
    return hmac.new(master_key, _KEY_ID_CONTEXT + _frame(subject, random_half),
                    hashlib.sha256).digest()[: KEY_ID_SIZE // 2]


def _new_key_id(master_key: bytes, subject: bytes) -> bytes:
    random_half = os.urandom(KEY_ID_SIZE // 2)
    return random_half + _key_id_tag(master_key, subject, random_half)


def _key_id_belongs_to(master_key: bytes, subject: bytes, key_id: bytes) -> bool:
    half = KEY_ID_SIZE // 2
    return hmac.compare_digest(key_id[half:], _key_id_tag(master_key, subject, key_id[:half]))


def wrap_key(master_key: bytes, subject_id: str, key: DataKey) -> bytes:
    subject = _subject_bytes(subject_id)
    nonce = os.urandom(NONCE_SIZE)
    aad = _WRAP_CONTEXT + _frame(_VERSION, key.key_id, subject)
    return _VERSION + key.key_id + nonce + AESGCM(_secret(master_key)).encrypt(
        nonce, key.secret, aad
    )


def new_wrapped_key(master_key: bytes, subject_id: str) -> bytes:
    """A fresh data key for the subject, wrapped under the master key, ready for the key store."""
    fresh = DataKey.generate(_new_key_id(master_key, _subject_bytes(subject_id)))
    return wrap_key(master_key, subject_id, fresh)


def unwrap_key(master_key: bytes, subject_id: str, wrapped: bytes) -> DataKey:
    subject = _subject_bytes(subject_id)
    head = 1 + KEY_ID_SIZE + NONCE_SIZE
    if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) != head + KEY_SIZE + _TAG_SIZE:
        raise DecryptionError("wrapped key has the wrong length")
    wrapped = bytes(wrapped)
    if wrapped[:1] != _VERSION:
        raise DecryptionError(f"unknown wrapped-key version {wrapped[0]}")
    key_id, nonce = wrapped[1 : 1 + KEY_ID_SIZE], wrapped[1 + KEY_ID_SIZE : head]
    aad = _WRAP_CONTEXT + _frame(_VERSION, key_id, subject)
    try:
        secret = AESGCM(_secret(master_key)).decrypt(nonce, wrapped[head:], aad)
    except InvalidTag:
        raise DecryptionError(
            "cannot unwrap data key: wrong master key, or the key store row was altered or "
            "belongs to another subject"
        ) from None
    return DataKey(key_id, secret)


# --------------------------------------------------------------------------- key store


@runtime_checkable
class KeyStore(Protocol):
    """Persistence for wrapped subject keys, keyed by subject pseudonym.

    It holds opaque wrapped bytes only (never a usable key) and needs no cryptography. It
    must live outside the immutable event store, since ``destroy`` must really delete.

    * ``create(subject_id, wrapped)``: store ``wrapped`` unless the subject already has a
      key; return the wrapped key now stored. Idempotent and race-safe, e.g.
      ``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT``.
    * ``get(subject_id)``: the stored wrapped key, or None (never created, or destroyed).
    * ``destroy(subject_id)``: delete it; a no-op if absent. A later ``create`` may store a
      new key for the same subject; data sealed under the old key stays unreadable.
    """

    def create(self, subject_id: str, wrapped: bytes) -> bytes: ...

    def get(self, subject_id: str) -> bytes | None: ...

    def destroy(self, subject_id: str) -> None: ...


class InMemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        with self._lock:
            return self._keys.setdefault(subject_id, bytes(wrapped))

    def get(self, subject_id: str) -> bytes | None:
        with self._lock:
            return self._keys.get(subject_id)

    def destroy(self, subject_id: str) -> None:
        with self._lock:
            self._keys.pop(subject_id, None)


# --------------------------------------------------------------------------- subject cipher


class SubjectCipher:
    """Seals and opens one subject's data; ``erase`` shreds it."""

    def __init__(self, keystore: KeyStore, master_key: bytes) -> None:
        self._store = keystore
        self._master = load_master_key(master_key)

    def data_key(self, subject_id: str) -> DataKey:
        """The subject's current key, created (and stored wrapped) on first use."""
        _subject_bytes(subject_id)
        wrapped = self._store.get(subject_id)
        if wrapped is None:
            wrapped = self._store.create(subject_id, new_wrapped_key(self._master, subject_id))
        return unwrap_key(self._master, subject_id, wrapped)

    def seal(self, subject_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt under the subject's key. ``aad`` should name where the blob lives (event
        id, field), so a blob cannot be moved to another record unnoticed."""
        key = self.data_key(subject_id)
        header = _VERSION + key.key_id
        return header + encrypt(key, plaintext, self._aad(header, subject_id, aad))

    def open(self, subject_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt; SubjectErased if the subject's key was destroyed, DecryptionError if the
        blob, the aad or the subject do not match."""
        subject = _subject_bytes(subject_id)
        head = 1 + KEY_ID_SIZE
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < head + NONCE_SIZE + _TAG_SIZE:
            raise DecryptionError("sealed blob is truncated")
        blob = bytes(blob)
        if blob[:1] != _VERSION:
            raise DecryptionError(f"unknown sealed-blob version {blob[0]}")
        key_id = blob[1:head]
        if not _key_id_belongs_to(self._master, subject, key_id):
            raise DecryptionError("sealed blob was not made for this subject")
        wrapped = self._store.get(subject_id)
        if wrapped is None:
            raise SubjectErased("the subject's data key has been destroyed")
        key = unwrap_key(self._master, subject_id, wrapped)
        if not hmac.compare_digest(key.key_id, key_id):
            raise SubjectErased("the data key this blob was sealed under has been destroyed")
        return decrypt(key, blob[head:], self._aad(blob[:head], subject_id, aad))

    def erase(self, subject_id: str) -> None:
        """Crypto-shred: every blob sealed for this subject so far becomes unreadable."""
        _subject_bytes(subject_id)
        self._store.destroy(subject_id)

    @staticmethod
    def _aad(header: bytes, subject_id: str, aad: bytes) -> bytes:
        return _DATA_CONTEXT + _frame(header, _subject_bytes(subject_id), bytes(aad))
