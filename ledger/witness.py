"""The witness role (https://c2sp.org/tlog-witness): an independent party that cosigns a log's
checkpoint only when the log's key signed it and it is consistent with the last checkpoint
this witness cosigned for that log. A log that rewrote its history can then no longer
collect cosignatures, and anyone holding the witnesses' public keys can tell.

Three small pieces, each replaceable:

* ``parse_add_checkpoint`` reads the ``add-checkpoint`` request body::

      old <size>\\n
      <consistency proof hash, base64>\\n     (zero to 63 lines)
      \\n
      <checkpoint signed note>

* ``Witness.add_checkpoint`` decides, and returns the cosignature line(s) or raises
  ``WitnessRefusal`` carrying the protocol's HTTP status: 400 malformed, 403 no valid log
  signature, 404 unknown origin, 409 old size not the witness's (body: its size, content
  type ``text/x.tlog.size``) or same size with another root, 422 bad consistency proof;
* ``WitnessStore`` keeps the latest cosigned checkpoint per origin. ``SqliteWitnessStore``
  does the check-and-update in one SQLite transaction (``BEGIN IMMEDIATE``), so two racing
  requests can never roll the stored size back, and a crash leaves the old or the new state.

Standard library and ``cryptography`` only; nothing here knows HTTP servers or the ledger.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, Sequence

from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.note import Cosigner, Ed25519Verifier, Note, NoteError

__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "WitnessRefusal",
    "AddCheckpointRequest",
    "parse_add_checkpoint",
    "format_add_checkpoint",
    "WitnessState",
    "WitnessStore",
    "SqliteWitnessStore",
    "Witness",
]

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_MAX_SIZE = (1 << 63) - 1
# Refusals of a validly signed checkpoint that show the log misbehaving; kept as evidence.
_EVIDENCE = frozenset({"fork", "rollback", "bad-proof"})


class WitnessRefusal(Exception):
    """The witness does not cosign. ``status`` is the protocol's HTTP status code."""

    def __init__(self, status: int, reason: str, message: str, *, body: str | None = None,
                 content_type: str = "text/plain; charset=utf-8", origin: str | None = None,
                 signed: bool = False):
        super().__init__(message)
        self.status = status
        self.reason = reason          # a short code for logs: fork, rollback, bad-proof, ...
        self.message = message
        self.body = body if body is not None else message + "\n"
        self.content_type = content_type
        self.origin = origin
        self.signed = signed          # the request carried a valid log signature: evidence


@dataclass(frozen=True)
class AddCheckpointRequest:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


def _malformed(message: str) -> WitnessRefusal:
    return WitnessRefusal(400, "malformed", message)


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("request body is not UTF-8") from None
    head, sep, note = text.partition("\n")
    match = re.fullmatch(r"old (0|[1-9][0-9]*)", head, re.ASCII) if sep else None
    if match is None:
        raise _malformed("the first line must be 'old <size>' in canonical decimal")
    old_size = int(match.group(1))
    if old_size > _MAX_SIZE:
        raise _malformed("old size is too large")
    proof = []
    while True:
        line, sep, rest = note.partition("\n")
        if not sep:
            raise _malformed("the proof lines must end with an empty line before the checkpoint")
        note = rest
        if line == "":
            break
        if len(proof) == MAX_PROOF_LINES:
            raise _malformed(f"at most {MAX_PROOF_LINES} consistency proof lines")
        try:
            h = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise _malformed(f"proof line {len(proof) + 1} is not base64") from None
        if len(h) != 32 or base64.b64encode(h).decode() != line:
            raise _malformed(f"proof line {len(proof) + 1} is not a canonical 32-byte hash")
        proof.append(h)
    return AddCheckpointRequest(old_size, tuple(proof), note)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body a log sends (the inverse of ``parse_add_checkpoint``)."""
    lines = [f"old {old_size}"] + [base64.b64encode(h).decode("ascii") for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class WitnessState:
    tree_size: int
    root_hash: bytes


class WitnessStore(Protocol):
    def latest(self, origin: str) -> WitnessState | None: ...

    def swap(self, origin: str, expected: WitnessState | None, new: WitnessState, note: str) -> WitnessState | None:
        """Store ``new`` if the state is still ``expected``; else return the state found."""
        ...

    def record_refusal(self, origin: str, status: int, reason: str, request: str) -> None: ...


class SqliteWitnessStore:
    """The witness's own small database: one row per log, plus refused signed requests
    (possible evidence of log misbehaviour, as the protocol suggests keeping)."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS witness_logs (origin TEXT PRIMARY KEY, tree_size INTEGER NOT NULL, "
        "root_hash BLOB NOT NULL, checkpoint TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS witness_refusals (id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, "
        "status INTEGER NOT NULL, reason TEXT NOT NULL, received_at TEXT NOT NULL, request TEXT NOT NULL)",
    )

    def __init__(self, path: str | Path):
        self.path = str(path)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            for ddl in self._DDL:
                db.execute(ddl)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")  # a cosignature is only sent after the state is on disk
        return db

    def latest(self, origin: str) -> WitnessState | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT tree_size, root_hash FROM witness_logs WHERE origin = ?", (origin,)).fetchone()
        return WitnessState(int(row[0]), bytes(row[1])) if row else None

    def checkpoint(self, origin: str) -> str | None:
        """The last checkpoint note this witness cosigned for ``origin``."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT checkpoint FROM witness_logs WHERE origin = ?", (origin,)).fetchone()
        return row[0] if row else None

    def swap(self, origin: str, expected: WitnessState | None, new: WitnessState, note: str) -> WitnessState | None:
        now = datetime.now(timezone.utc).isoformat()
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: check and update are one step
            try:
                row = db.execute("SELECT tree_size, root_hash FROM witness_logs WHERE origin = ?",
                                 (origin,)).fetchone()
                found = WitnessState(int(row[0]), bytes(row[1])) if row else None
                if found != expected:
                    db.execute("ROLLBACK")
                    return found
                db.execute("INSERT INTO witness_logs (origin, tree_size, root_hash, checkpoint, updated_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, "
                           "root_hash = excluded.root_hash, checkpoint = excluded.checkpoint, "
                           "updated_at = excluded.updated_at", (origin, new.tree_size, new.root_hash, note, now))
                db.execute("COMMIT")
                return None
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def record_refusal(self, origin: str, status: int, reason: str, request: str) -> None:
        with closing(self._connect()) as db:
            db.execute("INSERT INTO witness_refusals (origin, status, reason, received_at, request) "
                       "VALUES (?, ?, ?, ?, ?)", (origin, status, reason, datetime.now(timezone.utc).isoformat(),
                                                  request[:65536]))

    def refusals(self, origin: str | None = None) -> list[tuple[str, int, str, str]]:
        with closing(self._connect()) as db:
            sql = "SELECT origin, status, reason, received_at FROM witness_refusals"
            rows = db.execute(sql + (" WHERE origin = ? ORDER BY id" if origin else " ORDER BY id"),
                              (origin,) if origin else ()).fetchall()
        return [(r[0], int(r[1]), r[2], r[3]) for r in rows]


# --------------------------------------------------------------------------- the witness


@dataclass
class Witness:
    """Cosigns checkpoints of the configured logs; ``logs`` maps an origin to the log's keys."""

    cosigner: Cosigner
    logs: dict[str, list[Ed25519Verifier]]
    store: WitnessStore
    clock: object = field(default=time.time)

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint request: the cosignature line(s), or WitnessRefusal."""
        request = parse_add_checkpoint(body)
        try:
            note = Note.parse(request.note)
            checkpoint = Checkpoint.from_body(note.text)
        except (NoteError, CheckpointError) as exc:
            raise _malformed(f"the checkpoint is malformed: {exc}") from None
        origin = checkpoint.origin
        keys = self.logs.get(origin)
        if not keys:
            raise WitnessRefusal(404, "unknown-log", f"unknown log origin {origin!r}", origin=origin)
        self._check_log_signature(note, keys, origin)
        try:
            self._check_and_store(request, note, checkpoint)
        except WitnessRefusal as refusal:
            refusal.origin, refusal.signed = origin, True
            if refusal.reason in _EVIDENCE:
                self.store.record_refusal(origin, refusal.status, refusal.reason, body.decode("utf-8", "replace"))
            raise
        return self.cosigner.sign(checkpoint.body(), int(self.clock())).line()

    @staticmethod
    def _check_log_signature(note: Note, keys: Sequence[Ed25519Verifier], origin: str) -> None:
        known = {(k.name, k.key_id): k for k in keys}
        text = note.text.encode("utf-8")
        good = False
        for sig in note.signatures:
            key = known.get(sig.key)
            if key is None:
                continue  # unknown keys (other witnesses' cosignatures) are ignored
            if not key.verify(text, sig.signature):
                raise WitnessRefusal(403, "bad-signature", f"the signature of {sig.name} does not verify",
                                     origin=origin)
            good = True
        if not good:
            raise WitnessRefusal(403, "unsigned", f"the checkpoint is not signed by a key of log {origin!r}",
                                 origin=origin)

    def _check_and_store(self, request: AddCheckpointRequest, note: Note, cp: Checkpoint) -> None:
        size, root = cp.tree_size, cp.root_hash
        if request.old_size > size:
            state = self.store.latest(cp.origin)
            shrunk = state is not None and size < state.tree_size
            raise WitnessRefusal(400, "rollback" if shrunk else "old-size-too-large",
                                 f"old size {request.old_size} is larger than the checkpoint's {size}"
                                 + (f"; this witness cosigned size {state.tree_size}: the log rolled back" if shrunk
                                    else ""))
        lost: WitnessState | None = None
        for _ in range(3):  # a lost race re-reads the state once or twice; then it is a conflict
            state = self.store.latest(cp.origin)
            current = state.tree_size if state else 0
            if request.old_size != current:
                raise WitnessRefusal(409, "rollback" if size < current else "size-mismatch",
                                     f"old size {request.old_size} is not this witness's size {current}",
                                     body=f"{current}\n", content_type=SIZE_CONTENT_TYPE)
            if request.old_size == size:
                expected_root = state.root_hash if state else EMPTY_ROOT
                if root != expected_root or request.proof:
                    raise WitnessRefusal(409, "fork", f"size {size} was cosigned with another root",
                                         body=f"{current}\n", content_type=SIZE_CONTENT_TYPE)
            elif request.old_size == 0:
                if request.proof:
                    raise WitnessRefusal(422, "bad-proof", "the consistency proof from size 0 must be empty")
            elif not verify_consistency(request.old_size, size, state.root_hash, root, request.proof):
                raise WitnessRefusal(422, "bad-proof",
                                     f"the consistency proof from size {request.old_size} to {size} does not verify: "
                                     "the log is not an append-only extension of what this witness cosigned")
            lost = self.store.swap(cp.origin, state, WitnessState(size, root), note.render())
            if lost is None:
                return
        raise WitnessRefusal(409, "conflict", "the state changed during the request",
                             body=f"{(lost.tree_size if lost else 0)}\n", content_type=SIZE_CONTENT_TYPE)
