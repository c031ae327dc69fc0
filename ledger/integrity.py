"""The integrator: folds the ledger's notification log into the signed Merkle tree.

``Integrity.integrate`` follows the notification log from the last integrated entry. One
*step* reads up to ``batch_size`` new notifications and, in ONE database transaction,

1. takes the integration lock (SQLite: the database write lock, taken up front by a no-op
   write; PostgreSQL: ``pg_advisory_xact_lock`` on a key naming this ledger's schema),
2. reads the tree size (``MAX(idx) + 1`` of the level-0 nodes) and the notification id of
   the last leaf,
3. appends the new leaf hashes (``ledger.entry``) with ``MerkleLog.append_many``, which
   reads only the O(log n) frontier nodes, and writes the new nodes and the
   ``xl_merkle_leaves(idx, notification_id)`` rows with plain INSERTs (never upserts: a
   node that exists is never changed, so a racing integrator that got past the lock fails
   on the primary key, rolls back and retries from the new state),
4. signs a checkpoint at every multiple of ``sign_every`` it passed, and at the final size
   when asked to (``checkpoint=True`` / ``checkpoint_now``).

Both backends commit notifications in id order (eventsourcing locks the PostgreSQL events
table for inserts), so "every notification after the last integrated one" never skips a
row that commits later with a smaller id.
"""

from __future__ import annotations

import sqlite3
import time
from bisect import bisect_left
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import Notification

from ledger.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    SignedCheckpoint,
    key_fingerprint,
    load_private_key,
)
from ledger.note import NoteSignature
from ledger.tables import executemany, take_sqlite_write_lock
from ledger.entry import encode_entry
from ledger.entry import leaf_hashes as _leaf_hashes
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, MerkleError, MerkleLog
from ledger.proofs import ConsistencyProof, InclusionProof

__all__ = [
    "DEFAULT_ORIGIN",
    "EventRows",
    "Integrity",
    "IntegrationResult",
    "LeafEntry",
    "SqlNodeStore",
    "TreeCorrupted",
    "signer_from_key",
]

DEFAULT_ORIGIN = "exchange-ledger/dev"


class TreeCorrupted(Exception):
    """The stored tree does not fit together (e.g. a leaf without its notification mapping)."""


def signer_from_key(private_key: str | bytes, key_id: str | None = None) -> CheckpointSigner:
    """A CheckpointSigner from XLEDGER_CHECKPOINT_KEY (base64 raw Ed25519 seed, or PEM).

    The key id defaults to ``key_fingerprint`` of the public key.
    """
    key = load_private_key(private_key)
    return CheckpointSigner(key, key_id or key_fingerprint(key.public_key()))


@dataclass(frozen=True)
class IntegrationResult:
    appended: int                              # leaves added by this call
    tree_size: int                             # size after the call
    root: bytes                                # root of that tree
    checkpoints: tuple[SignedCheckpoint, ...]  # checkpoints this call signed
    retries: int = 0                           # steps that lost a race and were redone


@dataclass(frozen=True)
class LeafEntry:
    """One leaf and the stored event it commits to."""

    leaf_index: int
    notification_id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes

    def entry_bytes(self) -> bytes:
        return encode_entry(self.originator_id, self.originator_version, self.topic, self.state)


# --------------------------------------------------------------------------- SQL access


class _Backend:
    """The SQL differences that matter here, and raw cursors with tuple rows."""

    def __init__(self, ledger: Any):
        self.ledger = ledger
        self.datastore = ledger.recorder.datastore
        tables = ledger.tables
        self.is_postgres = tables.is_postgres
        self.prefix = tables.schema_prefix
        table = ledger.recorder.events_table_name
        if self.is_postgres:
            schema = self.datastore.schema
            self.events = f'"{schema}"."{table}"'
            self.nid = "notification_id"
            self.oid = "uuid_send(originator_id)"
            self.lock_key = f"xledger-integrity:{schema}.{table}"
        else:
            self.events = table
            self.nid = "rowid"
            self.oid = "originator_id"
            self.lock_key = ""
        # SQLite stores the UUID as 32 hex characters; PostgreSQL gives uuid_send's 16 bytes.
        # A plain function, not a method: the leaf hashing calls it once per entry.
        self.oid_bytes = bytes if self.is_postgres else bytes.fromhex

    def sql(self, sql: str) -> str:
        if self.is_postgres:
            sql = sql.replace("e.{oid}", "uuid_send(e.originator_id)")
        sql = sql.replace("{events}", self.events).replace("{nid}", self.nid).replace("{oid}", self.oid)
        if self.prefix:
            sql = sql.replace("xl_", self.prefix + "xl_")
        return sql.replace("?", "%s") if self.is_postgres else sql

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator["_Tx"]:
        with self.datastore.transaction(commit=write) as cursor:
            if self.is_postgres:
                from psycopg.rows import tuple_row

                cursor.row_factory = tuple_row
                if not write:
                    # One consistent snapshot for a whole read (verify, proofs).
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            else:
                cursor.sqlite_cursor.row_factory = None  # plain tuples: faster than sqlite3.Row
            yield _Tx(cursor, self)

    def lock(self, tx: "_Tx") -> None:
        if self.is_postgres:
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (self.lock_key,))
        else:
            # A write statement takes SQLite's database write lock now (waiting up to the
            # busy timeout) instead of at the first real insert, so the reads below see the
            # state that the writes will extend. It matches no row and changes nothing.
            tx.statements += 1
            take_sqlite_write_lock(tx.cursor.sqlite_cursor)


class _Tx:
    def __init__(self, cursor: Any, backend: _Backend):
        self.cursor = cursor
        self.backend = backend
        self.statements = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.statements += 1
        self.cursor.execute(self.backend.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.statements += 1
            executemany(self.cursor, self.backend.sql(sql), rows, self.backend.is_postgres)

    def all(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
        """The rows; ``binary`` asks PostgreSQL for its binary format (bytea as is, not as hex text)."""
        if binary and self.backend.is_postgres:
            self.statements += 1
            self.cursor.execute(self.backend.sql(sql), tuple(params), binary=True)
        else:
            self.execute(sql, params)
        return self.cursor.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.all(sql, params)
        return rows[0] if rows else None


def _is_race(exc: BaseException) -> bool:
    """A lost race: a duplicate key, a serialization failure, or a stale SQLite snapshot."""
    from eventsourcing.persistence import IntegrityError as ESIntegrityError
    from eventsourcing.persistence import OperationalError as ESOperationalError

    if isinstance(exc, (ESIntegrityError, sqlite3.IntegrityError)):
        return True
    if isinstance(exc, (ESOperationalError, sqlite3.OperationalError)):
        return "locked" in str(exc) or "busy" in str(exc)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, (psycopg.errors.IntegrityError, psycopg.errors.SerializationFailure,
                            psycopg.errors.DeadlockDetected))


# --------------------------------------------------------------------------- node store

# Node coordinates are sent to SQLite packed as level * _IDX_SPAN + idx.
_IDX_SPAN = 1 << 40


class SqlNodeStore:
    """``ledger.merkle.NodeStore`` on ``xl_merkle_nodes``, inside one open transaction.

    Puts are buffered (``get`` and ``get_many`` see them) and written by ``flush`` with plain
    INSERTs, so an existing node is never overwritten: the primary key refuses it. ``reads``
    counts the database reads (a ``get_many`` is one), which is what makes appends O(log n)
    observable in tests.
    """

    def __init__(self, tx: _Tx, size: int | None = None):
        self._tx = tx
        self._pending: dict[tuple[int, int], bytes] = {}
        # Nodes read in this transaction: complete nodes never change, so a root after an append
        # reuses the frontier the append read instead of reading it again.
        self._read: dict[tuple[int, int], bytes] = {}
        self._size: int | None = size  # given when the caller read it already
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        h = self._pending.get((level, index)) or self._read.get((level, index))
        if h is not None:
            return h
        self.reads += 1
        row = self._tx.one("SELECT hash FROM xl_merkle_nodes WHERE level = ? AND idx = ?", (level, index))
        return bytes(row[0]) if row else None

    def get_many(self, coords: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The nodes at ``coords`` that exist (buffered puts included), in one query.

        If ``size()`` was not read yet, the same query reads it: MerkleLog checks a proof's
        sizes after reading its nodes, so a proof costs one query, not two.
        """
        found: dict[tuple[int, int], bytes] = {}
        wanted = []
        for c in dict.fromkeys(coords):
            h = self._pending.get(c) or self._read.get(c)
            if h is not None:
                found[c] = h
            else:
                wanted.append(c)
        with_size = self._size is None
        if not wanted and not with_size:
            return found
        # The size comes back as one extra row at level -1.
        size_sql = " UNION ALL SELECT -1, MAX(idx), NULL FROM xl_merkle_nodes WHERE level = 0" if with_size else ""
        if self._tx.backend.is_postgres:
            rows = self._tx.all(
                "SELECT n.level, n.idx, n.hash FROM xl_merkle_nodes n "
                "JOIN unnest(?::integer[], ?::bigint[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx"
                + size_sql, ([c[0] for c in wanted], [c[1] for c in wanted]))
        elif all(0 <= level and 0 <= idx < _IDX_SPAN for level, idx in wanted):
            # One statement text whatever the number of nodes: eventsourcing's SQLite connections
            # keep one prepared statement, so a text that varies with the node count (an OR or
            # IN list) is compiled afresh every time, which costs more than the queries it
            # replaces. Each coordinate travels as one integer, level * 2**40 + idx, in a JSON
            # array. ("(level, idx) IN (VALUES ...)" would be worse: SQLite scans the table.)
            rows = self._tx.all(
                "SELECT n.level, n.idx, n.hash FROM json_each(?) AS w JOIN xl_merkle_nodes n "
                f"ON n.level = (w.value >> 40) AND n.idx = (w.value & {_IDX_SPAN - 1})" + size_sql,
                ("[" + ",".join([str(level << 40 | idx) for level, idx in wanted]) + "]",))
        else:  # pragma: no cover - only a tree of 2**40 leaves or a malformed coordinate gets here
            if with_size:
                self.size()
            return {**found, **{c: h for c in wanted if (h := self.get(*c)) is not None}}
        self.reads += 1
        for level, idx, h in rows:
            if level == -1:
                self._size = 0 if idx is None else int(idx) + 1
            else:
                found[(int(level), int(idx))] = bytes(h)
        self._read.update(found)
        return found

    def put(self, level: int, index: int, h: bytes) -> None:
        key = (level, index)
        if key in self._pending:
            raise MerkleError(f"node {key} put twice")
        if level == 0:
            if index != self.size():
                raise MerkleError(f"leaf {index} put out of order; next leaf is {self.size()}")
            self._size = index + 1
        self._pending[key] = bytes(h)

    def put_many(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """``put`` of each node, with its checks made once for the batch (MerkleLog.append_many);
        a batch that fails them is refused whole."""
        added = {(level, index): bytes(h) for level, index, h in nodes}
        if len(added) != len(nodes) or not self._pending.keys().isdisjoint(added):
            raise MerkleError("a node put twice")
        leaves = [index for level, index, _ in nodes if level == 0]
        if leaves:
            size = self.size()
            if leaves != list(range(size, size + len(leaves))):
                raise MerkleError(f"leaves from {leaves[0]} put out of order; next leaf is {size}")
            self._size = size + len(leaves)
        self._pending.update(added)

    def size(self) -> int:
        if self._size is None:
            self.reads += 1
            row = self._tx.one("SELECT MAX(idx) FROM xl_merkle_nodes WHERE level = 0")
            self._size = 0 if row is None or row[0] is None else int(row[0]) + 1
        return self._size

    def flush(self) -> int:
        pending = self._pending
        if pending and self._tx.backend.is_postgres:
            # Not tables.executemany's binary arrays: psycopg dumps those element by element in Python,
            # which was half the integrator's own CPU. The coordinates go as array literals (joined in
            # C), the hashes as one bytea that the server cuts into 32-byte pieces.
            blob = b"".join(pending.values())
            if len(blob) != HASH_SIZE * len(pending):
                raise MerkleError("a node hash is not 32 bytes")
            self._tx.execute(
                "INSERT INTO xl_merkle_nodes (level, idx, hash) "
                f"SELECT l, i, substring(%b::bytea from (o::integer - 1) * {HASH_SIZE} + 1 for {HASH_SIZE}) "
                "FROM unnest(?::integer[], ?::bigint[]) WITH ORDINALITY AS u(l, i, o) ORDER BY o",
                (blob, _int_array(c[0] for c in pending), _int_array(c[1] for c in pending)))
        else:
            self._tx.executemany("INSERT INTO xl_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)",
                                 [(level, idx, h) for (level, idx), h in pending.items()])
        n = len(pending)
        self._read.update(pending)  # written in this transaction: a root after the flush reads none of them
        pending.clear()
        return n


# --------------------------------------------------------------------------- rows read

# The events after a notification id, in order, as leaf rows (ledger.entry.leaf_hashes): what an
# integration step hashes and verify re-reads. Read with ``binary=True``: in text, PostgreSQL sends
# every state as hex, which cost client and server more than the hashing (bench/README.md).
EVENTS_AFTER = "SELECT {nid}, {oid}, originator_version, topic, state FROM {events} WHERE {nid} > ? ORDER BY {nid} LIMIT ?"


class EventRows:
    """The event rows integration steps read, kept for another reader of the same notifications in
    the same process (``Runtime.maintain`` hands them to the read models), so that the events table
    is read once for both.

    It holds one unbroken run: every event whose notification id is in (``after``, ``last``], as
    integration steps read them. Notifications are committed in id order (see the module
    docstring), so no event of that range can appear after it was read. A step that does not
    continue the run (another integrator appended leaves between two steps), or that would take it
    past ``limit`` rows (held in memory: events of the gate's exchanges are 2–3 kB), is not kept,
    nor any after it: the reader reads those events itself.
    """

    def __init__(self, limit: int = 5000):
        self.limit = limit
        self.after = 0
        self._ids: list[int] = []
        self._rows: list[Any] = []
        self._closed = False
        self._oid_bytes: Any = None
        self._uuids: dict[Any, UUID] = {}

    @property
    def last(self) -> int:
        return self._ids[-1] if self._ids else self.after

    def __len__(self) -> int:
        return len(self._rows)

    def _add(self, after: int, rows: Sequence[Any], backend: "_Backend") -> None:
        """One committed step's rows: every event after notification ``after``, up to its last row."""
        if self._closed or not rows:
            return
        if (self._rows and after != self._ids[-1]) or len(self._rows) + len(rows) > self.limit:
            self._closed = True  # a gap or too many: what is held stays one unbroken run
            return
        if not self._rows:
            self.after = after
            self._oid_bytes = backend.oid_bytes
        self._ids.extend(int(r[0]) for r in rows)
        self._rows.extend(rows)

    def notifications(self, start: int, limit: int) -> list[Notification] | None:
        """Up to ``limit`` notifications from id ``start`` on, as ``Ledger.notifications`` reads them,
        or None when the run does not hold ``start`` (the caller reads them itself). Fewer than
        ``limit`` means the run ends there, not the log."""
        if not self.after < start <= self.last:
            return None
        i = bisect_left(self._ids, start)
        oid_bytes, uuids, new = self._oid_bytes, self._uuids, object.__new__
        out = []
        for nid, oid, version, topic, state in self._rows[i:i + limit]:
            originator_id = uuids.get(oid)
            if originator_id is None:  # an exchange's events mostly come in pairs: one UUID for both
                originator_id = uuids[oid] = UUID(bytes=oid_bytes(oid))
            # Notification's own __init__ (a frozen dataclass: one object.__setattr__ per field) was
            # a third of this loop: the same object with its fields set at once, as ledger.domain does.
            n = new(Notification)
            n.__dict__.update(id=int(nid), originator_id=originator_id, originator_version=version, topic=topic,
                              state=state if type(state) is bytes else bytes(state))
            out.append(n)
        return out


# --------------------------------------------------------------------------- integrator


class Integrity:
    """The ledger's Merkle tree: integration, checkpoints, proofs. One per Ledger."""

    def __init__(self, ledger: Any, *, batch_size: int = 1000, lock: bool = True, max_retries: int = 20):
        self.ledger = ledger
        self.backend = _Backend(ledger)
        self.batch_size = batch_size
        self.lock = lock
        self.max_retries = max_retries
        # Test hook: called inside a step after its state was read, before it writes.
        self._after_read: Any = None
        # Store reads of the most recent step (operation-count tests).
        self.last_step_reads = 0

    # -- writing ----------------------------------------------------------------------------

    def integrate(
        self,
        *,
        signer: CheckpointSigner | None = None,
        origin: str = DEFAULT_ORIGIN,
        sign_every: int | None = None,
        checkpoint: bool = False,
        max_entries: int | None = None,
        rows: EventRows | None = None,
    ) -> IntegrationResult:
        """Catch the tree up with the notification log; see the module docstring.

        ``sign_every``: sign a checkpoint at every multiple of it (needs ``signer``).
        ``checkpoint``: also sign one at the final size once caught up (unless one exists).
        ``max_entries``: stop after about this many (for a relay loop that must stay lively).
        ``rows``: keeps the event rows of the steps that committed, for the read models (``EventRows``).
        """
        if (sign_every or checkpoint) and signer is None:
            raise ValueError("signing checkpoints needs a signer (see signer_from_key)")
        if sign_every is not None and sign_every < 1:
            raise ValueError("sign_every must be a positive number of entries")
        appended, retries, signed = 0, 0, []
        size, root = 0, EMPTY_ROOT
        while True:
            budget = self.batch_size if max_entries is None else max(0, min(self.batch_size, max_entries - appended))
            try:
                n, size, root, cps, caught_up = self._step(signer, origin, sign_every, checkpoint, budget, rows)
            except Exception as exc:  # noqa: BLE001 - only races are retried
                if not _is_race(exc) or retries >= self.max_retries:
                    raise
                retries += 1
                time.sleep(min(0.01 * retries, 0.2))
                continue
            appended += n
            signed.extend(cps)
            if caught_up or budget == 0:
                return IntegrationResult(appended, size, root, tuple(signed), retries)

    def checkpoint_now(self, signer: CheckpointSigner, origin: str = DEFAULT_ORIGIN) -> SignedCheckpoint:
        """Integrate everything there is, then return the signed checkpoint of the final size
        (signed now, or the stored one if that size was already signed)."""
        result = self.integrate(signer=signer, origin=origin, checkpoint=True)
        cp = self.checkpoint(result.tree_size)
        if cp is None:  # pragma: no cover - integrate(checkpoint=True) always leaves one
            raise TreeCorrupted(f"no checkpoint at size {result.tree_size} after checkpoint_now")
        return cp

    def _step(self, signer, origin, sign_every, force, budget, kept: EventRows | None = None):
        b = self.backend
        with b.transaction(write=True) as tx:
            if self.lock:
                b.lock(tx)
            # The tree size and the last leaf's notification in one query.
            top, last_nid = tx.one("SELECT m.top, l.notification_id FROM (SELECT MAX(idx) AS top FROM xl_merkle_nodes "
                                   "WHERE level = 0) m LEFT JOIN xl_merkle_leaves l ON l.idx = m.top")
            size = 0 if top is None else int(top) + 1
            if size and last_nid is None:
                raise TreeCorrupted(f"leaf {size - 1} has no notification mapping in xl_merkle_leaves")
            last_nid = int(last_nid or 0)
            store = SqlNodeStore(tx, size=size)
            rows = tx.all(
                EVENTS_AFTER,
                (last_nid, budget),
                binary=True,
            ) if budget else []
            if self._after_read is not None:
                self._after_read(size)
            hashes = _leaf_hashes(rows, b.oid_bytes)
            log = MerkleLog(store)
            log.append_many(hashes)
            new_size = size + len(rows)
            store.flush()
            if rows and b.is_postgres:  # as in SqlNodeStore.flush; the leaves' indices follow from the size
                tx.execute("INSERT INTO xl_merkle_leaves (idx, notification_id) SELECT ?::bigint + o - 1, n "
                           "FROM unnest(?::bigint[]) WITH ORDINALITY AS u(n, o) ORDER BY o",
                           (size, _int_array(r[0] for r in rows)))
            else:
                tx.executemany("INSERT INTO xl_merkle_leaves (idx, notification_id) VALUES (?, ?)",
                               [(size + i, int(r[0])) for i, r in enumerate(rows)])
            caught_up = len(rows) < budget or budget == 0
            sizes: list[int] = []
            if signer is not None:
                if sign_every:
                    first = (size // sign_every + 1) * sign_every
                    sizes.extend(range(first, new_size + 1, sign_every))
                if force and caught_up and new_size not in sizes:
                    sizes.append(new_size)
            signed: list[SignedCheckpoint] = []
            if sizes:
                have = {int(r[0]) for r in tx.all(
                    "SELECT tree_size FROM xl_checkpoints WHERE tree_size >= ? AND tree_size <= ?",
                    (min(sizes), max(sizes)))}
                for s in sizes:
                    if s in have:
                        continue
                    cp = signer.sign(Checkpoint(origin, s, log.root(s)))
                    tx.execute("INSERT INTO xl_checkpoints (tree_size, signed_json) VALUES (?, ?)",
                               (s, cp.stored()))
                    signed.append(cp)
            root = log.root(new_size)
            self.last_step_reads = store.reads
        if kept is not None:  # committed: a step that lost a race hands nothing over
            kept._add(last_nid, rows, b)
        return len(rows), new_size, root, signed, caught_up

    # -- reading ----------------------------------------------------------------------------

    @contextmanager
    def _log(self) -> Iterator[tuple[_Tx, MerkleLog]]:
        with self.backend.transaction(write=False) as tx:
            yield tx, MerkleLog(SqlNodeStore(tx))

    def tree_size(self) -> int:
        with self._log() as (_, log):
            return log.size

    def root(self, size: int | None = None) -> bytes:
        with self._log() as (_, log):
            return log.root(size)

    def pending(self) -> int:
        """Notifications not yet in the tree."""
        with self._log() as (tx, log):
            last = self._last_nid(tx, log.size)
            return int(tx.one("SELECT COUNT(*) FROM {events} WHERE {nid} > ?", (last,))[0])

    @staticmethod
    def _last_nid(tx: _Tx, size: int) -> int:
        if not size:
            return 0
        row = tx.one("SELECT notification_id FROM xl_merkle_leaves WHERE idx = ?", (size - 1,))
        if row is None:
            raise TreeCorrupted(f"leaf {size - 1} has no notification mapping")
        return int(row[0])

    def checkpoints(self, *, cosigned: bool = True) -> list[SignedCheckpoint]:
        with self.backend.transaction(write=False) as tx:
            rows = tx.all("SELECT tree_size, signed_json FROM xl_checkpoints ORDER BY tree_size")
            cosigs = self._cosignature_rows(tx) if cosigned else {}
        return [_with_cosignatures(r[1], cosigs.get(int(r[0]), ())) for r in rows]

    def checkpoint(self, tree_size: int, *, cosigned: bool = True) -> SignedCheckpoint | None:
        """The stored checkpoint of this size, with the witness cosignatures stored for it."""
        with self.backend.transaction(write=False) as tx:
            row = tx.one("SELECT signed_json FROM xl_checkpoints WHERE tree_size = ?", (tree_size,))
            cosigs = self._cosignature_rows(tx, tree_size) if row and cosigned else {}
        return _with_cosignatures(row[0], cosigs.get(tree_size, ())) if row else None

    def latest_checkpoint(self, *, covering: int = 0, cosigned: bool = True) -> SignedCheckpoint | None:
        """The largest stored checkpoint, if its size is at least ``covering``."""
        with self.backend.transaction(write=False) as tx:
            row = tx.one("SELECT tree_size, signed_json FROM xl_checkpoints WHERE tree_size >= ? "
                         "ORDER BY tree_size DESC LIMIT 1", (covering,))
            cosigs = self._cosignature_rows(tx, int(row[0])) if row and cosigned else {}
        return _with_cosignatures(row[1], cosigs.get(int(row[0]), ())) if row else None

    @staticmethod
    def _cosignature_rows(tx: _Tx, tree_size: int | None = None) -> dict[int, list[str]]:
        if tree_size is None:
            rows = tx.all("SELECT tree_size, line FROM xl_cosignatures ORDER BY tree_size, witness")
        else:
            rows = tx.all("SELECT tree_size, line FROM xl_cosignatures WHERE tree_size = ? ORDER BY witness",
                          (tree_size,))
        out: dict[int, list[str]] = {}
        for size, line in rows:
            out.setdefault(int(size), []).append(line)
        return out

    def add_cosignatures(self, tree_size: int, signatures: Sequence[NoteSignature]) -> int:
        """Store witness cosignatures of the checkpoint of ``tree_size`` (checked by the caller);
        one per witness key, a repeat is ignored. Returns how many were new."""
        with self.backend.transaction(write=True) as tx:
            if not self.backend.is_postgres:  # the write lock before the read, polled as every writer's
                self.backend.lock(tx)
            have = {r[0] for r in tx.all("SELECT witness FROM xl_cosignatures WHERE tree_size = ?", (tree_size,))}
            rows = {f"{s.name}+{s.key_id.hex()}": s.line() for s in signatures}
            new = [(tree_size, w, line) for w, line in rows.items() if w not in have]
            tx.executemany("INSERT INTO xl_cosignatures (tree_size, witness, line) VALUES (?, ?, ?) "
                           "ON CONFLICT DO NOTHING", new)
        return len(new)

    def last_cosigned_size(self, witness: str) -> int | None:
        """The largest checkpoint size this witness ('<name>+<key id hex>') has a stored cosignature on."""
        with self.backend.transaction(write=False) as tx:
            row = tx.one("SELECT MAX(tree_size) FROM xl_cosignatures WHERE witness = ?", (witness,))
        return None if row is None or row[0] is None else int(row[0])

    def checkpoint_sizes(self) -> list[int]:
        with self.backend.transaction(write=False) as tx:
            return [int(r[0]) for r in tx.all("SELECT tree_size FROM xl_checkpoints ORDER BY tree_size")]

    def entry(self, leaf_index: int) -> LeafEntry:
        """The stored event behind a leaf (raises KeyError if there is none)."""
        b = self.backend
        with b.transaction(write=False) as tx:
            row = tx.one(
                "SELECT l.notification_id, e.{oid}, e.originator_version, e.topic, e.state "
                "FROM xl_merkle_leaves l JOIN {events} e ON e.{nid} = l.notification_id WHERE l.idx = ?",
                (leaf_index,),
            )
        if row is None:
            raise KeyError(f"no entry for leaf {leaf_index}")
        return LeafEntry(leaf_index, int(row[0]), UUID(bytes=b.oid_bytes(row[1])), int(row[2]), row[3], bytes(row[4]))

    def leaf_index_of(self, notification_id: int) -> int | None:
        with self.backend.transaction(write=False) as tx:
            row = tx.one("SELECT idx FROM xl_merkle_leaves WHERE notification_id = ?", (notification_id,))
        return int(row[0]) if row else None

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> InclusionProof:
        with self._log() as (_, log):
            path, leaf = log.inclusion_proof_with_leaf(leaf_index, tree_size)
        assert leaf is not None
        return InclusionProof(leaf_index, tree_size, leaf, tuple(path))

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        with self._log() as (_, log):
            return ConsistencyProof(old_size, new_size, tuple(log.consistency_proof(old_size, new_size)))


def _with_cosignatures(stored: str, lines: Sequence[str]) -> SignedCheckpoint:
    signed = SignedCheckpoint.parse(stored)
    if not lines:
        return signed
    return signed.with_signatures(NoteSignature.parse_line(line) for line in lines)


def _int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers (``int`` refuses anything else, so nothing else gets in)."""
    return "{" + ",".join(map(str, map(int, values))) + "}"
