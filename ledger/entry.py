"""The canonical bytes of one ledger entry: what a Merkle leaf commits to.

A leaf is ``SHA-256(0x00 || entry)`` (RFC 9162, see ``ledger.merkle.leaf_hash``) where
``entry`` is the stored event exactly as the event store holds it, length-prefixed so that
no two different events share an encoding::

    entry = u32(16)          || originator_id    (the aggregate UUID, 16 raw bytes)
         || u32(8)           || originator_version (unsigned 64-bit big-endian)
         || u32(len(topic))  || topic            (UTF-8, e.g. "ledger.domain:Exchange.Decided")
         || u32(len(state))  || state            (the stored event bytes, unchanged)

    u32(n) = n as an unsigned 32-bit big-endian integer

The notification id is deliberately *not* part of the entry: PostgreSQL's ids may have
gaps, and SQLite's are row ids. The leaf index is the tree's own counter (0, 1, 2, ... in
notification order); the side table ``xl_merkle_leaves(idx, notification_id)`` records which
stored row each leaf came from, and ``xledger verify`` checks that mapping as well.

This module needs nothing but the standard library, so an auditor can recompute a leaf
from an exported entry (``xledger proof inclusion --out``) without any of our code.
"""

from __future__ import annotations

import hashlib
import struct
from uuid import UUID

__all__ = ["encode_entry", "entry_leaf_hash", "ENTRY_HEAD"]

# u32(16) || oid || u32(8) || version || u32(len(topic))
ENTRY_HEAD = struct.Struct(">I16sIQI")
_U32 = struct.Struct(">I")
_LEAF_PREFIX = b"\x00"


def _oid_bytes(originator_id: UUID | bytes | str) -> bytes:
    if isinstance(originator_id, UUID):
        return originator_id.bytes
    if isinstance(originator_id, (bytes, bytearray, memoryview)):
        raw = bytes(originator_id)
        if len(raw) != 16:
            raise ValueError("originator_id must be 16 bytes")
        return raw
    return UUID(originator_id).bytes  # hex or hyphenated text


def encode_entry(originator_id: UUID | bytes | str, originator_version: int, topic: str | bytes,
                 state: bytes) -> bytes:
    """The canonical entry bytes (see the module docstring)."""
    t = topic.encode("utf-8") if isinstance(topic, str) else bytes(topic)
    s = bytes(state)
    return (ENTRY_HEAD.pack(16, _oid_bytes(originator_id), 8, int(originator_version), len(t))
            + t + _U32.pack(len(s)) + s)


def entry_leaf_hash(originator_id: UUID | bytes | str, originator_version: int,
                    topic: str | bytes, state: bytes) -> bytes:
    """SHA-256(0x00 || entry): the Merkle leaf hash of one stored event."""
    return hashlib.sha256(_LEAF_PREFIX + encode_entry(originator_id, originator_version, topic, state)).digest()
