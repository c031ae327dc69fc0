"""Per-subject encryption inside the immutable log: the key table and the sealer the gate and relay use.

The key table lives beside the events but outside them, so erasing a subject
really deletes its key while every stored event byte (and so every hash) stays.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from typing import Iterable, Iterator

from ledger.subject_crypto import DecryptionError, SubjectCipher, SubjectErased, load_master_key, new_wrapped_key
from ledger.tables import SideTables

__all__ = ["SqlKeyStore", "LedgerSealer", "SubjectErased", "DecryptionError"]

# Bound the statement size: SQLite allows 32766 parameters, but long IN lists plan slowly.
_CHUNK = 500


class SqlKeyStore:
    """The KeyStore protocol of ledger.subject_crypto on the ledger's own database."""

    def __init__(self, tables: SideTables):
        self.tables = tables

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        return self.create_many({subject_id: wrapped})[subject_id]

    def create_many(self, wrapped: dict[str, bytes]) -> dict[str, bytes]:
        """Stores a key for each subject that has none, in one transaction; returns every subject's stored key
        (a concurrent writer's key wins over ours, so all processes seal under the same one)."""
        if not wrapped:
            return {}
        with self.tables.cursor() as c:
            c.executemany(
                "INSERT INTO xl_subject_keys (subject, wrapped_key, destroyed) VALUES (?, ?, 0) "
                "ON CONFLICT (subject) DO NOTHING",
                list(wrapped.items()),
            )
            return self._select(c, list(wrapped))

    def get(self, subject_id: str) -> bytes | None:
        return self.get_many([subject_id]).get(subject_id)

    def get_many(self, subjects: Iterable[str]) -> dict[str, bytes]:
        with self.tables.cursor(commit=False) as c:
            return self._select(c, list(subjects))

    def destroy(self, subject_id: str) -> None:
        with self.tables.cursor() as c:
            c.execute("DELETE FROM xl_subject_keys WHERE subject = ?", (subject_id,))

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

    def __init__(self, store: SqlKeyStore, keys: dict[str, bytes], asked: set[str]):
        self._store, self._keys = store, keys
        self._absent = asked - keys.keys()  # asked for and not there: erased, or never sealed

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        self._absent.discard(subject_id)
        return self._keys.setdefault(subject_id, self._store.create(subject_id, wrapped))

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


class LedgerSealer:
    """Seals bytes for one subject into a text field of an event, and opens them again."""

    def __init__(self, tables: SideTables, master_key: str | bytes, *, _store=None):
        self._master = load_master_key(master_key)
        self._store = _store or SqlKeyStore(tables)
        self._tables = tables
        self.cipher = SubjectCipher(self._store, self._master)

    def seal(self, subject: str, data: bytes, aad: bytes = b"") -> str:
        return base64.b64encode(self.cipher.seal(subject, data, aad)).decode("ascii")

    def open(self, subject: str, sealed: str, aad: bytes = b"") -> bytes:
        return self.cipher.open(subject, base64.b64decode(sealed), aad)

    def erase(self, subject: str) -> None:
        self.cipher.erase(subject)

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
            keys.update(self._store.create_many({s: new_wrapped_key(self._master, s) for s in sorted(missing)}))
        yield LedgerSealer(self._tables, self._master, _store=_Prefetched(self._store, keys, wanted))

