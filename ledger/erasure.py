"""Erasing a subject: destroy the data key, record that it was destroyed.

The ledger never loses a byte: the ``Exchange`` events keep their sealed payloads and every
hash, checkpoint and proof stays valid. What goes is the subject's data key in
``xl_subject_keys`` (``SqlKeyStore.destroy``), which makes those payloads unreadable
(``SubjectErased``). A ``SubjectErasure`` event records which key generation was destroyed.

Order: the event is recorded first, then the key is destroyed. The event's id is derived
from (subject, key id), so re-running an interrupted erasure finds the event already
recorded and goes on to destroy the key; the two steps converge without a transaction
spanning both tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from ledger.domain import SubjectErasure, erasure_id
from ledger.privacy import SqlKeyStore
from ledger.subject_crypto import wrapped_key_id

__all__ = ["ErasureError", "ErasureResult", "erase_subject", "check_pseudonym", "check_reason"]

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
# The gate records requests about no person (aggregate statistics) under this subject
# (schemas.cpr.NO_SUBJECT; ledger/ imports nothing of ours).
_NO_SUBJECT = "0" * 64
_CPR_LIKE = re.compile(r"(?<!\d)\d{6}-?\d{4}(?!\d)")


class ErasureError(ValueError):
    pass


@dataclass(frozen=True)
class ErasureResult:
    subject: str
    erasure_id: UUID
    key_id: str
    recorded: bool  # False when an interrupted earlier run had recorded it already


def check_pseudonym(subject: str) -> str:
    if _CPR_LIKE.fullmatch(subject.strip()):
        raise ErasureError("that looks like a CPR number: give the subject's pseudonym, never the CPR number")
    if not _PSEUDONYM.fullmatch(subject):
        raise ErasureError("the pseudonym must be 64 lowercase hex characters (HMAC-SHA256 of the CPR number)")
    if subject == _NO_SUBJECT:
        raise ErasureError("64 zeros is the subject of requests about no person (aggregate statistics); "
                           "there is nobody to erase")
    return subject


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ErasureError("the reason must not be empty")
    if len(reason) > 500:
        raise ErasureError("the reason must be at most 500 characters")
    if _CPR_LIKE.search(reason):
        raise ErasureError("the reason must not contain a CPR number (it is recorded in the ledger forever)")
    return reason


def erase_subject(ledger: Any, subject: str, reason: str) -> ErasureResult:
    """Destroy ``subject``'s data key and record a ``SubjectErasure``.

    Raises ErasureError for bad input or when the subject has no key (never seen, or
    already erased).
    """
    check_pseudonym(subject)
    reason = check_reason(reason)
    keys = SqlKeyStore(ledger.tables)
    wrapped = keys.get(subject)
    if wrapped is None:
        raise ErasureError("the subject has no data key: it was never seen or is already erased")
    key_id = wrapped_key_id(wrapped).hex()
    recorded = True
    try:
        ledger.record([SubjectErasure(subject=subject, key_id=key_id, reason=reason)])
    except IntegrityError:
        recorded = False  # an interrupted earlier run recorded it; finish the job
    keys.destroy(subject)
    return ErasureResult(subject, erasure_id(subject, key_id), key_id, recorded)
