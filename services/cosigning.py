"""Collecting witness cosignatures: the log side of the C2SP tlog-witness protocol.

Whoever signs checkpoints (the relay's maintainer, `xledger ledger integrate`) hands
the newest stored checkpoint to every configured witness (``XLEDGER_WITNESSES``), with a
consistency proof from the size that witness last cosigned. Valid cosignatures are stored
with the checkpoint (``xl_cosignatures``), and the checkpoint with all its cosignatures is
published to the compacted topic ``ledger.checkpoints`` (key: the origin).

It never holds up deliveries: the relay's maintainer process (``services.maintainer``) runs it
in a thread of its own, every request has a short timeout, and a witness that is down is simply
asked again on the next round.
A refusal (403, 404, 409 fork, 422) is logged as an alert: it means the log's history is
not what the witness saw, or the configuration is wrong.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from ledger.checkpoint import SignedCheckpoint
from ledger.note import COSIGNATURE_V1, CosignatureVerifier, NoteError, NoteSignature, verifier_from_vkey
from ledger.witness import SIZE_CONTENT_TYPE, format_add_checkpoint
from services.logging import get_logger
from services.topics import CHECKPOINTS as CHECKPOINTS_TOPIC

log = get_logger(__name__)
_MAX_RESPONSE = 64 * 1024


class WitnessConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness: its cosignature key (vkey) and the URL prefix of its add-checkpoint API."""

    verifier: CosignatureVerifier
    url: str

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def id(self) -> str:
        return f"{self.verifier.name}+{self.verifier.key_id.hex()}"


def parse_witnesses(text: str) -> list[WitnessEndpoint]:
    """``<vkey>@<url>`` entries separated by commas or white space (XLEDGER_WITNESSES)."""
    out = []
    for entry in [e for e in re.split(r"[\s,]+", text or "") if e]:
        vkey, sep, url = entry.partition("@")
        if not sep or not re.match(r"https?://", url):
            raise WitnessConfigError(f"witness {entry[:80]!r} is not '<name>+<hash>+<key>@http(s)://host:port'")
        try:
            verifier = verifier_from_vkey(vkey, COSIGNATURE_V1)
        except NoteError as exc:
            raise WitnessConfigError(f"witness key: {exc}") from None
        out.append(WitnessEndpoint(verifier, url.rstrip("/")))
    if len({w.id for w in out}) != len(out):
        raise WitnessConfigError("a witness key is listed twice")
    return out


@dataclass(frozen=True)
class Answer:
    status: int            # HTTP status, or 0 when the witness could not be reached
    body: str
    content_type: str = ""


def post_add_checkpoint(url: str, body: bytes, timeout: float) -> Answer:
    """One add-checkpoint request (standard library HTTP, so the log needs no extra client)."""
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            return Answer(response.status, response.read(_MAX_RESPONSE).decode("utf-8", "replace"),
                          response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(_MAX_RESPONSE).decode("utf-8", "replace"), exc.headers.get("Content-Type", ""))
    except (OSError, ValueError) as exc:  # refused, timed out, reset, bad URL
        return Answer(0, f"{type(exc).__name__}: {exc}")


@dataclass
class Outcome:
    """What one witness did with one checkpoint."""

    witness: str
    tree_size: int
    status: str            # cosigned, already, unreachable, refused
    http_status: int = 0
    detail: str = ""


@dataclass
class CosignatureCollector:
    """Asks the witnesses to cosign the newest stored checkpoint; see the module docstring.

    ``log_public_key`` is needed only to hand a v1 (JSON form) checkpoint to witnesses as a
    note. ``publish`` receives each checkpoint with the cosignatures stored for it.
    """

    ledger: Any
    witnesses: list[WitnessEndpoint]
    log_public_key: Any = None
    publish: Callable[[SignedCheckpoint], None] | None = None
    timeout: float = 2.0
    retry_every: float = 10.0
    post: Callable[[str, bytes, float], Answer] = post_add_checkpoint
    wake_event: threading.Event = field(default_factory=threading.Event)
    _known_sizes: dict[str, int] = field(default_factory=dict)
    _published: tuple[int, int] | None = None

    def wake(self) -> None:
        """A new checkpoint was signed: collect now rather than at the next retry."""
        self.wake_event.set()

    def collect(self) -> list[Outcome]:
        """One round over all witnesses for the newest checkpoint; never raises for a witness."""
        integrity = self.ledger.integrity
        latest = integrity.latest_checkpoint()
        if latest is None:
            return []
        size = latest.checkpoint.tree_size
        have = {f"{s.name}+{s.key_id.hex()}" for s in latest.signatures}
        note = latest.log_signed().to_note(self.log_public_key)
        ask = [w for w in self.witnesses if w.id not in have]
        outcomes = [Outcome(w.id, size, "already") for w in self.witnesses if w.id in have]
        if ask:
            # All at once: a slow witness costs one timeout per round, not one per witness.
            with ThreadPoolExecutor(max_workers=len(ask), thread_name_prefix="cosign-ask") as pool:
                outcomes += list(pool.map(lambda w: self._ask(w, latest, note), ask))
        cosigned = integrity.checkpoint(size)
        if cosigned is not None and cosigned.is_legacy:  # publish notes only
            cosigned = SignedCheckpoint.from_note(cosigned.to_note(self.log_public_key))
        count = len(cosigned.signatures) if cosigned is not None else 0
        if self.publish is not None and cosigned is not None and self._published != (size, count):
            try:
                self.publish(cosigned)
                self._published = (size, count)
            except Exception as exc:  # noqa: BLE001 - the broker is down: publish on a later round
                log.warning("cosign.publish_failed", tree_size=size, error=type(exc).__name__)
        return outcomes

    def _ask(self, witness: WitnessEndpoint, latest: SignedCheckpoint, note: str) -> Outcome:
        size = latest.checkpoint.tree_size
        old = self._known_sizes.get(witness.id)
        if old is None:
            old = self.ledger.integrity.last_cosigned_size(witness.id) or 0
        if old > size:
            old = 0  # we do not hold what it says it saw: ask it (409 tells its size)
        for attempt in range(2):
            proof = self.ledger.integrity.consistency_proof(old, size).path if 0 < old < size else ()
            answer = self.post(witness.url, format_add_checkpoint(old, proof, note), self.timeout)
            if answer.status == 200:
                return self._store(witness, latest, answer)
            if answer.status == 409 and attempt == 0 and answer.content_type.startswith(SIZE_CONTENT_TYPE):
                seen = _size_line(answer.body)
                if seen is not None and seen != old and seen <= size:
                    self._known_sizes[witness.id] = old = seen
                    continue
                if seen is not None and seen > size:
                    return self._refused(witness, size, answer, f"the witness has cosigned size {seen}, larger than "
                                         f"the log's newest checkpoint {size}: the log was rolled back")
            break
        if answer.status == 0:
            log.warning("cosign.witness_unreachable", witness=witness.id, tree_size=size, error=answer.body[:200])
            return Outcome(witness.id, size, "unreachable", 0, answer.body[:200])
        return self._refused(witness, size, answer, answer.body.strip()[:300])

    def _refused(self, witness: WitnessEndpoint, size: int, answer: Answer, detail: str) -> Outcome:
        log.error("cosign.witness_refused", alert=True, witness=witness.id, tree_size=size, status=answer.status,
                  detail=detail)
        return Outcome(witness.id, size, "refused", answer.status, detail)

    def _store(self, witness: WitnessEndpoint, latest: SignedCheckpoint, answer: Answer) -> Outcome:
        size = latest.checkpoint.tree_size
        text = latest.checkpoint.body()
        valid = []
        for line in answer.body.splitlines():
            try:
                sig = NoteSignature.parse_line(line)
            except NoteError:
                continue
            # Only this witness's key counts, and only a cosignature of exactly this checkpoint.
            if sig.key == (witness.verifier.name, witness.verifier.key_id) and witness.verifier.verify(text, sig.signature):
                valid.append(sig)
        if not valid:
            log.error("cosign.bad_cosignature", alert=True, witness=witness.id, tree_size=size)
            return Outcome(witness.id, size, "refused", 200, "the answer holds no valid cosignature of its key")
        self.ledger.integrity.add_cosignatures(size, valid[:1])
        self._known_sizes[witness.id] = size
        log.info("cosign.cosigned", witness=witness.id, tree_size=size)
        return Outcome(witness.id, size, "cosigned", 200)

    def run(self, stopping: threading.Event) -> None:
        """Collect on every wake-up and every ``retry_every`` seconds until ``stopping`` is set."""
        while not stopping.is_set():
            self.wake_event.clear()
            try:
                self.collect()
            except Exception as exc:  # noqa: BLE001 - the ledger is locked or down: next round
                log.warning("cosign.round_failed", error=type(exc).__name__)
            self.wake_event.wait(self.retry_every)

    def start(self, stopping: threading.Event) -> threading.Thread:
        def stop_waiting() -> None:
            stopping.wait()
            self.wake_event.set()

        threading.Thread(target=stop_waiting, name="cosign-stop", daemon=True).start()
        thread = threading.Thread(target=self.run, args=(stopping,), name="cosign", daemon=True)
        thread.start()
        return thread


def _size_line(body: str) -> int | None:
    match = re.fullmatch(r"(0|[1-9][0-9]*)\n?", body)
    return int(match.group(1)) if match else None


class CheckpointPublisher:
    """Publishes cosigned checkpoints (signed-note text) to the compacted ``ledger.checkpoints``,
    keyed by origin, so the newest one per log stays and every authority can keep a copy."""

    def __init__(self, producer: Any, topic: str = CHECKPOINTS_TOPIC):
        self.producer = producer
        self.topic = topic

    def __call__(self, signed: SignedCheckpoint) -> None:
        note = signed.to_note()
        self.producer.send(self.topic, key=signed.checkpoint.origin.encode("utf-8"), value=note.encode("utf-8"))
        self.producer.flush(timeout=5)
