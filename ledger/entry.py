"""The canonical bytes of one ledger entry: what a Merkle leaf commits to.

A leaf is ``SHA-256(0x00 || entry)`` (RFC 9162, see ``ledger.merkle.leaf_hash``) where
``entry`` is the stored event exactly as the event store holds it, length-prefixed so that
no two different events share an encoding::

    entry = u32(16)          || originator_id    (the aggregate UUID, 16 raw bytes)
         || u32(8)           || originator_version (unsigned 64-bit big-endian)
         || u32(len(topic))  || topic            (UTF-8, e.g. "ledger.domain:Exchange.RequestDecided")
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
from typing import Any, Callable, Iterable
from uuid import UUID

__all__ = ["encode_entry", "entry_leaf_hash", "leaf_hashes", "ENTRY_HEAD"]

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


def leaf_hashes(rows: Iterable[Any], oid_bytes: Callable[[Any], bytes]) -> list[bytes]:
    """``entry_leaf_hash`` of each stored event row ``(notification id, originator id, version,
    topic, state)``, as the integrator and the verifier read them, without a call of either per row.

    ``oid_bytes`` turns the driver's originator id into its 16 bytes (``bytes.fromhex`` for
    SQLite's hex text, ``bytes`` for PostgreSQL's ``uuid_send``). The state (most of an entry's
    bytes; ``bytes`` or a ``memoryview``) is fed to the hash as the driver gave it, not copied
    into the entry bytes first.
    """
    sha = hashlib.sha256
    # Per topic, the leaf prefix, ENTRY_HEAD, the topic and the state's length in one struct: one
    # pack per row instead of a pack, an encode and two concatenations. A few topics make a page.
    heads: dict[str, tuple[Callable[..., bytes], int, bytes]] = {}
    out: list[bytes] = []
    append = out.append
    for _nid, oid, version, topic, state in rows:
        try:
            pack, n, t = heads[topic]
        except KeyError:
            t = topic.encode("utf-8")
            n = len(t)
            pack = struct.Struct(">B" + ENTRY_HEAD.format.lstrip("<>!=@") + f"{n}sI").pack
            heads[topic] = pack, n, t
        h = sha(pack(0, 16, oid_bytes(oid), 8, version, n, t, len(state)))
        h.update(state)
        append(h.digest())
    return out
