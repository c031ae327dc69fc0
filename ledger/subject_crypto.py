"""Crypto-shredding: personal data is sealed under a per-subject key that can be destroyed.

The ledger is append-only and hashed into a Merkle tree, so personal data cannot be deleted
from it. Instead every subject's data is encrypted under that subject's own AES-256-GCM data
key; erasure destroys the key. The ciphertext stays, its hashes still verify, and it can
never be read again.

Key wrapping: a data key is stored only wrapped under a deployment master key, with
AES-256-GCM whose associated data is the subject pseudonym, the key id and the master key id. We chose that over
RFC 3394 AES key wrap because the binding matters here: an operator who copies subject A's
wrapped key into subject B's row (to keep B readable after B's erasure, or to make B's new
data readable to whoever holds A's key) gets an authentication failure, whereas RFC 3394
would unwrap it happily. The cost is a random nonce per wrap; one wrap per subject key
stays far below GCM's 2**32 random-nonce limit per master key.

Formats (version byte first, so either can change without ambiguity)::

    wrapped key = 0x02 || master_id (8) || key_id (16) || nonce (12) || GCM_master(data key, aad = context)
                  (0x01 || key_id (16) || nonce (12) || ...: written before master-key rotation; still read)
    sealed blob = 0x01 || key_id (16) || nonce (12) || GCM_data(plaintext, aad = context)

Master keys rotate (``MasterKeyRing``; ``ledger.rotation``): a wrapped key names the master key
that wrapped it, so a process holding several picks the right one, and re-wrapping a data key
under a new master changes nothing sealed under the data key.

``key_id`` = 8 random bytes || first 8 bytes of HMAC-SHA256(master, subject || random):
the random half tells generations apart (a subject erased and seen again gets a new key),
the HMAC half lets ``open`` tell "this blob's key was destroyed" (``SubjectErased``) from
"this blob is not this subject's" (``DecryptionError``) without keeping tombstones. The HMAC is
under the master key current when the data key was made; once that master key has been rotated
away, ``SubjectCipher`` asks its ``erased`` callback (the ledger's erasure records) instead.
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
from typing import Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

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
    "KeyMemo",
    "CachingCipher",
    "MasterKeyRing",
    "MasterKeyUnavailable",
    "load_master_keys",
    "master_key_id",
    "wrapped_key_id",
    "wrapped_master_id",
    "rewrap_key",
]

KEY_SIZE = 32
NONCE_SIZE = 12
KEY_ID_SIZE = 16
MASTER_ID_SIZE = 8
_TAG_SIZE = 16
_VERSION = b"\x01"
_WRAP_V2 = b"\x02"
_MASTER_ID_CONTEXT = b"exchange-ledger/master-key-id/v1\x00"
_WRAP_CONTEXT = b"exchange-ledger/subject-key/v1\x00"
_DATA_CONTEXT = b"exchange-ledger/subject-data/v1\x00"
_KEY_ID_CONTEXT = b"exchange-ledger/subject-key-id/v1\x00"


class SubjectCryptoError(Exception):
    """Base class for this module's errors."""


class DecryptionError(SubjectCryptoError):
    """Ciphertext, key or associated data do not match: tampering or misuse."""


class SubjectErased(SubjectCryptoError):
    """The subject's key was destroyed, so the data is gone by design."""


class MasterKeyUnavailable(DecryptionError):
    """The master key a data key is wrapped under (or must be wrapped under) is not configured here.

    Not tampering but configuration: during a master-key rotation a process that lacks the new
    key waits for it (the gate and the relay treat this like an unavailable ledger).
    """

    def __init__(self, master_id: str, known: Iterable[str]):
        self.master_id = master_id
        super().__init__(f"master key {master_id} is not configured here (XLEDGER_MASTER_KEY holds "
                         f"{', '.join(known) or 'none'})")


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
    return _encrypt_with(AESGCM(_secret(key)), plaintext, aad)


def decrypt(key: DataKey | bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of ``encrypt``; DecryptionError if anything was altered or the aad differs."""
    return _decrypt_with(AESGCM(_secret(key)), blob, aad)


def _encrypt_with(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, bytes(plaintext), bytes(aad))


def _decrypt_with(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < NONCE_SIZE + _TAG_SIZE:
        raise DecryptionError("ciphertext is truncated")
    try:
        return aead.decrypt(bytes(blob[:NONCE_SIZE]), bytes(blob[NONCE_SIZE:]), bytes(aad))
    except InvalidTag:
        raise DecryptionError("authentication failed: wrong key, wrong aad or tampered data") from None


_LENGTH = struct.Struct(">I")


def _frame(*parts: bytes) -> bytes:
    # Length-prefix each part so that no two different tuples share an encoding.
    return b"".join([_LENGTH.pack(len(p)) + p for p in parts])


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


def master_key_id(master_key: bytes) -> str:
    """A master key's public name: 16 hex digits of a hash of it (never enough to recover it)."""
    return hashlib.sha256(_MASTER_ID_CONTEXT + _secret(master_key)).hexdigest()[: 2 * MASTER_ID_SIZE]


class MasterKeyRing:
    """The master keys a process holds, by id. ``current`` wraps new data keys.

    Unless told otherwise (``using``), the first key configured is current: a deployment lists
    a new key after the old one, and ``ledger.rotation`` switches the ledger over to it.
    """

    def __init__(self, keys: Sequence[bytes], current: str | None = None):
        if not keys:
            raise ValueError("at least one master key is needed")
        self._keys: dict[str, bytes] = {}
        for key in keys:
            self._keys.setdefault(master_key_id(key), _secret(key))
        self.current_id = current or next(iter(self._keys))
        if self.current_id not in self._keys:
            raise MasterKeyUnavailable(self.current_id, self._keys)

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    @property
    def current(self) -> bytes:
        return self._keys[self.current_id]

    def get(self, master_id: str) -> bytes:
        try:
            return self._keys[master_id]
        except KeyError:
            raise MasterKeyUnavailable(master_id, self._keys) from None

    def using(self, master_id: str | None) -> "MasterKeyRing":
        """The same keys with ``master_id`` current (None: unchanged)."""
        if master_id is None or master_id == self.current_id:
            return self
        self.get(master_id)
        return MasterKeyRing(list(self._keys.values()), master_id)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys.values())

    def __contains__(self, master_id: object) -> bool:
        return master_id in self._keys


def load_master_keys(value: "str | bytes | MasterKeyRing") -> MasterKeyRing:
    """A ring from one key (raw or base64), or several base64 keys separated by commas."""
    if isinstance(value, MasterKeyRing):
        return value
    if isinstance(value, bytes) and len(value) == KEY_SIZE:
        return MasterKeyRing([value])
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise ValueError("master key must be 32 bytes or their base64")
    entries = [e.strip() for e in value.split(",")]
    keys = []
    for i, entry in enumerate(entries, 1):
        try:
            keys.append(load_master_key(entry))
        except ValueError as exc:
            where = f"master key {i} of {len(entries)}" if len(entries) > 1 else "master key"
            raise ValueError(f"{where}: {exc}") from None
    if len(set(keys)) != len(keys):
        raise ValueError("the same master key is listed twice")
    return MasterKeyRing(keys)


def _key_id_tag(master_key: bytes, subject: bytes, random_half: bytes) -> bytes:
    return hmac.new(master_key, _KEY_ID_CONTEXT + _frame(subject, random_half),
                    hashlib.sha256).digest()[: KEY_ID_SIZE // 2]


def _new_key_id(master_key: bytes, subject: bytes) -> bytes:
    random_half = os.urandom(KEY_ID_SIZE // 2)
    return random_half + _key_id_tag(master_key, subject, random_half)


def _key_id_belongs_to(master_key: bytes, subject: bytes, key_id: bytes) -> bool:
    half = KEY_ID_SIZE // 2
    return hmac.compare_digest(key_id[half:], _key_id_tag(master_key, subject, key_id[:half]))


def _ring(master: "bytes | str | MasterKeyRing") -> MasterKeyRing:
    return master if isinstance(master, MasterKeyRing) else load_master_keys(master)


def wrap_key(master_key: bytes, subject_id: str, key: DataKey) -> bytes:
    subject = _subject_bytes(subject_id)
    master_id = bytes.fromhex(master_key_id(master_key))
    nonce = os.urandom(NONCE_SIZE)
    aad = _WRAP_CONTEXT + _frame(_WRAP_V2, master_id, key.key_id, subject)
    return _WRAP_V2 + master_id + key.key_id + nonce + AESGCM(_secret(master_key)).encrypt(
        nonce, key.secret, aad
    )


def new_wrapped_key(master_key: bytes, subject_id: str) -> bytes:
    """A fresh data key for the subject, wrapped under the master key, ready for the key store."""
    fresh = DataKey.generate(_new_key_id(master_key, _subject_bytes(subject_id)))
    return wrap_key(master_key, subject_id, fresh)


_V1_LEN = 1 + KEY_ID_SIZE + NONCE_SIZE + KEY_SIZE + _TAG_SIZE
_V2_LEN = _V1_LEN + MASTER_ID_SIZE


def _parse_wrapped(wrapped: bytes) -> tuple[bytes, str | None, bytes, bytes, bytes]:
    """(version, master id or None, key id, nonce, ciphertext) of a wrapped key."""
    if not isinstance(wrapped, (bytes, bytearray)) or not wrapped:
        raise DecryptionError("wrapped key has the wrong length")
    wrapped = bytes(wrapped)
    version = wrapped[:1]
    if version == _VERSION and len(wrapped) == _V1_LEN:
        master_id, rest = None, wrapped[1:]
    elif version == _WRAP_V2 and len(wrapped) == _V2_LEN:
        master_id, rest = wrapped[1 : 1 + MASTER_ID_SIZE].hex(), wrapped[1 + MASTER_ID_SIZE :]
    elif version in (_VERSION, _WRAP_V2):
        raise DecryptionError("wrapped key has the wrong length")
    else:
        raise DecryptionError(f"unknown wrapped-key version {wrapped[0]}")
    return version, master_id, rest[:KEY_ID_SIZE], rest[KEY_ID_SIZE : KEY_ID_SIZE + NONCE_SIZE], \
        rest[KEY_ID_SIZE + NONCE_SIZE :]


def wrapped_key_id(wrapped: bytes) -> bytes:
    """The data key id inside a wrapped key (either format), without unwrapping it."""
    return _parse_wrapped(wrapped)[2]


def wrapped_master_id(wrapped: bytes) -> str | None:
    """Which master key wrapped this key; None for the format written before rotation existed."""
    return _parse_wrapped(wrapped)[1]


def unwrap_key(master: "bytes | str | MasterKeyRing", subject_id: str, wrapped: bytes) -> DataKey:
    subject = _subject_bytes(subject_id)
    ring = _ring(master)
    version, master_id, key_id, nonce, sealed = _parse_wrapped(wrapped)
    if master_id is None:
        # Written before master keys had ids: any key of the ring may have wrapped it.
        aad = _WRAP_CONTEXT + _frame(_VERSION, key_id, subject)
        candidates = list(ring)
    else:
        aad = _WRAP_CONTEXT + _frame(_WRAP_V2, bytes.fromhex(master_id), key_id, subject)
        candidates = [ring.get(master_id)]
    for candidate in candidates:
        try:
            return DataKey(key_id, AESGCM(candidate).decrypt(nonce, sealed, aad))
        except InvalidTag:
            continue
    raise DecryptionError(
        "cannot unwrap data key: wrong master key, or the key store row was altered or "
        "belongs to another subject"
    )


def rewrap_key(master: "bytes | str | MasterKeyRing", subject_id: str, wrapped: bytes, target: bytes) -> bytes:
    """The same data key (same id, same secret) wrapped under ``target``: sealed data stays readable."""
    return wrap_key(target, subject_id, unwrap_key(master, subject_id, wrapped))


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
    """Seals and opens one subject's data; ``erase`` shreds it.

    ``erased(subject, key_id)`` answers, for a data key whose id can no longer be checked
    (it was made under a master key rotated away since), whether that key generation was
    erased; without it such a blob counts as not this subject's.
    """

    def __init__(self, keystore: KeyStore, master_key: "bytes | str | MasterKeyRing",
                 erased: Callable[[str, bytes], bool] | None = None) -> None:
        self._store = keystore
        self.ring = _ring(master_key)
        self._erased = erased

    def data_key(self, subject_id: str) -> DataKey:
        """The subject's current key, created (and stored wrapped) on first use."""
        _subject_bytes(subject_id)
        wrapped = self._store.get(subject_id)
        if wrapped is None:
            wrapped = self._store.create(subject_id, new_wrapped_key(self.ring.current, subject_id))
        return self._unwrap(subject_id, wrapped)

    def seal(self, subject_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt under the subject's key. ``aad`` should name where the blob lives (event
        id, field), so a blob cannot be moved to another record unnoticed."""
        key = self.data_key(subject_id)
        header = _VERSION + key.key_id
        return header + _encrypt_with(self._aead(key), plaintext, self._aad(header, subject_id, aad))

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
        wrapped = self._store.get(subject_id)
        if wrapped is not None and hmac.compare_digest(wrapped_key_id(wrapped), key_id):
            # The subject's live key: the data aad binds the subject, so a foreign blob fails here.
            key = self._unwrap(subject_id, wrapped)
            return _decrypt_with(self._aead(key), blob[head:], self._aad(blob[:head], subject_id, aad))
        if not any(_key_id_belongs_to(m, subject, key_id) for m in self.ring) and not (
                self._erased is not None and self._erased(subject_id, key_id)):
            raise DecryptionError("sealed blob was not made for this subject")
        if wrapped is None:
            raise SubjectErased("the subject's data key has been destroyed")
        raise SubjectErased("the data key this blob was sealed under has been destroyed")

    def _unwrap(self, subject_id: str, wrapped: bytes) -> DataKey:
        # A method so that a read-only pass over many blobs (services.audit) or one batch of the
        # gate (ledger.privacy) can keep what it unwrapped for the wrapped bytes it was given; the
        # wrapped key is still read every time.
        return unwrap_key(self.ring, subject_id, wrapped)

    def _aead(self, key: DataKey) -> AESGCM:
        # A method for the same callers: building an AESGCM object (key schedule) costs about as
        # much as opening one message, so a batch or a pass keeps one per data key it unwrapped
        # (CachingCipher) and forgets it with the key.
        return AESGCM(_secret(key))

    def erase(self, subject_id: str) -> None:
        """Crypto-shred: every blob sealed for this subject so far becomes unreadable."""
        _subject_bytes(subject_id)
        self._store.destroy(subject_id)

    @staticmethod
    def _aad(header: bytes, subject_id: str, aad: bytes) -> bytes:
        return _DATA_CONTEXT + _frame(header, _subject_bytes(subject_id), bytes(aad))


class KeyMemo:
    """Data keys unwrapped, and their AES-GCM objects, kept for one batch (ledger.privacy) or one
    read-only pass (services.audit) and cleared at its end. Past ``limit`` keys (~100 bytes each,
    their AES-GCM objects beside) it starts again, so a pass over millions of subjects stays bounded."""

    def __init__(self, limit: int = 50_000) -> None:
        self.keys: dict[tuple[str, bytes], DataKey] = {}
        self.aeads: dict[DataKey, AESGCM] = {}
        # By (subject, wrapped key): what sealing under that key repeats for every message (the
        # blob's header, the AES-GCM object, the data aad up to the caller's part).
        self.sealing: dict[tuple[str, bytes], tuple[bytes, AESGCM, bytes]] = {}
        self.limit = limit

    def clear(self) -> None:
        self.keys.clear()
        self.aeads.clear()
        self.sealing.clear()


class CachingCipher(SubjectCipher):
    """A cipher that unwraps a data key once, by subject and wrapped bytes, and builds its AES-GCM
    object once, into ``memo`` (which callers may share between ciphers of one pass). The wrapped
    key is still read from the store for every message, so a subject erased meanwhile (no wrapped
    key, or another one) is never opened with what the memo holds."""

    def __init__(self, keystore: KeyStore, master_key: "bytes | str | MasterKeyRing",
                 erased: Callable[[str, bytes], bool] | None = None, memo: KeyMemo | None = None) -> None:
        super().__init__(keystore, master_key, erased)
        self.memo = KeyMemo() if memo is None else memo

    def _unwrap(self, subject_id: str, wrapped: bytes) -> DataKey:
        memo, k = self.memo, (subject_id, bytes(wrapped))
        key = memo.keys.get(k)
        if key is None:
            if len(memo.keys) >= memo.limit:
                memo.clear()
            key = memo.keys[k] = super()._unwrap(subject_id, wrapped)
        return key

    def _aead(self, key: DataKey) -> AESGCM:
        aead = self.memo.aeads.get(key)
        if aead is None:
            aead = self.memo.aeads[key] = super()._aead(key)
        return aead

    def seal(self, subject_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """``SubjectCipher.seal``, the same blob, with what only depends on the data key derived once
        per key: the gate seals every message of a batch this way (a citizen's several messages, and
        in the benchmark 28 subjects in 5000 messages). The wrapped key is still read for every
        message, so a key erased or replaced meanwhile is never used; a subject without one, or not a
        subject at all, takes ``SubjectCipher.seal`` (which makes the key, or names the error)."""
        wrapped = self._store.get(subject_id) if isinstance(subject_id, str) and subject_id else None
        if wrapped is None:
            return super().seal(subject_id, plaintext, aad)
        k = (subject_id, bytes(wrapped))
        known = self.memo.sealing.get(k)
        if known is None:
            key = self._unwrap(subject_id, wrapped)
            header = _VERSION + key.key_id
            # _aad(header, subject, aad) is this prefix followed by _frame(aad), written out: one part.
            prefix = _DATA_CONTEXT + _frame(header, _subject_bytes(subject_id))
            known = self.memo.sealing[k] = (header, self._aead(key), prefix)
        header, aead, prefix = known
        aad = bytes(aad)
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + aead.encrypt(nonce, bytes(plaintext), prefix + _LENGTH.pack(len(aad)) + aad)

    def forget(self) -> None:
        self.memo.clear()
