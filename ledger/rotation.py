"""Master-key rotation: every subject data key re-wrapped under a new master key, while the services run.

A data key keeps its id and its secret; only its wrapping changes, so nothing sealed under
it changes and every hash stays as it was. The steps (docs/production.md has the procedure):

1. The operator gives every process the new key after the old one
   (``XLEDGER_MASTER_KEY=OLD,NEW``). Nothing changes yet: new keys are wrapped under the
   first key listed.
2. ``rotate_master_key`` records the new key as the ledger's *target*
   (``xl_master_key_target``). Writers read that row in the transaction that inserts a new
   key (``ledger.privacy``), so from then on every new subject's key is wrapped under the
   new key; a process that lacks it waits and says which key it lacks. Switching the target
   waits for writers that read the old one, so their rows are committed before the sweep.
3. It re-wraps, in batches of one transaction each, every row not yet under the target.
   Each update is a compare-and-set on the old bytes: a row erased meanwhile stays erased,
   a row changed meanwhile is taken up by the next pass.
4. It passes over the table until a pass finds nothing, then finishes while holding the
   target row (which blocks new keys for that instant): it counts the rows not under the
   target and records ``completed_at`` only if there are none.

Every step is idempotent, so a rotation killed at any point (kill -9) is finished by running
it again. Afterwards the old key can be removed from every process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from ledger.subject_crypto import MasterKeyRing, rewrap_key
from ledger.tables import SideTables

__all__ = ["RotationError", "RotationResult", "RotationStatus", "census", "status", "rotate_master_key"]

_NOT_UNDER = "(master_key_id IS NULL OR master_key_id <> ?)"


class RotationError(RuntimeError):
    pass


@dataclass(frozen=True)
class RotationStatus:
    target: str
    since: str
    completed_at: str | None


@dataclass(frozen=True)
class RotationResult:
    target: str
    rewrapped: int  # rows this run re-wrapped
    passes: int
    completed_at: str
    census: dict[str | None, int]  # master key id -> rows, afterwards (all under the target)


def census(tables: SideTables) -> dict[str | None, int]:
    """How many subject keys each master key wraps (None: the format written before key ids)."""
    rows = tables.fetchall("SELECT master_key_id, COUNT(*) FROM xl_subject_keys GROUP BY master_key_id")
    return {mk: int(n) for mk, n in rows}


def status(tables: SideTables) -> RotationStatus | None:
    """The recorded target, or None before the first rotation."""
    row = tables.fetchone("SELECT master_key_id, since, completed_at FROM xl_master_key_target WHERE id = 1")
    return RotationStatus(*row) if row and row[0] else None


def rotate_master_key(tables: SideTables, ring: MasterKeyRing, target_id: str, *, batch_size: int = 500,
                      pause: float = 0.0, progress: Callable[[int], None] | None = None) -> RotationResult:
    """Re-wraps every subject key under ``target_id`` (a key of ``ring``); see the module doc.

    ``pause`` seconds between batches spread the load on a busy database. ``progress`` gets
    the number of keys re-wrapped so far. Raises MasterKeyUnavailable when ``ring`` lacks the
    target or a key some row is wrapped under, RotationError when another rotation took over.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    target = ring.get(target_id)
    _set_target(tables, target_id)
    rewrapped, passes = 0, 0
    while True:
        passes += 1
        found = 0
        after = ""
        while True:
            rows = tables.fetchall(
                f"SELECT subject, wrapped_key FROM xl_subject_keys WHERE subject > ? AND {_NOT_UNDER} "
                "ORDER BY subject LIMIT ?", (after, target_id, batch_size))
            if not rows:
                break
            after = rows[-1][0]
            found += len(rows)
            updates = [(rewrap_key(ring, s, bytes(w), target), target_id, s, bytes(w)) for s, w in rows]
            with tables.cursor() as c:
                _check_target(c, target_id)
                c.executemany("UPDATE xl_subject_keys SET wrapped_key = ?, master_key_id = ? "
                              "WHERE subject = ? AND wrapped_key = ?", updates)
            rewrapped += len(rows)
            if progress is not None:
                progress(rewrapped)
            if pause:
                time.sleep(pause)
        if found == 0 and _finish(tables, target_id):
            break
    completed = status(tables)
    return RotationResult(target_id, rewrapped, passes, completed.completed_at if completed else "",
                          census(tables))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _set_target(tables: SideTables, target_id: str) -> None:
    with tables.cursor() as c:
        # The row exists from the start (ledger.tables), and an UPDATE takes its lock: this waits
        # for every writer that read the old target, so their rows are committed before the sweep.
        c.execute("UPDATE xl_master_key_target SET master_key_id = ?, since = ?, completed_at = NULL "
                  "WHERE id = 1 AND master_key_id <> ?", (target_id, _now(), target_id))


def _check_target(c, target_id: str) -> None:
    c.execute("SELECT master_key_id FROM xl_master_key_target WHERE id = 1")
    rows = c.fetchall()
    current = rows[0][0] if rows else None
    if current != target_id:
        raise RotationError(f"another rotation changed the target to master key {current}; run one at a time")


class _NotDone(Exception):
    pass


def _finish(tables: SideTables, target_id: str) -> bool:
    """Under the target row's lock: no row left under another key? Then record completion."""
    try:
        with tables.cursor() as c:
            c.execute("UPDATE xl_master_key_target SET completed_at = ? WHERE id = 1", (_now(),))
            _check_target(c, target_id)
            c.execute(f"SELECT COUNT(*) FROM xl_subject_keys WHERE {_NOT_UNDER}", (target_id,))
            if int(c.fetchall()[0][0]):
                raise _NotDone  # rolls the completion back; another pass takes the stragglers
    except _NotDone:
        return False
    return True
