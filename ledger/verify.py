"""Full verification of a ledger against its Merkle tree and signed checkpoints.

``verify_ledger`` trusts nothing the operator stored except the checkpoint signatures
(checked with a public key the caller supplies). In one read snapshot it

1. recomputes every leaf from the stored event rows (``ledger.entry``) in leaf order and
   compares it with the stored level-0 node, while checking the stored leaf → notification
   mapping (a mapped row that is gone was deleted; notification ids must increase with
   the leaf index, else rows were reordered);
2. counts the notifications up to the last integrated one: more rows than leaves means
   rows were inserted, and an anti-join names them;
3. rebuilds every level of the tree from the recomputed leaves and compares each stored
   interior node (proofs are served from those);
4. checks every stored checkpoint: signature (current key or the key history), origin, that
   its tree size exists, that its root is the recomputed root of that size, and an RFC 9162
   consistency proof (built from the recomputed tree) between each pair of consecutive
   checkpoints; with ``checkpoint_interval``, that no stretch of more than that many entries
   lacks a checkpoint (the signer signs one at every multiple, so a gap means deleted ones);
5. with ``trusted`` checkpoints (saved by an auditor or a monitor), that the recomputed tree
   has each one's root at its size: a rewrite rebuilt and re-signed by an insider fails here;
6. with ``witnesses`` and ``quorum``, that every stored cosignature verifies and that the
   latest checkpoint carries cosignatures of at least ``quorum`` of those witnesses.

Every problem is a ``Finding``; ``VerifyReport.first`` is the earliest one in the log, named
by leaf index, notification id, aggregate id/version and event topic where known. What
could not be checked at all (no entries, entries not yet in the tree, no checkpoint signed
by the given key or for the given origin) is listed in ``VerifyReport.unchecked``.

Memory: the recomputed tree is kept as packed 32-byte hashes, about 64 bytes per entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence
from uuid import UUID

from ledger.checkpoint import CheckpointError, CheckpointVerifier, LogKey, SignedCheckpoint, UnknownKeyError
from ledger.entry import leaf_hashes
from ledger.integrity import EVENTS_AFTER, Integrity
from ledger.merkle import EMPTY_ROOT, MerkleLog, verify_consistency
from ledger.note import NoteError, NoteSignature, NoteVerifier

__all__ = ["Finding", "VerifyReport", "verify_ledger"]

Progress = Callable[[int, int], None]
_ENTRY_KINDS = frozenset({"entry-changed", "missing-entry", "inserted-entry", "reordered", "leaf-map", "tree",
                          "node-changed", "node-missing"})


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    leaf_index: int | None = None
    notification_id: int | None = None
    originator_id: UUID | None = None
    originator_version: int | None = None
    topic: str | None = None

    def describe(self) -> str:
        where = []
        if self.leaf_index is not None:
            where.append(f"leaf {self.leaf_index}")
        if self.notification_id is not None:
            where.append(f"notification {self.notification_id}")
        if self.originator_id is not None:
            where.append(f"aggregate {self.originator_id} v{self.originator_version}")
        if self.topic is not None:
            where.append(f"topic {self.topic}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


@dataclass
class VerifyReport:
    tree_size: int = 0
    notifications: int = 0
    pending: int = 0
    checkpoints: int = 0
    root: bytes = EMPTY_ROOT
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    findings_total: int = 0
    cosignatures: int = 0      # valid witness cosignatures on the latest checkpoint

    @property
    def ok(self) -> bool:
        """No tampering found (see ``verified`` for "and everything was checked")."""
        return not self.findings

    @property
    def verified(self) -> bool:
        return not self.findings and not self.unchecked

    @property
    def first(self) -> Finding | None:
        if not self.findings:
            return None
        big = float("inf")
        return min(self.findings, key=lambda f: (big if f.leaf_index is None else f.leaf_index))

    def add(self, finding: Finding, limit: int) -> None:
        self.findings_total += 1
        if len(self.findings) < limit:
            self.findings.append(finding)


class _PackedLevels:
    """A read-only NodeStore over the recomputed tree (levels of packed 32-byte hashes)."""

    def __init__(self, levels: list[bytes], size: int):
        self.levels = levels
        self._size = size

    def get(self, level: int, index: int) -> bytes | None:
        if level >= len(self.levels):
            return None
        data = self.levels[level]
        off = index * 32
        return data[off: off + 32] if 0 <= off < len(data) else None

    def put(self, level: int, index: int, h: bytes) -> None:  # pragma: no cover - read-only
        raise TypeError("read-only store")

    def size(self) -> int:
        return self._size


def _next_level(level: bytes) -> bytes:
    sha = hashlib.sha256
    return b"".join([sha(b"\x01" + level[off: off + 64]).digest() for off in range(0, len(level) - 63, 64)])


def _chain(level0: bytes) -> list[bytes]:
    levels = [level0]
    while len(levels[-1]) >= 64:
        levels.append(_next_level(levels[-1]))
    return levels


# Stored nodes compared in SQL with the recomputed ones, each with the 32 bytes at its own
# index: one result row per chunk instead of one row per node, and no reliance on the order
# in which the database hands rows over. (level, idx) is the primary key, so as many matching
# rows as indices in the range are every node of the range, each equal to the recomputed one
# (a hash of another length equals no 32-byte piece).
_SAME_NODES = ("SELECT COUNT(*), SUM(CASE WHEN hash = substr(?, CAST((idx - ?) * 32 + 1 AS INTEGER), 32) "
               "THEN 1 ELSE 0 END) FROM xl_merkle_nodes WHERE level = ? AND idx >= ? AND idx < ?")
_CHUNK = 32_768  # nodes per comparison: a 1 MB parameter


def _stored_nodes_match(tx: Any, level: int, lo: int, computed: bytes) -> bool:
    """Whether the stored nodes of ``level`` at ``lo``.. are ``computed`` (packed hashes)."""
    total = len(computed) // 32
    for start in range(0, total, _CHUNK):
        end = min(total, start + _CHUNK)
        count, same = tx.one(_SAME_NODES, (computed[start * 32: end * 32], lo + start, level, lo + start, lo + end))
        if count != end - start or same != end - start:
            return False
    return True


def verify_ledger(
    ledger: Any,
    public_key: Any,
    *,
    origin: str | None = None,
    key_id: str | None = None,
    history: Sequence[LogKey] = (),
    checkpoint_interval: int | None = None,
    trusted: Sequence[SignedCheckpoint] = (),
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
    progress: Progress | None = None,
    page_size: int = 1000,
    max_findings: int = 100,
) -> VerifyReport:
    """Verify ``ledger`` (a ``ledger.application.Ledger``); see the module docstring.

    ``public_key``: the operator's current Ed25519 checkpoint key (object, raw bytes, base64
    or PEM); ``history``: the retired ones. ``origin``: if given, every checkpoint must be for
    this log. A trusted checkpoint that the keys do not verify raises CheckpointError.
    """
    verifier = CheckpointVerifier(public_key, key_id, origin=origin, history=history)
    for t in trusted:
        try:
            verifier.verify(t)
        except CheckpointError as exc:
            raise CheckpointError(f"trusted checkpoint of size {t.checkpoint.tree_size}: {exc}") from exc
    integrity: Integrity = ledger.integrity if hasattr(ledger, "integrity") else Integrity(ledger)
    b = integrity.backend
    report = VerifyReport()
    add = lambda f: report.add(f, max_findings)  # noqa: E731

    with b.transaction(write=False) as tx:
        row = tx.one("SELECT COUNT(*), MAX(idx) FROM xl_merkle_nodes WHERE level = 0")
        count0, max0 = int(row[0]), row[1]
        n = 0 if max0 is None else int(max0) + 1
        report.tree_size = n
        report.notifications = int(tx.one("SELECT COUNT(*) FROM {events}")[0])
        if count0 != n:
            add(Finding("tree", f"the tree's leaf level has {count0} nodes for {n} positions: nodes were deleted"))
        row = tx.one("SELECT COUNT(*), MAX(idx) FROM xl_merkle_leaves")
        if int(row[0]) != n or (n and row[1] != n - 1):
            add(Finding("leaf-map", f"xl_merkle_leaves has {row[0]} rows for {n} leaves"))

        # -- 1. leaves ------------------------------------------------------------------
        oid_bytes = b.oid_bytes
        leaves = bytearray()
        stored_leaves = bytearray()  # a missing node counts as 32 zero bytes
        last_nid = 0
        missing_entries = 0
        total = report.notifications if report.notifications > n else n
        # A page is first read as the raw read would: the next events in notification order,
        # the leaf map's notification ids for the page's leaves, and the recomputed leaves
        # compared with the stored ones in SQL. A page where anything differs is read again
        # through the three-table join below, which names what is wrong.
        map_query = "SELECT notification_id FROM xl_merkle_leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
        query = (
            "SELECT m.idx, m.hash, l.notification_id, e.{nid}, e.{oid}, e.originator_version, e.topic, e.state "
            "FROM xl_merkle_nodes m "
            "LEFT JOIN xl_merkle_leaves l ON l.idx = m.idx "
            "LEFT JOIN {events} e ON e.{nid} = l.notification_id "
            "WHERE m.level = 0 AND m.idx >= ? AND m.idx < ? ORDER BY m.idx"
        )
        for start in range(0, n, page_size):
            end = min(n, start + page_size)
            rows = tx.all(EVENTS_AFTER, (last_nid, end - start), binary=True)
            nids = [r[0] for r in rows]
            # The map names exactly the next events, one leaf each (idx is the map's primary key),
            # in strictly increasing notification order, as the row-by-row loop requires.
            if (len(rows) == end - start and [r[0] for r in tx.all(map_query, (start, end))] == nids
                    and len(set(nids)) == len(nids)):
                page = b"".join(leaf_hashes(rows, oid_bytes))
                if _stored_nodes_match(tx, 0, start, page):
                    leaves += page
                    stored_leaves += page
                    last_nid = nids[-1]
                    if progress is not None:
                        progress(end, total)
                    continue
            rows = tx.all(query, (start, end), binary=True)
            expect = start
            page_hashes: list[bytes] = []
            stored_hashes: list[bytes] = []
            ph, sh = page_hashes.append, stored_hashes.append
            for idx, stored, mapped, nid, oid, version, topic, state in rows:
                if idx != expect or nid is None or nid <= last_nid:
                    while expect < idx:  # a gap in level 0
                        ph(EMPTY_ROOT)
                        sh(b"")
                        expect += 1
                    if nid is None:
                        expect = idx + 1
                        missing_entries += 1
                        if mapped is None:
                            add(Finding("leaf-map", "leaf has no notification mapping", idx))
                        else:
                            add(Finding("missing-entry", "the event row behind this leaf was deleted",
                                        idx, int(mapped)))
                        ph(bytes(stored))
                        sh(bytes(stored))
                        continue
                    if nid <= last_nid:
                        add(Finding("reordered", f"notification ids go backwards after notification {last_nid}: "
                                    "the leaf map was reordered", idx, int(nid), UUID(bytes=oid_bytes(oid)),
                                    version, topic))
                expect = idx + 1
                last_nid = nid
                ph(leaf_hashes(((nid, oid, version, topic, state),), oid_bytes)[0])
                sh(stored)
            while expect < end:
                page_hashes.append(EMPTY_ROOT)
                stored_hashes.append(b"")
                expect += 1
            joined = b"".join(page_hashes)
            # Node by node: a stored hash of the wrong length can hide in a join of them.
            if page_hashes != stored_hashes:
                by_idx = {r[0]: r for r in rows}
                for i, (h, s) in enumerate(zip(page_hashes, stored_hashes)):
                    if len(report.findings) >= max_findings:
                        break
                    if h != s and s:
                        r = by_idx.get(start + i)
                        if r is not None and r[3] is not None:
                            add(Finding("entry-changed", "the stored event does not hash to its leaf: "
                                        "the row was changed or rows were swapped", start + i, int(r[3]),
                                        UUID(bytes=oid_bytes(r[4])), int(r[5]), r[6]))
                    elif not s:
                        add(Finding("tree", "the leaf node is missing from the tree", start + i))
            leaves += joined
            stored_leaves += joined if page_hashes == stored_hashes else b"".join(h or bytes(32) for h in stored_hashes)
            if progress is not None:
                progress(end, total)

        # -- 2. inserted and pending rows --------------------------------------------------
        row = tx.one("SELECT MAX(notification_id) FROM xl_merkle_leaves")
        last_mapped = int(row[0]) if row and row[0] is not None else 0
        # Counting the few rows after the last mapped one, not the many before it: SQLite counts
        # a rowid range by walking the table's own pages (one per stored event here), while
        # the total above comes from a small covering index.
        report.pending = int(tx.one("SELECT COUNT(*) FROM {events} WHERE {nid} > ?", (last_mapped,))[0])
        upto = report.notifications - report.pending
        if upto != n - missing_entries:
            for nid, oid, version, topic in tx.all(
                "SELECT e.{nid}, e.{oid}, e.originator_version, e.topic FROM {events} e "
                "LEFT JOIN xl_merkle_leaves l ON l.notification_id = e.{nid} "
                "WHERE l.idx IS NULL AND e.{nid} <= ? ORDER BY e.{nid} LIMIT 20",
                (last_mapped,),
            ):
                at = int(tx.one("SELECT COUNT(*) FROM xl_merkle_leaves WHERE notification_id < ?", (nid,))[0])
                add(Finding("inserted-entry", "an event row that is not in the tree sits among integrated "
                            "entries: it was inserted", at, int(nid), UUID(bytes=oid_bytes(oid)), int(version), topic))

        # -- 3. interior nodes -------------------------------------------------------------
        # Each stored node must be the hash of its stored children; with the leaves checked
        # above, that makes the stored tree equal to the recomputed one. Continuing from the
        # hash of the children keeps one bad node to one finding.
        prev = bytes(stored_leaves)
        stored_chain = [prev]
        level = 0
        while len(prev) >= 64:
            level += 1
            computed = _next_level(prev)
            if (tx.one("SELECT COUNT(*) FROM xl_merkle_nodes WHERE level = ?", (level,))[0] == len(computed) // 32
                    and _stored_nodes_match(tx, level, 0, computed)):
                stored_chain.append(computed)
                prev = computed
                continue
            rows = tx.all("SELECT idx, hash FROM xl_merkle_nodes WHERE level = ? ORDER BY idx", (level,), binary=True)
            hashes = [r[1] for r in rows]
            # idx is unique and sorted: first 0 and last len - 1 means each hash sits at its index;
            # every hash 32 bytes long means no two traded bytes in the join.
            placed = not rows or (rows[0][0] == 0 and rows[-1][0] == len(rows) - 1)
            if (b"".join(hashes) != computed or len(rows) != len(computed) // 32 or not placed
                    or set(map(len, hashes)) != {32}):
                for pos, (idx, h) in enumerate(rows):
                    off = int(idx) * 32
                    if int(idx) != pos or computed[off: off + 32] != bytes(h):
                        first_leaf = int(idx) << level
                        add(Finding("node-changed", f"stored tree node (level {level}, index {idx}) is not the "
                                    f"hash of its children (leaves {first_leaf}..{first_leaf + (1 << level) - 1})",
                                    first_leaf))
                        break
                else:
                    add(Finding("node-missing", f"the tree lacks nodes at level {level}: {len(rows)} stored, "
                                f"{len(computed) // 32} expected"))
            stored_chain.append(computed)
            prev = computed
        extra = tx.one("SELECT COUNT(*) FROM xl_merkle_nodes WHERE level >= ?", (len(stored_chain),))[0]
        if extra:
            add(Finding("node-extra", f"{extra} stored tree nodes above the top level {len(stored_chain) - 1}"))
        # Roots come from the entries themselves.
        levels = stored_chain if bytes(leaves) == stored_chain[0] else _chain(bytes(leaves))
        tree = MerkleLog(_PackedLevels(levels, n))
        report.root = tree.root()

        # -- 4. checkpoints ------------------------------------------------------------------
        prev: SignedCheckpoint | None = None
        prev_good_size = 0
        origins: set[str] = set()
        signed_sizes: list[int] = []          # checkpoints whose signature verified
        good: dict[int, SignedCheckpoint] = {}  # ... and whose root is the recomputed one
        unknown_key: list[Finding] = []       # signed by no key we know: wrong key, or forged?
        stored_sizes: set[int] = set()
        for size_col, text in tx.all("SELECT tree_size, signed_json FROM xl_checkpoints ORDER BY tree_size"):
            report.checkpoints += 1
            stored_sizes.add(int(size_col))
            try:
                signed = SignedCheckpoint.parse(text)
            except CheckpointError as exc:
                add(Finding("checkpoint", f"stored checkpoint at size {size_col} is malformed: {exc}"))
                continue
            cp = signed.checkpoint
            try:
                verifier.verify(signed)
            except UnknownKeyError as exc:
                unknown_key.append(Finding("checkpoint-signature", f"checkpoint at size {cp.tree_size} rejected: {exc}"))
                continue
            except CheckpointError as exc:
                add(Finding("checkpoint-signature", f"checkpoint at size {cp.tree_size} rejected: {exc}"))
                continue
            origins.add(cp.origin)
            if int(size_col) != cp.tree_size:
                add(Finding("checkpoint", f"checkpoint row {size_col} holds a checkpoint of size {cp.tree_size}"))
                continue
            signed_sizes.append(cp.tree_size)
            if cp.tree_size > n:
                add(Finding("checkpoint-size", f"signed checkpoint commits to {cp.tree_size} entries but the tree "
                            f"has only {n}: entries were removed", n))
                continue
            if tree.root(cp.tree_size) != cp.root_hash:
                if any(f.kind in _ENTRY_KINDS and f.leaf_index is not None and f.leaf_index < cp.tree_size
                       for f in report.findings):
                    continue  # already explained by a bad entry named above
                add(_range_finding(tx, b, prev_good_size, cp.tree_size,
                                   f"the entries do not hash to the signed root of checkpoint {cp.tree_size}"))
                continue
            if prev is not None:
                p = prev.checkpoint
                proof = tree.consistency_proof(p.tree_size, cp.tree_size)
                if not verify_consistency(p.tree_size, cp.tree_size, p.root_hash, cp.root_hash, proof):
                    add(Finding("checkpoint-consistency", f"checkpoint {cp.tree_size} is not an extension of "
                                f"checkpoint {p.tree_size}", p.tree_size))
                    continue
                if p.timestamp and cp.timestamp and _instant(cp.timestamp) < _instant(p.timestamp):
                    report.warnings.append(f"checkpoint {cp.tree_size} is dated before checkpoint {p.tree_size}")
            prev, prev_good_size = signed, cp.tree_size
            good[cp.tree_size] = signed
        if len(origins) > 1:
            add(Finding("checkpoint", f"checkpoints name several logs: {sorted(origins)}"))
        if unknown_key and not signed_sizes:
            # Not one checkpoint verifies: most likely the auditor holds another key or origin.
            report.unchecked.append(
                f"none of the {len(unknown_key)} stored checkpoints is signed by the given key"
                + (f" for origin {origin!r}" if origin else "")
                + f" ({unknown_key[0].message.split(': ', 1)[-1]}); check --public-key, --key-history and --origin")
        else:
            for finding in unknown_key:
                add(finding)
        keys_known = bool(signed_sizes) or not unknown_key
        if checkpoint_interval and keys_known:
            _missing_checkpoints(report, add, signed_sizes, n, checkpoint_interval)
        elif n and report.checkpoints == 0:
            report.warnings.append("no signed checkpoint: the tree is only checked against itself")
        elif prev is not None and prev.checkpoint.tree_size < n:
            report.warnings.append(f"the last {n - prev.checkpoint.tree_size} leaves are not yet covered by a "
                                   "signed checkpoint")

        # -- 5. trusted checkpoints ----------------------------------------------------------
        for t in trusted:
            _check_trusted(report, add, tree, n, t, good)

        # -- 6. witness cosignatures ----------------------------------------------------------
        if witnesses:
            _check_witnesses(report, add, tx, good, stored_sizes, signed_sizes, witnesses, quorum or len(witnesses))

    if n == 0 and report.notifications == 0:
        report.unchecked.append("nothing to verify: the ledger has no entries")
    if report.pending:
        report.unchecked.append(f"{report.pending} entries after the last integrated one are not yet in the tree "
                                "(run `xledger ledger integrate`, or wait for the relay)")
    return report


def _missing_checkpoints(report: VerifyReport, add, sizes: list[int], n: int, interval: int) -> None:
    """The signer signs a checkpoint at every multiple of the interval, so no stretch of more
    than ``interval`` entries is without one, and fewer than ``interval`` follow the last."""
    prev = 0
    for size in sizes:
        if size - prev > interval:
            add(Finding("checkpoint-missing", f"no signed checkpoint between sizes {prev} and {size}, although one "
                        f"is signed every {interval} entries: checkpoints were deleted", prev))
        prev = max(prev, size)
    if n - prev >= interval:
        add(Finding("checkpoint-missing", f"entries {prev}..{n - 1} have no signed checkpoint, although one is "
                    f"signed every {interval} entries: checkpoints were deleted or never signed", prev))


def _check_trusted(report: VerifyReport, add, tree: MerkleLog, n: int, trusted: SignedCheckpoint,
                   good: dict[int, SignedCheckpoint]) -> None:
    cp = trusted.checkpoint
    root64 = _b64(cp.root_hash)
    if cp.tree_size > n:
        if n + report.pending >= cp.tree_size:
            report.unchecked.append(f"the tree has {n} entries, fewer than the trusted checkpoint's "
                                    f"{cp.tree_size}, and the rest are not yet integrated")
        else:
            add(Finding("trusted", f"the trusted checkpoint commits to {cp.tree_size} entries (root {root64}) but "
                        f"the ledger has only {n + report.pending}: entries were removed (rollback)", n))
        return
    if tree.root(cp.tree_size) == cp.root_hash:
        return
    stored = good.get(cp.tree_size)
    also = (" The log's own stored checkpoint of that size has another root: the log key signed two different "
            "trees (a fork)." if stored is not None else "")
    add(Finding("trusted", f"the ledger's first {cp.tree_size} entries do not hash to the root {root64} of the "
                f"trusted checkpoint of size {cp.tree_size}: history before entry {cp.tree_size} was rewritten "
                f"after that checkpoint was saved.{also}", cp.tree_size - 1 if cp.tree_size else None))


def _check_witnesses(report: VerifyReport, add, tx: Any, good: dict[int, SignedCheckpoint], stored_sizes: set[int],
                     signed_sizes: list[int], witnesses: Sequence[NoteVerifier], quorum: int) -> None:
    known = {(w.name, w.key_id): w for w in witnesses}
    valid: dict[int, set[tuple[str, bytes]]] = {}
    for size, line in tx.all("SELECT tree_size, line FROM xl_cosignatures ORDER BY tree_size"):
        size = int(size)
        try:
            sig = NoteSignature.parse_line(line)
        except NoteError as exc:
            add(Finding("cosignature", f"a stored cosignature of checkpoint {size} is malformed: {exc}"))
            continue
        w = known.get(sig.key)
        if w is None:
            continue
        signed = good.get(size)
        if signed is None:
            if size not in stored_sizes:  # a stored but bad checkpoint has its own finding above
                add(Finding("cosignature", f"witness {sig.name} cosigned a checkpoint of size {size} that the ledger "
                            "no longer holds: the checkpoint was deleted", size))
            continue
        if not w.verify(signed.checkpoint.body(), sig.signature):
            add(Finding("cosignature", f"the cosignature of witness {sig.name} does not verify on the stored "
                        f"checkpoint of size {size}: the checkpoint was changed after it was witnessed", size))
            continue
        valid.setdefault(size, set()).add(sig.key)
    latest = max(signed_sizes, default=None)
    if latest is None:
        add(Finding("witness-quorum", f"no signed checkpoint, so nothing carries the {quorum} witness "
                    "cosignatures required"))
        return
    have = valid.get(latest, set())
    report.cosignatures = len(have)
    if len(have) < quorum:
        quorate = [s for s, ws in valid.items() if len(ws) >= quorum]
        last = f"; the latest checkpoint with {quorum} is of size {max(quorate)}" if quorate else \
            f"; no checkpoint has {quorum}"
        names = ", ".join(sorted(name for name, _ in have)) or "none"
        add(Finding("witness-quorum", f"the latest checkpoint (size {latest}) carries {len(have)} of the {quorum} "
                    f"witness cosignatures required (valid: {names}){last}", latest))


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _instant(timestamp: str) -> datetime:
    # Checkpoint timestamps are validated ISO-8601 UTC; keep microseconds at most.
    head, _, frac = timestamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + ("." + frac[:6].ljust(6, "0") if frac else "") + "+00:00")


def _range_finding(tx: Any, b: Any, lo: int, hi: int, message: str) -> Finding:
    first = tx.one(
        "SELECT l.notification_id FROM xl_merkle_leaves l WHERE l.idx = ?", (lo,)) if hi > lo else None
    last = tx.one("SELECT l.notification_id FROM xl_merkle_leaves l WHERE l.idx = ?", (hi - 1,)) if hi else None
    span = f"leaves {lo}..{hi - 1}"
    if first and last:
        span += f", notifications {first[0]}..{last[0]}"
    return Finding("checkpoint-root", f"{message}: an entry among {span} was rewritten together with the "
                   "tree", lo)
