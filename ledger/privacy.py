"""Per-subject encryption inside the immutable log: the key table and the sealer the gate and relay use.

The key table lives beside the events but outside them, so erasing a subject
really deletes its key while every stored event byte (and so every hash) stays.

Master keys rotate (``ledger.rotation``): each row names the master key that wrapped it,
and the one-row table ``xl_master_key_target`` names the master key new rows must be
wrapped under once a rotation has started. A writer reads that row in the same
transaction as its insert (``FOR SHARE`` on PostgreSQL), so no row wrapped under a
retiring key can slip in after a rotation has swept the table.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from ledger.subject_crypto import (
    CachingCipher,
    DecryptionError,
    MasterKeyRing,
    MasterKeyUnavailable,
    SubjectCipher,
    SubjectErased,
    load_master_keys,
    new_wrapped_key,
    wrapped_master_id,
)
from ledger.tables import SideTables

__all__ = ["SqlKeyStore", "LedgerSealer", "SubjectErased", "DecryptionError", "MasterKeyUnavailable",
           "TargetChanged"]

# Bound the statement size: SQLite allows 32766 parameters, but long IN lists plan slowly.
_CHUNK = 500


class TargetChanged(Exception):
    """New keys were wrapped under a master key other than the ledger's rotation target."""

    def __init__(self, target: str):
        super().__init__(f"new data keys must be wrapped under master key {target}")
        self.target = target


class SqlKeyStore:
    """The KeyStore protocol of ledger.subject_crypto on the ledger's own database."""

    def __init__(self, tables: SideTables):
        self.tables = tables

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        return self.create_many({subject_id: wrapped})[subject_id]

    def create_many(self, wrapped: dict[str, bytes]) -> dict[str, bytes]:
        """Stores a key for each subject that has none, in one transaction; returns every subject's stored key
        (a concurrent writer's key wins over ours, so all processes seal under the same one).

        Raises TargetChanged (nothing stored) when a rotation target is recorded and the new keys are
        wrapped under another master key.
        """
        if not wrapped:
            return {}
        with self.tables.cursor() as c:
            # Insert first, check the target after (raising rolls the insert back). On SQLite a
            # transaction that reads before it writes fails at once with "database is locked" when
            # another process committed in between (the relay, another gate), instead of waiting
            # for the write lock; the gate then retried its whole batch. On PostgreSQL the order is
            # as safe: the target row is read FOR SHARE before the commit either way.
            c.executemany(
                "INSERT INTO xl_subject_keys (subject, wrapped_key, destroyed, master_key_id) VALUES (?, ?, 0, ?) "
                "ON CONFLICT (subject) DO NOTHING",
                [(s, w, wrapped_master_id(w)) for s, w in wrapped.items()],
            )
            target = self._target(c, lock=True)
            if target is not None and any(wrapped_master_id(w) != target for w in wrapped.values()):
                raise TargetChanged(target)
            return self._select(c, list(wrapped))

    def get(self, subject_id: str) -> bytes | None:
        return self.get_many([subject_id]).get(subject_id)

    def get_many(self, subjects: Iterable[str]) -> dict[str, bytes]:
        with self.tables.cursor(commit=False) as c:
            return self._select(c, list(subjects))

    def destroy(self, subject_id: str) -> None:
        with self.tables.cursor() as c:
            c.execute("DELETE FROM xl_subject_keys WHERE subject = ?", (subject_id,))

    def target(self) -> str | None:
        """The master key id new keys must be wrapped under, if a rotation has named one."""
        with self.tables.cursor(commit=False) as c:
            return self._target(c)

    def _target(self, c, *, lock: bool = False) -> str | None:
        # FOR SHARE: a rotation switching the target waits for this transaction (ledger.rotation).
        lock_clause = " FOR SHARE" if lock and self.tables.is_postgres else ""
        c.execute("SELECT master_key_id FROM xl_master_key_target WHERE id = 1" + lock_clause)
        rows = c.fetchall()
        return (rows[0][0] or None) if rows else None

    @staticmethod
    def _select(c, subjects: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for i in range(0, len(subjects), _CHUNK):
            chunk = subjects[i : i + _CHUNK]
            c.execute(f"SELECT subject, wrapped_key FROM xl_subject_keys WHERE subject IN ({','.join('?' * len(chunk))})",
                      chunk)
            found.update((s, bytes(k)) for s, k in c.fetchall())
        return found


class _Prefetched:
    """A KeyStore view holding one batch's wrapped keys, read in one query; other subjects go to the store."""

    def __init__(self, sealer: "LedgerSealer", keys: dict[str, bytes], asked: set[str]):
        self._sealer, self._store, self._keys = sealer, sealer._store, keys
        self._absent = asked - keys.keys()  # asked for and not there: erased, or never sealed

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        self._absent.discard(subject_id)
        if subject_id not in self._keys:
            self._keys.update(self._sealer._create([subject_id]))
        return self._keys[subject_id]

    def get(self, subject_id: str) -> bytes | None:
        if subject_id in self._keys:
            return self._keys[subject_id]
        if subject_id in self._absent:
            return None
        return self._store.get(subject_id)

    def destroy(self, subject_id: str) -> None:
        self._keys.pop(subject_id, None)
        self._absent.add(subject_id)
        self._store.destroy(subject_id)


class _Creating:
    """The SqlKeyStore as the cipher sees it: creation goes through the sealer, which honours the target."""

    def __init__(self, sealer: "LedgerSealer"):
        self._sealer, self._store = sealer, sealer._store

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        return self._sealer._create([subject_id])[subject_id]

    def get(self, subject_id: str) -> bytes | None:
        return self._store.get(subject_id)

    def destroy(self, subject_id: str) -> None:
        self._store.destroy(subject_id)


class LedgerSealer:
    """Seals bytes for one subject into a text field of an event, and opens them again.

    ``master_key`` is one key or a ring (``XLEDGER_MASTER_KEY``: base64 keys, comma-separated).
    ``erased(subject, key_id)`` tells whether the ledger recorded the erasure of a key generation
    (``Ledger.erased_key``); it decides for blobs whose key id a rotated-away master key made.
    """

    def __init__(self, tables: SideTables, master_key: str | bytes | MasterKeyRing, *,
                 erased: Callable[[str, bytes], bool] | None = None, _store=None):
        self.ring = load_master_keys(master_key)
        self._store = _store or SqlKeyStore(tables)
        self._tables = tables
        self._erased = erased
        # The master key new keys go under: the ring's current one until the ledger says otherwise
        # (create_many checks it in its transaction, so a stale guess costs one retry, never a wrong row).
        self._wrap_under: str | None = None
        self.cipher = SubjectCipher(_Creating(self), self.ring, erased)

    @classmethod
    def for_ledger(cls, ledger, master_key: str | bytes | MasterKeyRing) -> "LedgerSealer":
        return cls(ledger.tables, master_key, erased=ledger.erased_key)

    def seal(self, subject: str, data: bytes, aad: bytes = b"") -> str:
        return base64.b64encode(self.cipher.seal(subject, data, aad)).decode("ascii")

    def open(self, subject: str, sealed: str, aad: bytes = b"") -> bytes:
        return self.cipher.open(subject, base64.b64decode(sealed), aad)

    def erase(self, subject: str) -> None:
        self.cipher.erase(subject)

    def _create(self, subjects: list[str]) -> dict[str, bytes]:
        """Stores new keys for these subjects under the ledger's target master key; returns the stored keys."""
        for _ in range(3):
            ring = self.ring.using(self._wrap_under)
            try:
                return self._store.create_many({s: new_wrapped_key(ring.current, s) for s in sorted(subjects)})
            except TargetChanged as changed:  # a rotation names another master key
                self._wrap_under = changed.target
        raise MasterKeyUnavailable(self._wrap_under or self.ring.current_id, self.ring.ids)

    @contextmanager
    def batch(self, subjects: Iterable[str], *, create: bool = True) -> Iterator[LedgerSealer]:
        """A sealer for one batch: the subjects' keys are read (and, with ``create``, the missing ones
        made) in one transaction instead of one per message.

        The keys are held only for the block, never across batches, so a subject erased by
        another process is seen as erased by the very next batch. An empty or non-text
        pseudonym is left to the per-message path, which names the error.
        """
        wanted = {s for s in subjects if isinstance(s, str) and s}
        keys = self._store.get_many(wanted)
        missing = wanted - keys.keys()
        if create and missing:
            keys.update(self._create(list(missing)))
        view = LedgerSealer.__new__(LedgerSealer)
        view.__dict__.update(self.__dict__)
        # A subject's data key is unwrapped and its AES-GCM object built once for the batch (a citizen's
        # several messages in one poll); the wrapped key is still looked up for every message, so one
        # erased within the batch is not used.
        view.cipher = cipher = CachingCipher(_Prefetched(self, keys, wanted), self.ring, self._erased)
        try:
            yield view
        finally:
            # No unwrapped data key outlives its batch, even if the view is kept (the batch's own
            # cipher: a caller may have put another in the view, as services.audit does).
            cipher.forget()
