"""Per-subject encryption inside the immutable log: the key table and the sealer the gate and relay use.

The key table lives beside the events but outside them, so erasing a subject
really deletes its key while every stored event byte (and so every hash) stays.
"""

from __future__ import annotations

import base64

from ledger.subject_crypto import DecryptionError, SubjectCipher, SubjectErased, load_master_key
from ledger.tables import SideTables

__all__ = ["SqlKeyStore", "LedgerSealer", "SubjectErased", "DecryptionError"]


class SqlKeyStore:
    """The KeyStore protocol of ledger.subject_crypto on the ledger's own database."""

    def __init__(self, tables: SideTables):
        self.tables = tables

    def create(self, subject_id: str, wrapped: bytes) -> bytes:
        with self.tables.cursor() as c:
            c.execute(
                "INSERT INTO xl_subject_keys (subject, wrapped_key, destroyed) VALUES (?, ?, 0) "
                "ON CONFLICT (subject) DO NOTHING",
                (subject_id, wrapped),
            )
            c.execute("SELECT wrapped_key FROM xl_subject_keys WHERE subject = ?", (subject_id,))
            return bytes(c.fetchall()[0][0])

    def get(self, subject_id: str) -> bytes | None:
        row = self.tables.fetchone("SELECT wrapped_key FROM xl_subject_keys WHERE subject = ?", (subject_id,))
        return bytes(row[0]) if row else None

    def destroy(self, subject_id: str) -> None:
        with self.tables.cursor() as c:
            c.execute("DELETE FROM xl_subject_keys WHERE subject = ?", (subject_id,))


class LedgerSealer:
    """Seals bytes for one subject into a text field of an event, and opens them again."""

    def __init__(self, tables: SideTables, master_key: str | bytes):
        self.cipher = SubjectCipher(SqlKeyStore(tables), load_master_key(master_key))

    def seal(self, subject: str, data: bytes, aad: bytes = b"") -> str:
        return base64.b64encode(self.cipher.seal(subject, data, aad)).decode("ascii")

    def open(self, subject: str, sealed: str, aad: bytes = b"") -> bytes:
        return self.cipher.open(subject, base64.b64decode(sealed), aad)

    def erase(self, subject: str) -> None:
        self.cipher.erase(subject)
