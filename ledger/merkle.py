"""Append-only Merkle tree with RFC 9162 (Certificate Transparency v2) §2.1 hashing.

Three roles, kept apart as in Trillian:

* the *store* (``NodeStore``) persists hashes of complete subtrees and nothing else;
* the *log* (``MerkleLog``) appends leaves and produces roots and proofs from the store;
* the *verifier* (``verify_inclusion`` / ``verify_consistency``) needs only hashes and sizes,
  so an auditor can run it without any access to the store or trust in the operator.

Node addressing: node ``(level, index)`` is the root of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``. Level 0 holds the leaf hashes. Only
*complete* subtrees are stored; once written such a node never changes, which is what makes
the tree append-only. Hashes of incomplete right edges (needed by the RFC's
largest-power-of-two split) are recomputed from at most ``log2(n)`` complete nodes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "MerkleError",
    "NodeStore",
    "InMemoryNodeStore",
    "MerkleLog",
    "leaf_hash",
    "node_hash",
    "verify_inclusion",
    "verify_consistency",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: MTH({}) = HASH().
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Domain separation prefixes (RFC 9162 §2.1.1) stop a leaf from being passed off as an
# interior node (second-preimage attack on the tree).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(Exception):
    """Misuse of a MerkleLog, or a store that is missing a node it should hold."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    # bool is an int subclass; True must not be accepted as tree size 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------- store


@runtime_checkable
class NodeStore(Protocol):
    """Persistence for the complete-subtree hashes of one append-only tree.

    Contract (the SQL implementation must keep it):

    * ``get(level, index)`` returns the 32-byte hash of node ``(level, index)`` or ``None``.
    * ``put(level, index, h)`` stores it. ``MerkleLog`` only ever puts complete nodes, each
      once; a store should refuse to *change* an existing node (a primary key on
      ``(level, index)`` does that), because a changed node means a rewritten history.
    * ``size()`` is the number of leaves, i.e. of level-0 nodes. It must only grow.
    * One ``MerkleLog.append``/``append_many`` call issues a leaf put followed by the puts of
      every parent it completes; run it inside one transaction so that a crash never leaves
      a leaf without its parents (which a later append would otherwise read as missing).
    * Optionally ``get_many(coords)``: the nodes of a list of ``(level, index)`` that exist,
      as a dict. Roots and proofs know every node they need before reading any, so a store
      that offers it (one database query instead of one per node) is read once per call.
    * Optionally ``put_many(nodes)``: the ``(level, index, hash)`` of one ``append_many``, in
      the order ``put`` would get them, with ``put``'s checks.
    """

    def get(self, level: int, index: int) -> bytes | None: ...

    def put(self, level: int, index: int, h: bytes) -> None: ...

    def size(self) -> int: ...


class InMemoryNodeStore:
    """Dict-backed NodeStore for tests, tools and short-lived trees."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0

    def get(self, level: int, index: int) -> bytes | None:
        return self._nodes.get((level, index))

    def put(self, level: int, index: int, h: bytes) -> None:
        key = (level, index)
        existing = self._nodes.get(key)
        if existing is not None:
            if existing != h:
                raise MerkleError(f"refusing to overwrite node {key}: history is append-only")
            return
        if level == 0:
            if index != self._size:
                raise MerkleError(f"leaf {index} put out of order; next leaf is {self._size}")
            self._size += 1
        self._nodes[key] = bytes(h)

    def size(self) -> int:
        return self._size


# --------------------------------------------------------------------------- log


def _largest_power_of_two_below(n: int) -> int:
    """k of RFC 9162 §2.1.1: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleLog:
    """Appends leaf hashes to a NodeStore and derives roots and proofs from it.

    Every method reads O(log n) nodes: roots and proofs are composed from complete subtrees
    and never touch individual leaves beyond the ones the RFC definition names.
    """

    def __init__(self, store: NodeStore) -> None:
        self._store = store

    @property
    def store(self) -> NodeStore:
        return self._store

    @property
    def size(self) -> int:
        return self._store.size()

    # -- writing -----------------------------------------------------------------

    def append(self, leaf: bytes) -> int:
        """Append one leaf *hash* (see ``leaf_hash``); return its index.

        Reads one left sibling per trailing one-bit of the old size, which is the number of
        subtrees this leaf completes.
        """
        if not _is_hash(leaf):
            raise MerkleError("append takes a 32-byte leaf hash; hash entry bytes with leaf_hash()")
        index = self._store.size()
        # Read and hash first, write after: a missing sibling then leaves the store untouched.
        writes = [(0, index, bytes(leaf))]
        h, level, i = bytes(leaf), 0, index
        while i & 1:
            h = node_hash(self._node(level, i - 1), h)
            level, i = level + 1, i >> 1
            writes.append((level, i, h))
        for level, i, h in writes:
            self._store.put(level, i, h)
        return index

    def append_many(self, leaves: Iterable[bytes]) -> range:
        """Append leaf hashes in order; return the range of their indices.

        Keeps the right frontier in memory, so the whole batch costs popcount(size) node reads
        however long it is (one store call with ``get_many``). Hashes first and writes after, as
        ``append`` does: with ``put_many`` the store gets the batch's nodes in one call.
        """
        leaves = list(leaves)
        for leaf in leaves:
            if not _is_hash(leaf):
                raise MerkleError("append_many takes 32-byte leaf hashes")
        start = self._store.size()
        # frontier[level] = hash of the pending complete subtree at that level, if any:
        # exactly the nodes a subsequent append would read as left siblings.
        coords = [(level, (start >> level) - 1) for level in range(start.bit_length()) if (start >> level) & 1]
        nodes = self._require([coords], self._fetch([coords])) if coords else {}
        frontier = {level: nodes[(level, i)] for level, i in coords}
        # node_hash inlined: a Python call per interior node was a good part of this loop's cost.
        sha, prefix = hashlib.sha256, _NODE_PREFIX
        writes: list[tuple[int, int, bytes]] = []
        write = writes.append
        index = start
        for leaf in leaves:
            leaf = bytes(leaf)
            write((0, index, leaf))
            h, level, i = leaf, 0, index
            while i & 1:
                h = sha(prefix + frontier.pop(level) + h).digest()
                level, i = level + 1, i >> 1
                write((level, i, h))
            frontier[level] = h
            index += 1
        put_many = getattr(self._store, "put_many", None)
        if put_many is not None:
            put_many(writes)
        else:
            put = self._store.put
            for level, i, h in writes:
                put(level, i, h)
        return range(start, start + len(leaves))

    # -- reading -----------------------------------------------------------------

    # Roots and proofs plan their nodes, read them, and only then compare the requested size
    # with the store's: a store with ``get_many`` may learn its size from that same read.

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all); any historical size works."""
        if size is None:
            size = self._store.size()
        elif not _is_size(size):
            raise MerkleError(f"cannot compute root for size {size!r}; log size is {self._store.size()}")
        if size == 0:
            return EMPTY_ROOT
        plan = [_range_nodes(0, size)]
        nodes = self._fetch(plan)
        current = self._store.size()
        if size > current:
            raise MerkleError(f"cannot compute root for size {size!r}; log size is {current}")
        return _fold(plan, self._require(plan, nodes))[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]), leaf-side first."""
        return self._inclusion(index, size, False)[0]

    def inclusion_proof_with_leaf(self, index: int, size: int) -> tuple[list[bytes], bytes | None]:
        """PATH(index, D[size]) and the leaf hash itself (None if the store lacks it), read
        together: with ``get_many`` that is one store call for the whole proof."""
        return self._inclusion(index, size, True)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]).

        Empty when old_size is 0 or equal to new_size: every tree extends the empty tree, and
        equal sizes are consistent iff the roots are equal, which needs no proof.
        """
        def refuse(current: int) -> MerkleError:
            return MerkleError(f"no consistency proof from {old_size!r} to {new_size!r} (log size {current})")

        if not (_is_size(old_size) and _is_size(new_size)) or old_size > new_size:
            raise refuse(self._store.size())
        ranges: list[tuple[int, int]] = []
        if 0 < old_size < new_size:
            _subproof_ranges(old_size, 0, new_size, True, ranges)
        plan = [_range_nodes(lo, hi) for lo, hi in ranges]
        nodes = self._fetch(plan) if plan else {}
        if new_size > self._store.size():
            raise refuse(self._store.size())
        return _fold(plan, self._require(plan, nodes))

    # -- internals ---------------------------------------------------------------

    def _inclusion(self, index: int, size: int, with_leaf: bool) -> tuple[list[bytes], bytes | None]:
        def refuse(current: int) -> MerkleError:
            return MerkleError(f"no inclusion proof for index {index!r} in size {size!r} (log size {current})")

        if not (_is_size(size) and _is_size(index)) or index >= size:
            raise refuse(self._store.size())
        plan = _inclusion_plan(index, size)
        leaf = (0, index)
        nodes = self._fetch(plan, leaf if with_leaf else None)
        if size > self._store.size():
            raise refuse(self._store.size())
        return _fold(plan, self._require(plan, nodes)), nodes.get(leaf) if with_leaf else None

    def _node(self, level: int, index: int) -> bytes:
        h = self._store.get(level, index)
        if h is None:
            raise MerkleError(f"store is missing complete node (level={level}, index={index})")
        return h

    def _fetch(self, plan: list[list[tuple[int, int]]], extra: tuple[int, int] | None = None
               ) -> dict[tuple[int, int], bytes]:
        """The plan's nodes (and ``extra``) that the store has: one ``get_many`` call if it
        offers one, else a ``get`` per node."""
        coords = [c for group in plan for c in group]
        if extra is not None:
            coords.append(extra)
        get_many = getattr(self._store, "get_many", None)
        if get_many is not None:
            return get_many(coords)
        get = self._store.get
        nodes: dict[tuple[int, int], bytes] = {}
        for c in coords:
            if c not in nodes and (h := get(*c)) is not None:
                nodes[c] = h
        return nodes

    @staticmethod
    def _require(plan: list[list[tuple[int, int]]], nodes: dict[tuple[int, int], bytes]
                 ) -> dict[tuple[int, int], bytes]:
        # The first missing node in plan order is the one a node-by-node reading meets first.
        for group in plan:
            for level, index in group:
                if (level, index) not in nodes:
                    raise MerkleError(f"store is missing complete node (level={level}, index={index})")
        return nodes


# Which nodes a root or proof needs depends only on sizes and indices, never on hashes. The
# functions below plan them as one group of complete subtrees per hash to produce, so that a
# store can be asked for all of them at once; ``_fold`` then makes the hashes.


def _fold(plan: list[list[tuple[int, int]]], nodes: dict[tuple[int, int], bytes]) -> list[bytes]:
    """MTH of each group's range: its subtrees (biggest first) folded from the right, which
    is what the RFC's largest-power-of-two split reduces to for these ranges."""
    out = []
    for group in plan:
        h = nodes[group[-1]]
        for c in group[-2::-1]:
            h = node_hash(nodes[c], h)
        out.append(h)
    return out


def _range_nodes(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees of a range the RFC recursion can produce, biggest first.

    Such ranges start at a multiple of a power of two at least as large as the range, so
    they split into complete subtrees by the set bits of hi - lo.
    """
    out = []
    start, n = lo, hi - lo
    for level in range(n.bit_length() - 1, -1, -1):
        if (n >> level) & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def _inclusion_plan(index: int, size: int) -> list[list[tuple[int, int]]]:
    """PATH(index, D[size]) as node groups, leaf side first (RFC 9162 §2.1.3.1, unrolled).

    Walking down from the root, each split either goes right (the complete left subtree is
    a proof hash) or enters the left subtree (the right part is a proof hash, the only one
    that may span several nodes). A left subtree is complete, so below it the proof is just
    the sibling at every level.
    """
    upper: list[list[tuple[int, int]]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            upper.append(_range_nodes(lo + k, hi))
            hi = lo + k
            break
        upper.append([(k.bit_length() - 1, lo >> (k.bit_length() - 1))])
        lo += k
    lower = [[(level, (index >> level) ^ 1)] for level in range((hi - lo).bit_length() - 1)]
    upper.reverse()
    return lower + upper


def _subproof_ranges(m: int, lo: int, hi: int, complete: bool, out: list[tuple[int, int]]) -> None:
    # The ranges whose hashes make SUBPROOF(m, D[lo:hi], b), in proof order; ``complete`` is
    # the RFC's b: whether D[lo:lo+m] is a subtree of the *old* tree that the verifier already
    # knows (its root).
    n = hi - lo
    if m == n:
        if not complete:
            out.append((lo, hi))
        return
    k = _largest_power_of_two_below(n)
    if m <= k:
        _subproof_ranges(m, lo, lo + k, complete, out)
        out.append((lo + k, hi))
    else:
        _subproof_ranges(m - k, lo + k, hi, False, out)
        out.append((lo, lo + k))


# --------------------------------------------------------------------------- verification
#
# Both verifiers follow the RFC 9162 algorithms step by step and return False for anything
# malformed: they are fed attacker-controlled data and a crash is not a verdict.


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` in ``root``?"""
    try:
        if not (_is_hash(leaf) and _is_hash(root) and _is_size(index) and _is_size(size)):
            return False
        if index >= size:
            return False
        proof = list(proof)
        if not all(_is_hash(p) for p in proof):
            return False
        fn, sn = index, size - 1
        r = bytes(leaf)
        for p in proof:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = node_hash(bytes(p), r)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                r = node_hash(r, bytes(p))
            fn >>= 1
            sn >>= 1
        return sn == 0 and hmac.compare_digest(r, bytes(root))
    except Exception:  # noqa: BLE001 - a malformed proof is a failed proof, never a crash
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``new_root`` an append-only extension of ``old_root``?

    Edge cases the RFC leaves to the caller, decided as in Trillian: old_size 0 is consistent
    with anything given an empty proof (and old_root must be the empty-tree root); equal
    sizes need an empty proof and equal roots; old_size > new_size is never consistent.
    """
    try:
        if not (_is_size(old_size) and _is_size(new_size)):
            return False
        if not (_is_hash(old_root) and _is_hash(new_root)):
            return False
        proof = list(proof)
        if not all(_is_hash(p) for p in proof):
            return False
        old_root, new_root = bytes(old_root), bytes(new_root)
        if old_size > new_size:
            return False
        if old_size == 0:
            return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
        if old_size == new_size:
            return not proof and hmac.compare_digest(old_root, new_root)
        if not proof:
            return False
        path = [bytes(p) for p in proof]
        if old_size & (old_size - 1) == 0:
            path.insert(0, old_root)
        fn, sn = old_size - 1, new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = node_hash(c, fr)
                sr = node_hash(c, sr)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                sr = node_hash(sr, c)
            fn >>= 1
            sn >>= 1
        return (
            sn == 0
            and hmac.compare_digest(fr, old_root)
            and hmac.compare_digest(sr, new_root)
        )
    except Exception:  # noqa: BLE001 - see verify_inclusion
        return False
