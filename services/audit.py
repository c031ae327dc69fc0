"""Auditor tools over the ledger: replay, re-evaluation, policy impact, subject access reports.

Everything here is read-only over the ledger (the live read models aside, which
are themselves derived). Nothing here prints or returns personal data beyond
the subject pseudonym: requests are opened in memory only to re-decide them.
"""

from __future__ import annotations

import dataclasses
import gc
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from eventsourcing.utils import get_topic

from ledger.domain import Exchange, sealed_message_aad
from ledger.privacy import DecryptionError, LedgerSealer, SubjectErased
from ledger.subject_crypto import CachingCipher, KeyMemo
from ledger.readmodels import TABLES, ReadModels, TableDiff, compare, replay_prefix
from ledger.transcoder import event_state
from policies.bundle import Bundle, BundleSet, load_bundle
from policies.directory import Directory
from policies.engine import PolicyEngine
from schemas.codec import AvroCodec
from services.directories import DirectoryResolver
from services.gate import GatePipeline, Inbound, Rejected, Work
from services.heap import settle_heap

_VERDICT = "Exchange.EscalationVerdict"


# -- the recorded history ------------------------------------------------------------------------


@dataclass
class Recorded:
    """One decided exchange as recorded: its RequestDecided event (in older ledgers, its Requested and
    Decided events)."""

    exchange_id: uuid.UUID
    position: int
    sender: str
    message_id: str
    subject: str
    source: dict[str, Any]
    summary: dict[str, Any]
    sealed_message: str
    decision: dict[str, Any]
    recorded_at: datetime

    @property
    def occurred_on(self) -> date:
        return datetime.fromisoformat(self.summary["occurred_at"]).date()

    @property
    def verified_at(self) -> datetime:
        """When the gate checked the sender's key: recorded in the decision, else the time it was recorded."""
        at = self.decision.get("verified_at")
        return datetime.fromisoformat(at) if at else self.recorded_at


_TOPICS = (get_topic(Exchange.Requested), get_topic(Exchange.Decided), get_topic(Exchange.RequestDecided))
_REQUESTED_TOPIC, _REQUEST_DECIDED_TOPIC = _TOPICS[0], _TOPICS[2]
_VERDICT_TOPIC = get_topic(Exchange.EscalationVerdict)


def recorded_pages(ledger: Any, *, start: int = 1, stop: int | None = None, page_size: int = 1000,
                   progress: Callable[[int], None] | None = None) -> Iterator[list[Recorded]]:
    """The decided exchanges whose request is recorded at a position in [start, stop), a page at a time.

    Only the request and decision events are read (filtered in the database). The gate records an
    exchange as one RequestDecided event, which holds both. Older ledgers hold a Requested and a
    Decided event: the request event is decoded only once its decision is found. Those two are
    recorded together (``Ledger.record`` stores an aggregate's events consecutively), so the ranges
    of a partitioned run ([1, b), [b, c), …) hold every exchange exactly once and, concatenated, in
    the order of one sequential pass. A range reads past ``stop`` only to find the decisions of
    requests it owns. ``progress`` gets the last position covered.
    """
    mapper = ledger.mapper
    select = ledger.recorder.select_notifications
    pending: dict[uuid.UUID, Any] = {}
    pos = start
    beyond = 0  # how many entries to read at once past ``stop``
    while True:
        if stop is None:
            page = select(pos, limit=page_size, topics=_TOPICS)
        elif pos < stop:
            # Up to the range's end, not a page past it (the next range's entries, fetched for nothing).
            page = select(pos, limit=page_size, stop=stop - 1, topics=_TOPICS)
            if not page:
                pos = stop
                continue
        elif pending:
            # Past the range, only the decisions of its own requests, stored right after them: a
            # few entries, more each time (a missing decision reads to the end in growing pages).
            beyond = min(page_size, max(2 * len(pending), 2 * beyond, 8))
            page = select(pos, limit=beyond, topics=_TOPICS)
        else:
            return
        if not page:
            return
        out: list[Recorded] = []
        for n in page:
            if n.topic == _REQUEST_DECIDED_TOPIC:
                if stop is None or n.id < stop:
                    both = event_state(mapper, n)
                    out.append(_recorded(n, both, both))
            elif n.topic == _REQUESTED_TOPIC:
                if stop is None or n.id < stop:
                    pending[n.originator_id] = n
            else:
                req_n = pending.pop(n.originator_id, None)
                if req_n is None:  # its request is another range's (or, impossibly, missing)
                    continue
                # The events' attributes as dicts (``event_state``, as the relay and the read models
                # read them): the same values as the domain events', without building the events.
                out.append(_recorded(n, event_state(mapper, req_n), event_state(mapper, n)))
        if out:
            yield out
        last = page[-1].id
        if progress is not None:
            progress(last if stop is None else min(last, stop - 1))
        if stop is not None and last >= stop - 1 and not pending:
            return
        pos = last + 1


def _recorded(n: Any, req: dict[str, Any], dec: dict[str, Any]) -> Recorded:
    """The exchange of the request's and the decision's event attributes (one event's, for a
    RequestDecided); ``n`` is the decision's notification."""
    return Recorded(n.originator_id, n.id, req["sender"], req["message_id"], req["subject"], req["source"],
                    req["summary"], req["sealed_message"], dec["decision"], datetime.fromisoformat(dec["timestamp"]))


def recorded_decisions(ledger: Any, *, page_size: int = 1000,
                       progress: Callable[[int], None] | None = None) -> Iterator[Recorded]:
    """Every decided exchange in notification order, from the events alone."""
    for page in recorded_pages(ledger, page_size=page_size, progress=progress):
        yield from page


def recorded_verdicts(ledger: Any) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every legal officer's verdict on an escalation, per exchange, in the order recorded."""
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for n in ledger.all_notifications(topics=(_VERDICT_TOPIC,)):
        out.setdefault(n.originator_id, []).append(ledger.mapper.to_domain_event(n).verdict)
    return out


class PinnedBundleSet(BundleSet):
    """A bundle set that applies one bundle whatever the exchange date (re-evaluation and impact)."""

    def __init__(self, bundle: Bundle):
        super().__init__([bundle])

    def in_force(self, at):  # noqa: D401 - same signature as BundleSet.in_force
        return self.bundles[0]


class UnknownDirectory(Exception):
    """The decision names a directory version that is neither in the ledger nor shipped."""

    def __init__(self, version: str):
        super().__init__(version)
        self.version = version


class Raised:
    """What a call raised, kept to be raised again where the caller would have met it."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc

    def get(self) -> Any:
        raise self.exc


def _raised_below(exc: BaseException) -> Raised:
    """``Raised`` for what a call made from the current frame raised, its traceback starting at the
    call: this frame (which holds the list the ``Raised`` goes into) out of it, so that no
    reference cycle keeps a page's work alive until the collector runs."""
    tb = exc.__traceback__
    return Raised(exc.with_traceback(tb.tb_next if tb is not None else None))


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or ``Raised`` with what it raised."""
    try:
        return call(*args)
    except Exception as exc:
        return Raised(exc)


# -- what each recorded decision is judged under ---------------------------------------------------
# Re-evaluation and impact ask two resolvers per recorded decision: which bundle and which
# directory. They are small picklable objects, because a partitioned run sends them to its worker
# processes. A resolver that needs the ledger (e.g. the directory recorded with each decision)
# may define ``bind(ledger)``, which every process calls with its own ledger before the first use.

BundleFor = Callable[[Recorded], "Bundle | None"]
# A directory resolver answers (directory, how): how it was chosen (recorded, legacy, what-if); a
# None directory is a version neither the ledger nor the shipped directories hold.
DirectoryFor = Callable[[Recorded], "tuple[Directory | None, str]"]


class RecordedVersion:
    """The bundle the decision names (its recorded policy version), from a set of known bundles."""

    def __init__(self, bundles: Any):
        self.bundles = bundles

    def __call__(self, rec: Recorded) -> Bundle | None:
        return self.bundles.by_version(rec.decision.get("policy_version", ""))


class Always:
    """The same bundle for every decision (impact's proposed bundle)."""

    def __init__(self, value: Any = None):
        self.value = value

    def __call__(self, rec: Recorded) -> Any:
        return self.value


def _bind(resolvers: Iterable[Any], ledger: Any) -> None:
    for r in resolvers:
        if hasattr(r, "bind"):
            r.bind(ledger)


class _RecordedPipeline(GatePipeline):
    """The gate's steps, run over a recorded message.

    The signature is not checked again by default: the sealed bytes are the ones the gate
    verified before it recorded the exchange, and ``xledger verify`` proves every stored event
    unchanged (Merkle tree, signed checkpoints). The sender's key is still looked up and judged
    at the recorded time, so the decision's key id and a key-status rejection are reproduced.
    ``check_signatures`` verifies Ed25519 again (``--check-signatures``), for an auditor who
    does not take the ledger's proof for the signature.
    """

    check_signatures: bool = False

    def signature_valid(self, body: bytes, signature: bytes, public_key: bytes) -> bool:
        return super().signature_valid(body, signature, public_key) if self.check_signatures else True

    def subject_of(self, payload_type: str, payload: dict[str, Any]) -> str:
        # The pseudonym (an HMAC) is the gate's to derive for sealing; a re-decision never uses it
        # (the subject is the recorded one), so the audit does not compute it. The CPR number is
        # still validated with the payload (schemas.validation), so what is checked is unchanged.
        return ""


class Redecider:
    """Rebuilds the policy request from the sealed message exactly like the gate, and decides it.

    Each recorded decision is decided with a bundle (chosen by the caller: its recorded policy
    version, or a proposed one) and a directory chosen by ``directories``: by default the one the
    decision recorded (``services.directories``); ``directory`` forces one for all (a what-if)."""

    def __init__(self, ledger: Any, master_key: str | bytes, pseudonym_secret: bytes, keys: Any,
                 directory: Directory | None = None, codec: AvroCodec | None = None,
                 directories: DirectoryResolver | None = None, *, check_signatures: bool = False):
        self.ledger = ledger
        self.master_key = master_key
        self.sealer = LedgerSealer.for_ledger(ledger, master_key)
        self.secret = pseudonym_secret
        self.keys = keys  # the authority key set (services.keyset), with every key that ever signed
        self.directories = directories or DirectoryResolver(ledger, override=directory)
        self.codec = codec or AvroCodec()
        self.check_signatures = check_signatures
        self._engines: dict[tuple[str, str], PolicyEngine] = {}
        self._pipelines: dict[tuple[str, str], GatePipeline] = {}
        # Data keys unwrapped (and their AES-GCM objects) in this pass: a citizen's many exchanges
        # unwrap one key once. Cleared when the pass ends (``forget_keys``).
        self._keys = KeyMemo()

    def engine(self, bundle: Bundle, directory: Directory) -> PolicyEngine:
        # Cached per bundle version and directory version (its content hash).
        key = (bundle.version, directory.version)
        if key not in self._engines:
            if len(self._engines) >= 64:  # a bound, for a ledger that recorded many directories
                self._engines.clear()
                self._pipelines.clear()
            self._engines[key] = PolicyEngine(PinnedBundleSet(bundle), directory)
        return self._engines[key]

    def _pipeline(self, bundle: Bundle, directory: Directory) -> GatePipeline:
        # The steps up to the decision never seal, so one pipeline per bundle and directory.
        key = (bundle.version, directory.version)
        p = self._pipelines.get(key)
        if p is None:
            p = _RecordedPipeline(self.engine(bundle, directory), self.sealer, self.secret, self.keys, self.codec)
            p.check_signatures = self.check_signatures
            self._pipelines[key] = p
        return p

    def directory_for(self, rec: Recorded) -> tuple[Directory, str]:
        """The directory ``rec`` is re-decided under and how it was chosen (recorded, legacy,
        what-if). Raises UnknownDirectory."""
        directory, how = self.directories(rec)
        if directory is None:
            raise UnknownDirectory(rec.decision.get("directory_version", ""))
        return directory, how

    def decide(self, rec: Recorded, bundle: Bundle, directory: Directory | None = None, *,
               sealer: Any = None) -> dict[str, Any]:
        """The decision the gate would record today under ``bundle`` and ``directory`` (default:
        the directory the decision was made with). ``sealer`` is a page's batch sealer (``page``),
        else one key read per call.

        Raises SubjectErased (not re-evaluable), DecryptionError, Rejected or UnknownDirectory.
        """
        if directory is None:
            directory, _ = self.directory_for(rec)
        sealer = sealer or self.sealer
        raw = sealer.open(rec.subject, rec.sealed_message, sealed_message_aad(rec.exchange_id))
        src = rec.source or {}
        msg = Inbound(src.get("topic", ""), int(src.get("partition", 0)), int(src.get("offset", 0)), raw)
        pipeline = self._pipeline(bundle, directory)
        # The sender's key is judged as the gate judged it: at the time the gate checked it
        # (recorded since keys rotate; before that, the time of the decision).
        w = Work(msg, at=rec.verified_at)
        for step in pipeline.steps:
            step(w)
        return w.decision

    @contextmanager
    def _page_sealer(self, recs: list[Recorded]) -> Iterator[Any]:
        """A sealer for one page of records, with every subject's key read in one transaction (as
        the gate does per batch) instead of one per exchange. Keys are never created here."""
        with self.sealer.batch({r.subject for r in recs}, create=False) as sealer:
            # The page's wrapped keys (read once), with the pass's memo of what was unwrapped: the
            # wrapped key is still read for every exchange, so an erased subject is erased here at once.
            page_cipher = sealer.cipher
            sealer.cipher = CachingCipher(page_cipher._store, page_cipher.ring, page_cipher._erased, self._keys)
            yield sealer

    def decide_page(self, recs: list[Recorded], jobs: list[tuple[int, Bundle, Directory]]) -> list[Any]:
        """``decide`` for the records of one page ``recs`` that ``jobs`` names (index into ``recs``,
        bundle, directory), keys read as ``page`` reads them; per job, in order, the decision or
        ``Raised`` (what ``decide`` would have raised: ``Raised.get`` raises it again).

        Each job is worked exactly as ``decide`` works it (the same calls, in the same order, on
        its own ``Work``), but step by step across the page, as the gate runs a batch
        (``GatePipeline._run_batch``): one step over many messages keeps its code and tables
        (Avro, pydantic, the policy engine) in the CPU caches (about 5 % of a pass's CPU, measured
        paired on a 100k-entry ledger). A job that raises drops out at that step; what it raised
        is handed back in its place, whatever it is, so the caller meets it at the same record
        as one at a time."""
        out: list[Any] = [None] * len(jobs)
        live: list[tuple[int, list[Callable[[Work], None]], Work]] = []
        with self._page_sealer(recs) as sealer:
            for j, (i, bundle, directory) in enumerate(jobs):
                rec = recs[i]
                try:  # decide's own order: open, the source, the pipeline, the key's time
                    raw = sealer.open(rec.subject, rec.sealed_message, sealed_message_aad(rec.exchange_id))
                    src = rec.source or {}
                    msg = Inbound(src.get("topic", ""), int(src.get("partition", 0)), int(src.get("offset", 0)), raw)
                    steps = self._pipeline(bundle, directory).steps
                    live.append((j, steps, Work(msg, at=rec.verified_at)))
                except Exception as exc:
                    out[j] = _raised_below(exc)
        # Every job's pipeline comes from _pipeline and so has the same steps; a page that mixed
        # pipelines of different lengths would leave steps undone, so it is refused outright.
        if len({len(steps) for _, steps, _ in live}) > 1:
            raise RuntimeError("decide_page: the page's pipelines have different steps")
        for k in range(len(live[0][1]) if live else 0):
            still = []
            for item in live:
                try:
                    item[1][k](item[2])
                except Exception as exc:
                    out[item[0]] = _raised_below(exc)
                    continue
                still.append(item)
            live = still
        for j, _, w in live:
            out[j] = w.decision
        return out

    def forget_keys(self) -> None:
        """Drops the data keys this pass unwrapped: none outlives the pass."""
        self._keys.clear()


def load_bundles(extra: Iterable[Path] | None = None) -> BundleSet:
    """The shipped bundles plus any archived ones given (for versions no longer shipped)."""
    shipped = list(BundleSet.load().bundles)
    known = {b.version for b in shipped}
    for p in extra or []:
        b = load_bundle(p)
        if b.version not in known:
            shipped.append(b)
            known.add(b.version)
    # Archived bundles may share an effective date with a shipped one; look-up here is by version only.
    return _ByVersion(shipped)


class _ByVersion:
    def __init__(self, bundles: list[Bundle]):
        self.bundles = tuple(bundles)

    def by_version(self, version: str) -> Bundle | None:
        for b in self.bundles:
            if b.version == version:
                return b
        return None


# -- replay ----------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    prefix: str
    consumed: int
    until: datetime | None
    diffs: list[TableDiff]
    compared: bool

    @property
    def equal(self) -> bool:
        return all(d.equal for d in self.diffs)


def replay(ledger: Any, *, until: datetime | None = None, keep: bool = False, compare_live: bool = True,
           progress: Callable[[int, int], None] | None = None, tag: str | None = None) -> ReplayReport:
    """Rebuilds every read model from the ledger alone into fresh tables and compares them with the live ones.

    The live read models are caught up first (to the same position), so equal means
    the incremental, exactly-once projection and a from-scratch rebuild agree.
    """
    live = ReadModels(ledger)
    # The rebuilt tables get no secondary indexes: the projection looks rows up by primary key and
    # the comparison reads in primary-key order. Kept tables get them at the end, for queries.
    fresh = ReadModels(ledger, replay_prefix(tag or uuid.uuid4().hex[:12]), tracked=False, indexes=False)
    fresh.drop()
    fresh.create()
    try:
        if compare_live and until is None:
            live.catch_up()
            target = live.position()
            consumed = _catch_up_to(fresh, ledger, target, progress)
            diffs = compare(live, fresh)
            compared = True
        else:
            consumed = fresh.catch_up(until=until, progress=progress)
            diffs = [TableDiff(t, 0, fresh.count(t)) for t in TABLES]
            compared = False
        if keep:
            fresh.create_indexes()
        return ReplayReport(fresh.prefix, consumed, until, diffs, compared)
    finally:
        if not keep:
            fresh.drop()


# Pages of the rebuild projected in one transaction (``ReadModels.apply_pages``): ~4,000 entries,
# read before the transaction opens (~6 MB of stored events at ~1.5 kB each) and decoded a page at
# a time inside it. SQLite's write lock is held for one group, ~0.2 s at 1M entries.
REPLAY_PAGES_PER_TRANSACTION = 8


def _catch_up_to(models: ReadModels, ledger: Any, target: int, progress,
                 pages_per_transaction: int = REPLAY_PAGES_PER_TRANSACTION) -> int:
    # The untracked replay stops exactly where the live models stand (new entries may be arriving).
    consumed = 0
    start = 1
    while start <= target:
        group = []
        while start <= target and len(group) < pages_per_transaction:
            page = [n for n in ledger.notifications(start, min(models.page_size, target - start + 1))
                    if n.id <= target]
            if not page:
                start = target + 1
                break
            group.append(page)
            start = page[-1].id + 1
        if not group:
            break
        models.apply_pages(group)
        for page in group:
            consumed += len(page)
            if progress is not None:
                progress(page[-1].id, len(page))
    return consumed


# -- re-evaluation ---------------------------------------------------------------------------------

_COMPARED = ("outcome", "rule", "via", "reason", "citation", "warnings", "trace")


@dataclass
class Divergence:
    exchange_id: str
    message_id: str
    sender: str
    recipient: str
    field: str
    recorded: Any
    recomputed: Any

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if k not in ("recorded", "recomputed") or not isinstance(v, list) else f"{len(v)} steps")
                for k, v in self.__dict__.items()}


@dataclass
class ReevaluationReport:
    checked: int = 0
    agreeing: int = 0
    divergent: list[Divergence] = field(default_factory=list)
    not_reevaluable: list[dict[str, str]] = field(default_factory=list)  # erased subjects
    errors: list[dict[str, str]] = field(default_factory=list)  # unknown policy version, undecryptable, rejected
    # escalated recipients by their status after legal review (the recorded ESCALATE stays the decision)
    reviewed: dict[str, int] = field(default_factory=lambda: {"APPROVED": 0, "REFUSED": 0, "OPEN": 0})
    # decisions by the directory they were re-decided under: recorded (named by the decision),
    # legacy (recorded before directory versions: the legacy snapshot), what-if (--directory)
    directories: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.divergent and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "agreeing": self.agreeing, "ok": self.ok,
                "divergent": [d.to_dict() for d in self.divergent], "not_reevaluable": self.not_reevaluable,
                "errors": self.errors, "reviewed": self.reviewed, "directories": self.directories}


def diff_decisions(recorded: dict[str, Any], recomputed: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(recipient, field, recorded, recomputed) for every difference."""
    get, new_get = recorded.get, recomputed.get
    if (get("request_digest") == new_get("request_digest") and get("results") == new_get("results")
            and get("request_id") == new_get("request_id") and get("policy_version") == new_get("policy_version")):
        return []  # the common case, decided in a few comparisons
    out = []
    for key in ("request_id", "request_digest", "policy_version"):
        if recorded.get(key) != recomputed.get(key):
            out.append(("*", key, recorded.get(key), recomputed.get(key)))
    rec = {r["recipient"]: r for r in recorded.get("results", [])}
    new = {r["recipient"]: r for r in recomputed.get("results", [])}
    for recipient in sorted(set(rec) | set(new)):
        a, b = rec.get(recipient), new.get(recipient)
        if a is None or b is None:
            out.append((recipient, "recipient", a is not None, b is not None))
            continue
        for f in _COMPARED:
            if a.get(f) != b.get(f):
                out.append((recipient, f, a.get(f), b.get(f)))
    return out


def reevaluate(ledger: Any, redecider: Redecider, bundles: Any,
               progress: Callable[[int], None] | None = None, *, workers: int | None = 1,
               bundle_for: BundleFor | None = None, directory_for: DirectoryFor | None = None,
               per_exchange: bool = False) -> ReevaluationReport:
    """Every recorded decision re-decided under its own policy version. An escalation's legal
    review follows the decision and does not change it: an approved or refused escalation is
    consistent when the decision still escalates and its verdicts keep the rules of review.

    ``bundle_for`` / ``directory_for`` say what each decision is judged under (default: its
    recorded version from ``bundles``, and the Redecider's directory). ``workers`` > 1 splits the
    log into that many ranges run in their own processes (None: ``auto_workers``); the report is
    the same as one pass. ``per_exchange`` reads each subject key in its own transaction (the
    path before keys were read per page; kept to compare the two in tests and bench/).
    """
    job = _Job.of(redecider, bundle_for or RecordedVersion(bundles), directory_for or redecider.directories,
                  per_exchange)
    workers = auto_workers(ledger) if workers is None else workers
    with _long_lived_frozen(), _pass_of(redecider):
        if workers > 1 and _shareable(ledger):
            return _merge_reevaluations(_shared(ledger, redecider, job, workers, progress))
        return _reevaluate_in(ledger, redecider, job, 1, None, progress)


def _reevaluate_in(ledger: Any, redecider: Redecider, job: "_Job", start: int, stop: int | None,
                   progress: Callable[[int], None] | None,
                   verdicts: dict[uuid.UUID, list[dict[str, Any]]] | None = None) -> ReevaluationReport:
    from services.escalations import audit_verdicts

    if verdicts is None:  # else the caller read them and bound the resolvers, once for many chunks
        _bind((job.bundle_for, job.directory_for), ledger)
        verdicts = recorded_verdicts(ledger)
    report = ReevaluationReport()
    for page in recorded_pages(ledger, start=start, stop=stop, progress=progress):
        # What each record is judged under, then the page's decisions (``_decide_page``); the report
        # is written record by record below, meeting what a call raised where it was called.
        bundles = [_outcome(job.bundle_for, rec) for rec in page]
        placed = [_outcome(job.directory_for, rec) if b is not None and type(b) is not Raised else None
                  for rec, b in zip(page, bundles)]
        decided = _decide_page(redecider, page, bundles, placed, job.per_exchange)
        for rec, bundle, where, recomputed in zip(page, bundles, placed, decided):
            report.checked += 1
            version = rec.decision.get("policy_version", "")
            if type(bundle) is Raised:
                bundle.get()
            if any(r["outcome"] == "ESCALATE" for r in rec.decision["results"]) or rec.exchange_id in verdicts:
                status, problems = audit_verdicts(rec.summary, rec.decision, verdicts.get(rec.exchange_id, []),
                                                  bundle)
                for s in status.values():
                    report.reviewed[s] = report.reviewed.get(s, 0) + 1
                for recipient, code, detail in problems:
                    report.errors.append({**_ident(rec), "recipient": recipient, "error": code, "detail": detail[:200]})
            if bundle is None:
                report.errors.append({**_ident(rec), "error": "UNKNOWN_POLICY_VERSION", "detail": version})
                continue
            try:
                _resolved_directory(where, rec, report.directories)
                if type(recomputed) is Raised:
                    recomputed.get()
            except UnknownDirectory as exc:
                report.errors.append({**_ident(rec), "error": "UNKNOWN_DIRECTORY_VERSION", "detail": exc.version})
                continue
            except SubjectErased:
                report.not_reevaluable.append({**_ident(rec), "reason": "SUBJECT_ERASED"})
                continue
            except DecryptionError as exc:
                report.errors.append({**_ident(rec), "error": "UNDECRYPTABLE", "detail": type(exc).__name__})
                continue
            except Rejected as exc:
                report.errors.append({**_ident(rec), "error": exc.reason, "detail": exc.detail[:200]})
                continue
            diffs = diff_decisions(rec.decision, recomputed)
            if diffs:
                for recipient, f, a, b in diffs:
                    report.divergent.append(Divergence(str(rec.exchange_id), rec.message_id, rec.sender,
                                                       recipient, f, a, b))
            else:
                report.agreeing += 1
    return report


def _ident(rec: Recorded) -> dict[str, str]:
    # Built only for a record the report names (an error, an erased subject), not for every one.
    return {"exchange_id": str(rec.exchange_id), "message_id": rec.message_id, "sender": rec.sender}


def _merge_reevaluations(parts: list[ReevaluationReport]) -> ReevaluationReport:
    out = ReevaluationReport()
    for p in parts:  # in range order: the order of one sequential pass
        out.checked += p.checked
        out.agreeing += p.agreeing
        out.divergent += p.divergent
        out.not_reevaluable += p.not_reevaluable
        out.errors += p.errors
        for k, v in p.reviewed.items():
            out.reviewed[k] = out.reviewed.get(k, 0) + v
        for k, v in p.directories.items():
            out.directories[k] = out.directories.get(k, 0) + v
    return out


def _directory_of(placed: Any) -> Directory | None:
    """The directory of a resolver's answer; None for none, or an answer that is not (directory,
    how) (the report's loop unpacks it again, and meets the error there)."""
    if placed is None or type(placed) is Raised:
        return None
    try:
        directory, _ = placed
    except (TypeError, ValueError):
        return None
    return directory


def _decide_page(redecider: Redecider, page: list[Recorded], bundles: list[Any], placed: list[Any],
                 per_exchange: bool) -> list[Any]:
    """Per record of ``page``: its decision under its bundle and directory, ``Raised`` (what deciding
    raised), or None where it is not decided (no bundle, no directory, or a resolver raised).
    ``per_exchange``: one at a time, each subject key read in its own transaction (the path before)."""
    jobs = [(i, b, d) for i, (b, w) in enumerate(zip(bundles, placed))
            if b is not None and type(b) is not Raised and (d := _directory_of(w)) is not None]
    out: list[Any] = [None] * len(page)
    if per_exchange:
        results = [_outcome(redecider.decide, page[i], b, d) for i, b, d in jobs]
    else:
        results = redecider.decide_page(page, jobs) if jobs else []
    for (i, _, _), r in zip(jobs, results):
        out[i] = r
    return out


# -- running over partitions of the log --------------------------------------------------------------

# Below this many entries a second process saves little: starting one costs up to ~1 s of CPU.
PARALLEL_FROM = 50_000


def auto_workers(ledger: Any) -> int:
    """Two processes on a machine with two or more cores and a log worth splitting, else one."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if cores >= 2 and ledger.max_notification_id() >= PARALLEL_FROM and _shareable(ledger) else 1


def _shareable(ledger: Any) -> bool:
    # A worker opens the ledger again by its URL: an in-memory SQLite database is this process's alone.
    url = str(getattr(ledger, "url", "") or "")
    return bool(url) and "memory" not in url and "mode=memory" not in url


@dataclass
class _Job:
    """What a worker process needs to re-decide as the parent would; plain, picklable data."""

    url: str
    master_key: Any
    secret: bytes
    keys: Any
    codec: Any
    check_signatures: bool
    bundle_for: Any
    directory_for: Any
    per_exchange: bool = False
    since: date | None = None
    proposed: Any = None
    known: Any = None
    # The verdicts the calling process read (re-evaluation): a worker judges with the same ones
    # instead of reading the whole log's verdict entries again.
    verdicts: dict[uuid.UUID, list[dict[str, Any]]] | None = None

    @classmethod
    def of(cls, r: Redecider, bundle_for: Any, directory_for: Any, per_exchange: bool = False, **kw: Any) -> "_Job":
        # A live key set (re-read on change) holds a lock and a callback: send what it holds now.
        keys = r.keys.current() if hasattr(r.keys, "current") else r.keys
        return cls(getattr(r.ledger, "url", ""), r.master_key, r.secret, keys, r.codec,
                   r.check_signatures, bundle_for, directory_for, per_exchange, **kw)

    def open(self) -> tuple[Any, Redecider]:
        from ledger.application import Ledger

        # The caller opened this ledger already: a worker runs none of eventsourcing's DDL, which two
        # workers started at once raced on PostgreSQL ("tuple concurrently updated") once they were forked.
        ledger = Ledger(self.url, env={"CREATE_TABLE": "n"})
        # The job's directory resolver decides every chunk; one of the Redecider's own would load
        # the shipped directory again in each worker, unused.
        resolver = self.directory_for if isinstance(self.directory_for, DirectoryResolver) else None
        return ledger, Redecider(ledger, self.master_key, self.secret, self.keys, codec=self.codec,
                                 directories=resolver, check_signatures=self.check_signatures)


@dataclass
class _State:
    """One process's means to do chunks: its ledger, its Redecider, what it read once for all."""

    job: _Job
    ledger: Any
    redecider: Redecider
    verdicts: dict[uuid.UUID, list[dict[str, Any]]] | None
    owned: bool  # opened by a worker (closed when it is done), or the caller's

    @classmethod
    def of(cls, job: _Job, ledger: Any, redecider: Redecider, owned: bool) -> "_State":
        _bind((job.bundle_for, job.directory_for), ledger)
        verdicts = job.verdicts
        if verdicts is None and job.proposed is None:
            verdicts = recorded_verdicts(ledger)
        return cls(job, ledger, redecider, verdicts, owned)


def _open_state(job: _Job) -> _State:
    ledger, redecider = job.open()
    state = _State.of(job, ledger, redecider, owned=True)
    # As _long_lived_frozen, for the worker's pass (it ends with the process); a forked worker has
    # the threshold already, a spawned one not.
    settle_heap(PASS_YOUNG_GENERATION)
    return state


def _close_state(state: _State) -> None:
    if state.owned:
        state.ledger.close()


# The youngest generation is collected every this many allocations during a pass, not every 700
# (as the gate, services.gate.GATE_YOUNG_GENERATION). A pass frees what it allocates by reference
# counting, page by page; at 700 the collector ran every two or three exchanges, each time walking
# the page in flight, and its older generations the pages before (~4 % of the pass's CPU).
# Cyclic garbage is still collected, held to about that many objects.
PASS_YOUNG_GENERATION = 50_000


@contextmanager
def _long_lived_frozen() -> Iterator[None]:
    """A pass allocates and drops a page of records and decisions at a time, and each of the
    collector's full collections walks everything alive: the policy bundles, the directories, the
    engines' tables, the imported modules. Frozen (``gc.freeze``) for the pass, these are left out
    of its collections (10-20 % of the pass's CPU, measured in bench/); they are unfrozen after,
    so a long-running caller collects them as before. The youngest generation's threshold is
    raised for the pass (``PASS_YOUNG_GENERATION``) and put back after."""
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], PASS_YOUNG_GENERATION), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def _pass_of(redecider: Redecider) -> Iterator[None]:
    """One pass of ``redecider``: the data keys it unwrapped are dropped when it ends (a worker
    process's end with the process)."""
    try:
        yield
    finally:
        redecider.forget_keys()


def _run_chunk(state: _State, start: int, stop: int, progress: Callable[[int], None]) -> Any:
    covered = lambda last: progress(last - start + 1)  # noqa: E731
    if state.job.proposed is None:
        return _reevaluate_in(state.ledger, state.redecider, state.job, start, stop, covered, state.verdicts)
    return _impact_in(state.ledger, state.redecider, state.job, start, stop, covered, bound=True)


def _shared(ledger: Any, redecider: Redecider, job: _Job, workers: int, progress: Callable[[int], None] | None
            ) -> list[Any]:
    """The log in chunks, done by this process (at once) and ``workers - 1`` worker processes (once
    started); the chunks' reports in log order."""
    from services.partitions import run_shared

    local = _State.of(job, ledger, redecider, False)
    job = dataclasses.replace(job, verdicts=local.verdicts)
    return run_shared(job, ledger.max_notification_id(), workers, local_state=local,
                      open_fn=_open_state, run_fn=_run_chunk, close_fn=_close_state, progress=progress)


def _reevaluate_range(job: _Job, start: int, stop: int, progress: Callable[[int], None]) -> ReevaluationReport:
    ledger, redecider = job.open()
    try:
        return _reevaluate_in(ledger, redecider, job, start, stop, lambda last: progress(last - start + 1))
    finally:
        ledger.close()


# -- policy impact ---------------------------------------------------------------------------------


@dataclass
class ImpactReport:
    bundle_name: str
    bundle_version: str
    since: date | None
    effective_from: date | None = None
    requests: int = 0
    decisions: int = 0
    unchanged: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    # (recorded outcome, rule, reason) -> (new outcome, rule, reason) -> message ids
    flips: dict[tuple[tuple[str, str, str], tuple[str, str, str]], list[str]] = field(default_factory=dict)
    changes: dict[tuple[tuple[str, str, str], tuple[str, str, str]], list[str]] = field(default_factory=dict)
    # the same groups, with the decisions they hold: message id, recipient, exchange id, exchange date
    decided: dict[tuple[tuple[str, str, str], tuple[str, str, str]], list[dict[str, str]]] = field(default_factory=dict)
    recorded_under: dict[str, int] = field(default_factory=dict)  # bundle name (or version) -> requests
    directories: dict[str, int] = field(default_factory=dict)  # recorded / legacy / what-if -> requests
    first_day: date | None = None
    last_day: date | None = None

    @property
    def flipped(self) -> int:
        return sum(len(v) for v in self.flips.values())

    @property
    def changed(self) -> int:
        return sum(len(v) for v in self.changes.values())

    def groups(self, which: str = "flips", examples: int = 5) -> list[dict[str, Any]]:
        """The changed decisions grouped by recorded and proposed (outcome, rule, reason), largest
        group first; ``examples`` are message ids, ``example_decisions`` say which recipient and day."""
        data = self.flips if which == "flips" else self.changes
        out = []
        for (old, new), ids in sorted(data.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            out.append({
                "from": {"outcome": old[0], "rule": old[1], "reason": old[2]},
                "to": {"outcome": new[0], "rule": new[1], "reason": new[2]},
                "count": len(ids), "examples": list(dict.fromkeys(ids))[:examples],
                "example_decisions": self.decided.get((old, new), [])[:examples],
            })
        return out

    def to_dict(self, examples: int = 5) -> dict[str, Any]:
        return {
            "bundle": self.bundle_name, "policy_version": self.bundle_version,
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "since": self.since.isoformat() if self.since else None,
            "period": [d.isoformat() for d in (self.first_day, self.last_day)] if self.first_day else None,
            "recorded_under": self.recorded_under,
            "directories": self.directories,
            "requests": self.requests, "decisions": self.decisions, "unchanged": self.unchanged,
            "flipped": self.flipped, "changed_rule_or_reason": self.changed,
            "flips": self.groups("flips", examples), "changes": self.groups("changes", examples),
            "skipped": self.skipped,
        }


def impact(ledger: Any, redecider: Redecider, bundle: Bundle, *, since: date | None = None,
           progress: Callable[[int], None] | None = None, known: Any = None, workers: int | None = 1,
           directory_for: DirectoryFor | None = None, per_exchange: bool = False) -> ImpactReport:
    """Runs ``bundle`` over every recorded request (from ``since``), whatever its date, and groups
    what would change by recorded and proposed outcome, rule and reason. ``known`` (a bundle set)
    names the bundles the records were decided under. ``workers``, ``directory_for`` and
    ``per_exchange`` as for ``reevaluate``."""
    job = _Job.of(redecider, Always(bundle), directory_for or redecider.directories, per_exchange,
                  since=since, proposed=bundle, known=known)
    workers = auto_workers(ledger) if workers is None else workers
    with _long_lived_frozen(), _pass_of(redecider):
        if workers > 1 and _shareable(ledger):
            return _merge_impacts(_shared(ledger, redecider, job, workers, progress))
        return _impact_in(ledger, redecider, job, 1, None, progress)


def _impact_range(job: _Job, start: int, stop: int, progress: Callable[[int], None]) -> ImpactReport:
    ledger, redecider = job.open()
    try:
        return _impact_in(ledger, redecider, job, start, stop, lambda last: progress(last - start + 1))
    finally:
        ledger.close()


def _impact_in(ledger: Any, redecider: Redecider, job: _Job, start: int, stop: int | None,
               progress: Callable[[int], None] | None, bound: bool = False) -> ImpactReport:
    if not bound:
        _bind((job.bundle_for, job.directory_for), ledger)
    bundle, since, known = job.proposed, job.since, job.known
    report = ImpactReport(bundle.name, bundle.version, since, bundle.effective_from)
    for page in recorded_pages(ledger, start=start, stop=stop, progress=progress):
        page = [rec for rec in page if since is None or rec.occurred_on >= since]
        # As in _reevaluate_in: what each record is judged under (here the directory first), then the
        # page's decisions, then the report record by record.
        placed = [_outcome(job.directory_for, rec) for rec in page]
        bundles = [_outcome(job.bundle_for, rec) if _directory_of(w) is not None else None
                   for rec, w in zip(page, placed)]
        decided = _decide_page(redecider, page, bundles, placed, job.per_exchange)
        for rec, where, bundle, recomputed in zip(page, placed, bundles, decided):
            _impact_one(report, rec, where, bundle, recomputed, known)
    return report


def _resolved_directory(where: Any, rec: Recorded, counts: dict[str, int]) -> Any:
    """The directory a record was decided with, from its resolver's answer (raised again if the
    resolver raised), counted by how it was found; UnknownDirectory if none."""
    directory, how = where.get() if type(where) is Raised else where
    if directory is None:
        raise UnknownDirectory(rec.decision.get("directory_version", ""))
    counts[how] = counts.get(how, 0) + 1
    return directory


def _impact_one(report: ImpactReport, rec: Recorded, where: Any, bundle: Any, recomputed: Any, known: Any) -> None:
    report.requests += 1
    version = rec.decision.get("policy_version", "")
    under = known.by_version(version) if known is not None else None
    key = under.name if under is not None else version
    report.recorded_under[key] = report.recorded_under.get(key, 0) + 1
    day = rec.occurred_on
    report.first_day = min(report.first_day or day, day)
    report.last_day = max(report.last_day or day, day)
    try:
        _resolved_directory(where, rec, report.directories)
        if type(bundle) is Raised:
            bundle.get()
        if type(recomputed) is Raised:
            recomputed.get()
    except UnknownDirectory as exc:
        report.skipped.append({"message_id": rec.message_id, "sender": rec.sender,
                               "reason": f"UNKNOWN_DIRECTORY_VERSION {exc.version}"})
        return
    except SubjectErased:
        report.skipped.append({"message_id": rec.message_id, "sender": rec.sender, "reason": "SUBJECT_ERASED"})
        return
    except (DecryptionError, Rejected) as exc:
        report.skipped.append({"message_id": rec.message_id, "sender": rec.sender,
                               "reason": getattr(exc, "reason", type(exc).__name__)})
        return
    tally(report, rec, rec.decision["results"], recomputed["results"])


def tally(report: ImpactReport, rec: Recorded, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Adds one request's per-recipient results, before and after, to the report's groups."""
    new = {r["recipient"]: r for r in after}
    for old in before:
        report.decisions += 1
        nr = new.get(old["recipient"])
        if nr is None:
            continue
        a = (old["outcome"], old.get("rule") or "", old.get("reason") or "")
        b = (nr["outcome"], nr.get("rule") or "", nr.get("reason") or "")
        if a == b:
            report.unchanged += 1
            continue
        (report.flips if a[0] != b[0] else report.changes).setdefault((a, b), []).append(rec.message_id)
        report.decided.setdefault((a, b), []).append({
            "message_id": rec.message_id, "recipient": old["recipient"], "exchange_id": str(rec.exchange_id),
            "occurred_on": rec.occurred_on.isoformat()})


def _merge_impacts(parts: list[ImpactReport]) -> ImpactReport:
    first = parts[0]
    out = ImpactReport(first.bundle_name, first.bundle_version, first.since, first.effective_from)
    for p in parts:  # in range order: dicts keep the insertion order of one sequential pass
        out.requests += p.requests
        out.decisions += p.decisions
        out.unchanged += p.unchanged
        out.skipped += p.skipped
        for mine, theirs in ((out.flips, p.flips), (out.changes, p.changes), (out.decided, p.decided)):
            for k, v in theirs.items():
                mine.setdefault(k, []).extend(v)
        for k, v in p.recorded_under.items():
            out.recorded_under[k] = out.recorded_under.get(k, 0) + v
        for k, v in p.directories.items():
            out.directories[k] = out.directories.get(k, 0) + v
        if p.first_day is not None:
            out.first_day = min(out.first_day or p.first_day, p.first_day)
            out.last_day = max(out.last_day or p.last_day, p.last_day)
    return out


def _triple(t: dict[str, str]) -> str:
    return " ".join(x for x in (t["outcome"], t["rule"], t["reason"]) if x)


def impact_summary(report: ImpactReport, examples: int = 3) -> list[str]:
    """The impact report as plain lines for a legal officer: what it was run over, then every group of
    changed decisions by rule and reason with its count and example decisions (message id → recipient)."""
    period = f", exchanges of {report.first_day} – {report.last_day}" if report.first_day else ""
    under = ", ".join(f"{n} under {name}" for name, n in sorted(report.recorded_under.items()))
    lines = [f"policy impact of {report.bundle_name} (effective {report.effective_from}, "
             f"{report.bundle_version[:19]}…) over {report.requests} recorded requests "
             f"({report.decisions} decisions{period})" + (f"; recorded {under}" if under else ""),
             f"{report.flipped} would flip outcome, {report.changed} would change rule or reason only, "
             f"{report.unchanged} unchanged, {len(report.skipped)} skipped (erased or unreadable)"]
    for which, title in (("flips", "would flip outcome"), ("changes", "would change rule or reason only")):
        groups = report.groups(which, examples)
        if groups:
            lines.append(f"{title}, by rule and reason:")
        for g in groups:
            lines.append(f"  {g['count']:>4}  {_triple(g['from'])}  →  {_triple(g['to'])}")
            lines.append("        e.g. " + "; ".join(f"{d['message_id']} → {d['recipient']} ({d['occurred_on']})"
                                                     for d in g["example_decisions"]))
    return lines


# -- subject access report -------------------------------------------------------------------------


SUBJECT_COLUMNS = ("occurred_at", "sender", "recipient", "outcome", "rule", "via", "reason", "citation", "context",
                   "cooperation_id", "purpose", "categories", "payload_type", "message_id", "policy_version")


def subject_report(ledger: Any, pseudonym: str, *, catch_up: bool = True) -> dict[str, Any]:
    """Everything disclosed (and refused) about one subject: the GDPR art. 15 register."""
    models = ReadModels(ledger)
    if catch_up:
        models.catch_up()
    rows = models.subject_register(pseudonym)
    entries = [{k: r[k] for k in SUBJECT_COLUMNS} for r in rows]
    disclosed = [e for e in entries if e["outcome"] == "ALLOW"]
    return {
        "subject": pseudonym,
        "erasures": [{k: r[k] for k in ("erased_at", "key_id", "reason")} for r in models.subject_erasures(pseudonym)],
        "entries": entries,
        "disclosed": len(disclosed),
        "denied": sum(1 for e in entries if e["outcome"] == "DENY"),
        "escalated": sum(1 for e in entries if e["outcome"] == "ESCALATE"),
        "recipients": sorted({e["recipient"] for e in disclosed}),
    }


def resolve_subject(value: str, secret: bytes) -> str:
    """A 64-hex pseudonym as is, or a CPR number (validated) turned into its pseudonym.

    Raises schemas.cpr.InvalidCPR, whose message never contains the number.
    """
    from schemas.cpr import pseudonym

    v = value.strip().lower()
    if len(v) == 64 and all(ch in "0123456789abcdef" for ch in v):
        return v
    return pseudonym(value.strip(), secret)


__all__ = [
    "Recorded", "recorded_decisions", "recorded_pages", "recorded_verdicts", "RecordedVersion", "Always",
    "auto_workers", "PinnedBundleSet", "Redecider", "load_bundles", "replay", "ReplayReport",
    "reevaluate", "ReevaluationReport", "Divergence", "diff_decisions", "impact", "ImpactReport", "impact_summary",
    "subject_report",
    "resolve_subject", "SUBJECT_COLUMNS",
]
