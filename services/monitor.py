"""`xledger monitor`: an authority's or auditor's own memory of the log.

It follows the log's checkpoints (the compacted topic ``ledger.checkpoints``, or the log's
read-only endpoint, `xledger ledger serve`), checks each one's signature (and, if asked, a
quorum of witness cosignatures), and checks that it extends the newest checkpoint it saw
before with a consistency proof that the log endpoint serves. The newest checkpoint it has
verified is kept in a local state file, written atomically, which `xledger verify --trusted`
also reads. A fork (two trees that do not extend each other) or a rollback (the log's
newest checkpoint is smaller than one seen before) raises ``MonitorAlarm``: the command
exits 1 and says which.

State file (JSON)::

    {"format": "exchange-ledger/monitor-state/v1", "origin": "...", "tree_size": N,
     "checkpoint": "<signed note text>", "saved_at": "<ISO-8601 UTC>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from ledger.checkpoint import CheckpointError, CheckpointVerifier, SignedCheckpoint
from ledger.merkle import verify_consistency
from ledger.note import NoteVerifier
from services.logging import get_logger

log = get_logger(__name__)

STATE_FORMAT = "exchange-ledger/monitor-state/v1"
_MAX_RESPONSE = 1 << 20


class MonitorAlarm(Exception):
    """The log forked or rolled back. ``kind`` is 'fork' or 'rollback'."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class LogUnavailable(Exception):
    """The log endpoint could not be reached or answered nonsense; try again later."""


# --------------------------------------------------------------------------- state file


def read_trusted(text: str | bytes) -> SignedCheckpoint:
    """A saved checkpoint: a signed note, a v1 JSON checkpoint, or a monitor state file."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"not valid JSON: {exc}") from None
        if isinstance(data, dict) and data.get("format") == STATE_FORMAT:
            if not isinstance(data.get("checkpoint"), str):
                raise CheckpointError("monitor state without a checkpoint")
            return SignedCheckpoint.parse(data["checkpoint"])
    return SignedCheckpoint.parse(text)


def read_state(path: Path) -> SignedCheckpoint | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return read_trusted(text)


def write_state(path: Path, signed: SignedCheckpoint) -> None:
    """Replace the state file atomically (write, fsync, rename): a crash leaves old or new."""
    doc = {"format": STATE_FORMAT, "origin": signed.checkpoint.origin, "tree_size": signed.checkpoint.tree_size,
           "checkpoint": signed.to_note(), "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- the log endpoint


@dataclass
class HttpLogClient:
    url: str
    timeout: float = 5.0

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=self.timeout) as r:  # noqa: S310
                return r.status, r.read(_MAX_RESPONSE).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(_MAX_RESPONSE).decode("utf-8", "replace")
        except (OSError, ValueError) as exc:
            raise LogUnavailable(f"log endpoint {self.url}: {type(exc).__name__}: {exc}") from None

    def latest(self) -> SignedCheckpoint | None:
        status, body = self._get("/checkpoint")
        if status == 404:
            return None
        if status != 200:
            raise LogUnavailable(f"log endpoint answered {status} for /checkpoint")
        try:
            return SignedCheckpoint.parse(body)
        except CheckpointError as exc:
            raise LogUnavailable(f"log endpoint served a malformed checkpoint: {exc}") from None

    def consistency_proof(self, old: int, new: int) -> list[bytes] | None:
        """The proof, or None when the log cannot prove it (it holds no tree of that size)."""
        status, body = self._get("/proof/consistency?" + urllib.parse.urlencode({"old": old, "new": new}))
        if status == 400:
            return None
        if status != 200:
            raise LogUnavailable(f"log endpoint answered {status} for a consistency proof")
        try:
            return [base64.b64decode(line, validate=True) for line in body.splitlines() if line]
        except (binascii.Error, ValueError):
            raise LogUnavailable("log endpoint served a malformed consistency proof") from None


# --------------------------------------------------------------------------- the monitor


@dataclass
class Monitor:
    verifier: CheckpointVerifier
    log: HttpLogClient
    state_path: Path
    witnesses: Sequence[NoteVerifier] = ()
    quorum: int = 0
    seen: int = field(default=0)

    @property
    def state(self) -> SignedCheckpoint | None:
        return read_state(self.state_path)

    def check_latest(self) -> str:
        """Ask the log for its newest checkpoint and check it (a smaller one is a rollback)."""
        latest = self.log.latest()
        saved = self.state
        if latest is None:
            if saved is not None:
                raise MonitorAlarm("rollback", f"the log serves no checkpoint at all, but this monitor saw a signed "
                                   f"checkpoint of size {saved.checkpoint.tree_size}: its history was removed")
            return "empty"
        return self.observe(latest, newest=True)

    def observe(self, signed: SignedCheckpoint, *, newest: bool = False) -> str:
        """Check one checkpoint against the saved one; adopt it if it extends it.

        Returns what happened: adopted, same, grew, older, skipped (bad signature) or
        unwitnessed (consistent but short of the witness quorum, so not adopted)."""
        cp = signed.checkpoint
        self.seen += 1
        try:
            self.verifier.verify(signed)
        except CheckpointError as exc:
            log.warning("monitor.bad_checkpoint", tree_size=cp.tree_size, error=str(exc)[:200])
            return "skipped"
        witnessed = self._witnessed(signed)
        saved = self.state
        if saved is None:
            return self._adopt(signed, "adopted") if witnessed else "unwitnessed"
        s = saved.checkpoint
        if s.origin != cp.origin:
            log.warning("monitor.other_origin", origin=cp.origin)
            return "skipped"
        if cp.tree_size == s.tree_size:
            if cp.root_hash != s.root_hash:
                raise MonitorAlarm("fork", _fork(s, cp, "two different roots for the same size"))
            return "same"
        if cp.tree_size > s.tree_size:
            proof = self.log.consistency_proof(s.tree_size, cp.tree_size)
            if proof is None or not verify_consistency(s.tree_size, cp.tree_size, s.root_hash, cp.root_hash, proof):
                raise MonitorAlarm("fork", _fork(s, cp, "the log cannot prove that the new tree extends the saved one"))
            return self._adopt(signed, "grew") if witnessed else "unwitnessed"
        if newest:
            raise MonitorAlarm("rollback", f"the log's newest checkpoint has size {cp.tree_size}, but this monitor saw "
                               f"a signed checkpoint of size {s.tree_size} (root {_b64(s.root_hash)}): "
                               "entries were removed")
        # An older record read again (topic replay): it must still be a prefix of the saved tree.
        proof = self.log.consistency_proof(cp.tree_size, s.tree_size)
        if proof is None:
            raise MonitorAlarm("rollback", f"the log can no longer prove size {s.tree_size}, which this monitor saw "
                               "signed: entries were removed")
        if not verify_consistency(cp.tree_size, s.tree_size, cp.root_hash, s.root_hash, proof):
            raise MonitorAlarm("fork", _fork(s, cp, "an older checkpoint is not a prefix of the saved one"))
        return "older"

    def _witnessed(self, signed: SignedCheckpoint) -> bool:
        if not self.witnesses:
            return True
        text = signed.checkpoint.body()
        known = {(w.name, w.key_id): w for w in self.witnesses}
        good = {s.key for s in signed.signatures if s.key in known and known[s.key].verify(text, s.signature)}
        return len(good) >= (self.quorum or len(self.witnesses))

    def _adopt(self, signed: SignedCheckpoint, how: str) -> str:
        write_state(self.state_path, signed)
        log.info("monitor.checkpoint", how=how, tree_size=signed.checkpoint.tree_size)
        return how


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fork(saved: Any, new: Any, why: str) -> str:
    return (f"the log forked: {why}. Saved: size {saved.tree_size}, root {_b64(saved.root_hash)}; "
            f"now: size {new.tree_size}, root {_b64(new.root_hash)}. Its history was rewritten.")


# --------------------------------------------------------------------------- topic source


class TopicSource:
    """Reads ``ledger.checkpoints`` from the beginning (the topic is compacted: small)."""

    def __init__(self, consumer: Any, topic: str):
        from kafka import TopicPartition

        self.consumer = consumer
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 500) -> Iterator[str]:
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                if record.value is not None:
                    yield record.value.decode("utf-8", "replace")

    def close(self) -> None:
        self.consumer.close()
