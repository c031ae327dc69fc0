"""Read models: pure projections of ledger events into side tables, exactly once.

The projections read only the events (never the aggregates' current state), so
the same code rebuilds them from the ledger alone: ``ReadModels(ledger).catch_up()``
keeps the live tables (prefix ``xl_rm_``) current, with one tracking record
(``Tracking("readmodels", last notification id)``) written in the *same*
transaction as the rows of each page; a replay writes the same projection into
fresh tables under another prefix and compares.

A page is projected at once: its events are decoded (only the topics below), its
rows built in Python and written with one ``executemany`` per table (one statement on
PostgreSQL: ``ledger.tables.executemany``), the counters summed over the page and added
with one upsert per key. The rows are exactly those
of projecting one event at a time.

Tables (prefix + name):

- ``exchanges``   one row per requested exchange (no personal data; the subject pseudonym).
- ``decisions``   one row per exchange × recipient: who, when, context, cooperation, purpose,
  outcome, rule, via, reason, citation, policy version, review status.
- ``disclosures`` the per-subject register (GDPR art. 15): subject pseudonym × exchange × recipient.
- ``stats``       decision counts by day × cooperation (context) × outcome × rule × reason.
- ``rejections``  messages that could not be decided, by reason (no message content).
- ``totals``      running counts for status pages: requests, decisions by outcome (ALLOW, DENY,
  ESCALATE, one per recipient) and rejected messages; read in one indexed lookup at any size.
- ``counts``      decisions by outcome per sender, per authority (sender or recipient) and per review
  status (kind × key × outcome): the review queue's counts for an agency, an authority filter or a
  status filter, read in one indexed lookup at any size. Rows whose count falls to 0 are removed.
- ``escalations`` one row per escalated exchange × recipient: when it was opened, the legal
  officers' verdicts so far (approvals, approvers) and how it closed. A closing verdict also sets
  the subject register's row to the result after review (an approved escalation is a disclosure).
- ``erasures``    one row per destroyed data key of a subject (``SubjectErasure``): when and why, so
  a subject report can say the subject was erased without reading the log.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from eventsourcing.persistence import IntegrityError as ESIntegrityError
from eventsourcing.persistence import Notification, Tracking
from ledger.tables import Cursor
from ledger.transcoder import event_state

if TYPE_CHECKING:
    from ledger.integrity import EventRows

TRACKING_NAME = "readmodels"
LIVE_PREFIX = "xl_rm_"

# An exchange is one RequestDecided event; ledgers written before it hold a Requested and a Decided.
_REQUEST_DECIDED = "Exchange.RequestDecided"
_REQUESTED = "Exchange.Requested"
_DECIDED = "Exchange.Decided"
_REVIEWED = "Exchange.Reviewed"
_VERDICT = "Exchange.EscalationVerdict"
_REJECTED = "RejectedMessage.Rejected"
_ERASED = "SubjectErasure.Erased"
ERASED_TOPIC = "ledger.domain:" + _ERASED

REVIEW_STATUS = {"UPHOLD": "UPHELD", "OVERTURN": "OVERTURNED", "FLAG": "FLAGGED"}

# name -> (columns with types, primary key, ordering for comparisons)
TABLES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "exchanges": (
        [("exchange_id", "TEXT"), ("message_id", "TEXT"), ("sender", "TEXT"), ("subject", "TEXT"),
         ("occurred_at", "TEXT"), ("day", "TEXT"), ("recorded_at", "TEXT"), ("context", "TEXT"),
         ("underlying_basis", "TEXT"), ("cooperation_id", "TEXT"), ("purpose", "TEXT"),
         ("payload_type", "TEXT"), ("categories", "TEXT"), ("position", "BIGINT")],
        ["exchange_id"],
    ),
    "decisions": (
        [("exchange_id", "TEXT"), ("recipient", "TEXT"), ("message_id", "TEXT"), ("occurred_at", "TEXT"),
         ("day", "TEXT"), ("recorded_at", "TEXT"), ("sender", "TEXT"), ("context", "TEXT"),
         ("underlying_basis", "TEXT"), ("cooperation_id", "TEXT"), ("purpose", "TEXT"), ("outcome", "TEXT"),
         ("rule", "TEXT"), ("via", "TEXT"), ("reason", "TEXT"), ("citation", "TEXT"), ("warnings", "TEXT"),
         ("policy_version", "TEXT"), ("review_status", "TEXT"), ("review_count", "INTEGER"),
         ("last_review_at", "TEXT"), ("position", "BIGINT")],
        ["exchange_id", "recipient"],
    ),
    "disclosures": (
        [("subject", "TEXT"), ("exchange_id", "TEXT"), ("recipient", "TEXT"), ("message_id", "TEXT"),
         ("occurred_at", "TEXT"), ("sender", "TEXT"), ("context", "TEXT"), ("cooperation_id", "TEXT"),
         ("purpose", "TEXT"), ("categories", "TEXT"), ("payload_type", "TEXT"), ("outcome", "TEXT"),
         ("rule", "TEXT"), ("via", "TEXT"), ("reason", "TEXT"), ("citation", "TEXT"),
         ("policy_version", "TEXT")],
        ["subject", "exchange_id", "recipient"],
    ),
    "stats": (
        [("day", "TEXT"), ("cooperation", "TEXT"), ("outcome", "TEXT"), ("rule", "TEXT"), ("reason", "TEXT"),
         ("n", "BIGINT")],
        ["day", "cooperation", "outcome", "rule", "reason"],
    ),
    "rejections": (
        [("day", "TEXT"), ("reason", "TEXT"), ("n", "BIGINT")],
        ["day", "reason"],
    ),
    "totals": (
        [("name", "TEXT"), ("n", "BIGINT")],
        ["name"],
    ),
    "counts": (
        [("kind", "TEXT"), ("key", "TEXT"), ("outcome", "TEXT"), ("n", "BIGINT")],
        ["kind", "key", "outcome"],
    ),
    "erasures": (
        [("subject", "TEXT"), ("key_id", "TEXT"), ("erased_at", "TEXT"), ("reason", "TEXT"), ("position", "BIGINT")],
        ["subject", "key_id"],
    ),
    "escalations": (
        [("exchange_id", "TEXT"), ("recipient", "TEXT"), ("message_id", "TEXT"), ("sender", "TEXT"),
         ("context", "TEXT"), ("purpose", "TEXT"), ("occurred_at", "TEXT"), ("day", "TEXT"), ("opened_at", "TEXT"),
         ("rule", "TEXT"), ("reason", "TEXT"), ("citation", "TEXT"), ("warnings", "TEXT"), ("policy_version", "TEXT"),
         ("categories", "TEXT"), ("status", "TEXT"), ("approvals", "INTEGER"), ("approvers", "TEXT"),
         ("verdicts", "INTEGER"), ("resolved_at", "TEXT"), ("resolved_by", "TEXT"), ("result_citation", "TEXT"),
         ("position", "BIGINT")],
        ["exchange_id", "recipient"],
    ),
}

_INDEXES = {
    # occurred_at, position: the review queue's newest-first page is an index walk at any size; each
    # filter column with them: a filtered page is an index walk too, however rare or common the value.
    "decisions": [["day"], ["position"], ["occurred_at", "position"],
                  *([col, "occurred_at", "position"] for col in
                    ("outcome", "context", "rule", "reason", "review_status", "sender", "recipient"))],
    "disclosures": [["subject"]],
    # status, opened_at: the escalation queue (open ones, oldest first) is an index walk.
    "escalations": [["status"], ["opened_at"], ["status", "opened_at"]],
}

_PREFIX_RE = re.compile(r"^xl_[a-z0-9_]{1,40}_$")

# The event kinds the projections read, by topic suffix; every other event is skipped undecoded.
_KINDS = (_REQUEST_DECIDED, _REQUESTED, _DECIDED, _REVIEWED, _VERDICT, _REJECTED, _ERASED)
_KIND_OF: dict[str, str | None] = {}


def _kind(topic: str) -> str | None:
    kind = _KIND_OF.get(topic, "")
    if kind == "":
        kind = _KIND_OF[topic] = next((k for k in _KINDS if topic.endswith(k)), None)
    return kind


def columns(table: str) -> list[str]:
    return [c for c, _ in TABLES[table][0]]


_COLUMNS = {t: columns(t) for t in TABLES}
# Bound parameters per IN (...) list; SQLite before 3.32 allows 999 in one statement.
_IN_CHUNK = 500


class ReadModels:
    """The read models of one ledger, under one table prefix.

    ``ReadModels(ledger)`` is the live set (prefix ``xl_rm_``, tracked); a
    replay uses ``ReadModels(ledger, prefix="xl_rp_…_", tracked=False)``.
    """

    def __init__(self, ledger: Any, prefix: str = LIVE_PREFIX, *, tracked: bool | None = None, page_size: int = 500,
                 indexes: bool = True):
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"read-model table prefix must look like xl_name_ (got {prefix!r})")
        self.ledger = ledger
        self.tables = ledger.tables
        self.prefix = prefix
        self.tracked = (prefix == LIVE_PREFIX) if tracked is None else tracked
        self.page_size = page_size
        # Without the secondary indexes (the primary keys stay): a replay's tables, which only the
        # projection's own lookups (by primary key) and the comparison (in primary-key order) read.
        # Kept up on every insert, they were an eighth of a replay's rebuild at 1M entries.
        self.indexes = indexes
        self.create()

    # -- schema ------------------------------------------------------------------------------

    def t(self, table: str) -> str:
        return self.prefix + table

    def create(self) -> None:
        with self.tables.ddl() as c:
            if self.tables.is_postgres:
                # Two concurrent CREATE TABLE IF NOT EXISTS can both find the table missing, and
                # one then fails on PostgreSQL's catalog (seen with the relay and a reader
                # starting together): creators of one prefix take turns.
                c.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                          [f"xledger-readmodels:{self.tables.schema_prefix}{self.prefix}"])
            present = self._present_tables(c)
            for name, (cols, pk) in TABLES.items():
                body = ", ".join(f"{col} {typ}" for col, typ in cols)
                c.execute(f"CREATE TABLE IF NOT EXISTS {self.t(name)} ({body}, PRIMARY KEY ({', '.join(pk)}))")
            if present and "totals" not in present:
                # Read models projected before the totals existed: count what they hold, in the
                # transaction that creates the table, so no page is projected in between.
                self._backfill_totals(c)
            if present and "counts" not in present:
                self._backfill_counts(c)
            if self.indexes:
                self._create_indexes(c)
        if self.tracked and present and "escalations" not in present:
            # Read models projected before the escalations table existed: fill it from the log up to
            # where they stand, so the live set equals a replay.
            self._backfill_escalations()
        if self.tracked and present and "erasures" not in present:
            self._backfill_erasures()

    def _create_indexes(self, c: Cursor) -> None:
        for name, indexes in _INDEXES.items():
            for idx in indexes:
                self._create_index(c, name, idx)

    def _create_index(self, c: Cursor, name: str, idx: Sequence[str]) -> None:
        # Index names must not be schema-qualified on PostgreSQL: no "xl_" in them.
        ix = "ix" + self.prefix[2:] + name + "_" + "_".join(idx)
        c.execute(f"CREATE INDEX IF NOT EXISTS {ix} ON {self.t(name)} ({', '.join(idx)})")

    def create_indexes(self) -> None:
        """The secondary indexes of tables made with ``indexes=False`` (a kept replay, for queries), one
        transaction each: on SQLite one for all would hold the write lock, which the gates and the relay
        wait for, as long as building every index takes."""
        for name, indexes in _INDEXES.items():
            for idx in indexes:
                with self.tables.ddl() as c:
                    self._create_index(c, name, idx)
        self.indexes = True

    def _backfill_totals(self, c: Cursor) -> None:
        rows: list[tuple[str, int]] = []
        c.execute(f"SELECT COUNT(*) FROM {self.t('exchanges')}")
        rows.append(("requests", int(c.fetchall()[0][0])))
        c.execute(f"SELECT outcome, COUNT(*) FROM {self.t('decisions')} GROUP BY outcome")
        rows += [(str(o), int(n)) for o, n in c.fetchall() if o]
        c.execute(f"SELECT COALESCE(SUM(n), 0) FROM {self.t('rejections')}")
        rows.append(("rejected", int(c.fetchall()[0][0])))
        c.executemany(f"INSERT INTO {self.t('totals')} (name, n) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                      [r for r in rows if r[1]])

    def _backfill_counts(self, c: Cursor) -> None:
        d = self.t("decisions")
        rows: dict[tuple[str, str, str], int] = {}
        for kind, sql in (
                ("sender", f"SELECT sender, outcome, COUNT(*) FROM {d} GROUP BY sender, outcome"),
                ("authority", f"SELECT sender, outcome, COUNT(*) FROM {d} GROUP BY sender, outcome"),
                ("authority", f"SELECT recipient, outcome, COUNT(*) FROM {d} WHERE recipient <> sender "
                              "GROUP BY recipient, outcome"),
                ("status", f"SELECT review_status, outcome, COUNT(*) FROM {d} GROUP BY review_status, outcome")):
            c.execute(sql)
            for key, outcome, n in c.fetchall():
                k = (kind, str(key or ""), str(outcome or ""))
                rows[k] = rows.get(k, 0) + int(n)
        c.executemany(f"INSERT INTO {self.t('counts')} (kind, key, outcome, n) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (kind, key, outcome) DO NOTHING", [[*k, n] for k, n in sorted(rows.items()) if n])

    def counts(self, kind: str, keys: Sequence[str]) -> dict[str, int]:
        """Decisions by outcome whose ``kind`` (sender, authority, status) is one of ``keys``."""
        if not keys:
            return {}
        rows = self.tables.fetchall(
            f"SELECT outcome, SUM(n) FROM {self.t('counts')} WHERE kind = ? AND key IN "
            f"({', '.join('?' * len(keys))}) GROUP BY outcome", [kind, *keys])
        return {str(o): int(n or 0) for o, n in rows}

    def totals(self) -> dict[str, int]:
        """requests, ALLOW, DENY, ESCALATE (per recipient) and rejected, as projected so far."""
        out = {"requests": 0, "ALLOW": 0, "DENY": 0, "ESCALATE": 0, "rejected": 0}
        for name, n in self.tables.fetchall(f"SELECT name, n FROM {self.t('totals')}"):
            out[str(name)] = int(n)
        return out

    def _present_tables(self, c: Cursor) -> set[str]:
        names = {self.t(name): name for name in TABLES}
        if self.tables.is_postgres:
            # Names as parameters: translate() schema-qualifies xl_ names only in the SQL text.
            c.execute("SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = COALESCE(NULLIF(?, ''), current_schema())",
                      [self.tables.schema_prefix.rstrip(".")])
        else:
            c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {names[r[0]] for r in c.fetchall() if r[0] in names}

    def _backfill_escalations(self) -> None:
        """The escalation rows of every decision already projected. No verdict can predate the
        table (the code that records verdicts created it), so only decisions are read; the rows
        are inserted if absent, so two processes starting at once both succeed."""
        target = self.position()
        mapper = self.ledger.mapper
        cols = _COLUMNS["escalations"]
        rows: list[tuple] = []
        with self._transaction() as (raw, c):
            out = _PageRows(self, c)
            for n in self.ledger.all_notifications():
                if n.id > target:
                    break
                if not n.topic.endswith((_REQUEST_DECIDED, _DECIDED)):
                    continue
                s = event_state(mapper, n, traces=False)
                decision = s["decision"]
                escalated = [r for r in decision["results"] if r["outcome"] == "ESCALATE"]
                if not escalated:
                    continue
                oid = str(n.originator_id)
                out.prefetch_exchanges({oid})
                ex = out.exchange(oid)
                if ex is None:
                    continue
                for r in escalated:
                    rows.append(_escalation_row(ex, r, decision.get("policy_version", ""), s["timestamp"], n.id))
            if rows:
                c.executemany(f"INSERT INTO {self.t('escalations')} ({', '.join(cols)}) VALUES "
                              f"({', '.join('?' * len(cols))}) ON CONFLICT (exchange_id, recipient) DO NOTHING", rows)

    def _backfill_erasures(self) -> None:
        """The erasures recorded before the table existed, read from the log (once) up to where the
        read models stand; inserted if absent, so two processes starting at once both succeed."""
        target = self.position()
        cols = _COLUMNS["erasures"]
        mapper = self.ledger.mapper
        rows = [_erasure_row(n.id, event_state(mapper, n))
                for n in self.ledger.all_notifications(topics=[ERASED_TOPIC]) if n.id <= target]
        if rows:
            with self._transaction() as (raw, c):
                c.executemany(f"INSERT INTO {self.t('erasures')} ({', '.join(cols)}) VALUES "
                              f"({', '.join('?' * len(cols))}) ON CONFLICT (subject, key_id) DO NOTHING", rows)

    def drop(self) -> None:
        with self.tables.cursor() as c:
            for name in TABLES:
                c.execute(f"DROP TABLE IF EXISTS {self.t(name)}")

    # -- catching up ---------------------------------------------------------------------------

    def position(self) -> int:
        return self.ledger.position(TRACKING_NAME) or 0 if self.tracked else 0

    def catch_up(self, *, until: datetime | None = None, progress: Callable[[int, int], None] | None = None,
                 max_entries: int | None = None, rows: EventRows | None = None, through: int | None = None) -> int:
        """Projects every notification after the tracked position (with ``max_entries``, stops
        at the first page end past that many; with ``through``, at the first page end at or past
        that notification id, and at once if already there); returns how many it consumed.

        With ``tracked`` each page is one transaction with its tracking record, so a
        page is projected exactly once even when two processes catch up at once.

        ``rows`` (``ledger.integrity.EventRows``): the events the Merkle tree's integration just read;
        pages inside the ids they cover are taken from them instead of the events table, the rest
        is read as always (the read models may be behind or ahead of the tree).
        """
        start = (self.position() if self.tracked else self._untracked_position) + 1
        consumed = 0
        mapper = self.ledger.mapper
        while True:
            if through is not None and start > through:
                return consumed
            page = rows.notifications(start, self.page_size) if rows is not None else None
            if page is None:
                page = self.ledger.notifications(start, self.page_size)
            if not page:
                return consumed
            stop = False
            events: dict[int, Any] | None = None
            if until is not None:
                # The cut needs every event's timestamp; keep the decoded events for the projection.
                events = {}
                kept = []
                for n in page:
                    e = event_state(mapper, n, traces=False)
                    if datetime.fromisoformat(e["timestamp"]) > until:
                        stop = True
                        break
                    events[n.id] = e
                    kept.append(n)
                page = kept
                if not page:
                    return consumed
            try:
                self._apply_page(page, events)
            except ESIntegrityError:
                # Another process projected this page first: continue from its position.
                start = self.position() + 1
                continue
            consumed += len(page)
            if progress is not None:
                progress(page[-1].id, len(page))
            start = page[-1].id + 1
            if stop or (max_entries is not None and consumed >= max_entries):
                return consumed

    def project_next(self, page: Sequence[Notification], events: dict[int, Any]) -> bool:
        """Projects ``page`` if it is exactly the next page of the live read models, using the events
        the caller already decoded (``events``: notification id → the event's attributes as
        ``ledger.transcoder.event_state`` gives them; the rest are decoded here).

        The relay hands over each page it delivered, so the events it decoded are not decoded
        twice; a page that is not next (the read models are behind, or ahead) is left to
        ``catch_up``. Returns whether it projected the page.
        """
        if not self.tracked or not page or self.position() != page[0].id - 1:
            return False
        try:
            self._apply_page(page, events)
        except ESIntegrityError:
            return False  # another process projected it first
        return True

    _untracked_position = 0

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        # SideTables.cursor takes SQLite's write lock first: eventsourcing begins transactions
        # deferred, and a deferred transaction that has read and then writes after another
        # connection committed fails at once with "database is locked" (this crashed the relay
        # next to two gates).
        with self.tables.cursor() as c:
            yield c.raw, c

    def apply_pages(self, pages: Sequence[Sequence[Notification]]) -> None:
        """Projects consecutive pages in ONE transaction, each page as ``_apply_page`` projects it:
        for untracked tables only (a replay's), which have no tracking record per page to write.

        A commit per page of 500 was 40 % of a replay's rebuild at 1M entries on SQLite (each
        one writes the page's B-tree pages to the WAL and syncs it, and an auto-checkpoint
        follows every few). The caller reads the pages beforehand, outside the transaction: an
        in-memory SQLite ledger's connection pool lets no reader in while a writer holds it."""
        if self.tracked:
            raise ValueError("apply_pages is for untracked read models: a tracked page is one transaction")
        pages = [p for p in pages if p]
        if not pages:
            return
        with self._transaction() as (raw, c):
            for page in pages:  # decoded page by page: one page's events in memory at a time
                self._project(c, self._decode(page, None))
        self._untracked_position = pages[-1][-1].id

    def _apply_page(self, page: Sequence[Notification], events: dict[int, dict[str, Any]] | None = None) -> None:
        """Projects one page in one transaction: the page's rows are built in Python and
        written with one ``executemany`` per table (one statement per row made the
        projection several times slower than reading and decoding the events).

        Events are read as ``event_state`` gives them (``events`` holds those the caller decoded
        already): dicts of their attributes, no event objects, the decisions' policy traces read as
        empty lists (``traces=False``): no projection reads them."""
        work = self._decode(page, events)  # before the transaction: SQLite's write lock is not held meanwhile
        with self._transaction() as (raw, c):
            self._project(c, work)
            if self.tracked:
                try:
                    # eventsourcing has no public call that writes a tracking record inside a
                    # transaction the caller holds; its own projection views (subclasses of its
                    # tracking recorders) call _insert_tracking(cursor, tracking) for this.
                    self.ledger.recorder._insert_tracking(raw, Tracking(TRACKING_NAME, page[-1].id))
                except ESIntegrityError:
                    raise
                except Exception as exc:  # the driver's own integrity error, on either backend
                    if "unique" in str(exc).lower() or "duplicate" in str(exc).lower() or "constraint" in str(exc).lower():
                        raise ESIntegrityError(str(exc)) from exc
                    raise
        if not self.tracked:
            self._untracked_position = page[-1].id

    def _decode(self, page: Sequence[Notification], events: dict[int, dict[str, Any]] | None
                ) -> list[tuple[str, int, str, dict[str, Any]]]:
        """(kind, position, originator id, attributes) of the page's events the projections read."""
        mapper = self.ledger.mapper
        # Only the topics the projections read are decoded.
        work: list[tuple[str, int, str, dict[str, Any]]] = []
        # An exchange's events often come one after the other (Requested and Decided in older
        # ledgers): its id is written out once for them (str(UUID) is ~0.8 us). The rows the Merkle
        # tree's step kept share one UUID object per exchange; rows read afresh have one each,
        # compared by value.
        last_id, last_text = None, ""
        for n in page:
            kind = _kind(n.topic)
            if kind is None:
                continue
            e = events.get(n.id) if events is not None else None
            oid = n.originator_id
            if oid is not last_id and oid != last_id:
                last_id, last_text = oid, str(oid)
            work.append((kind, n.id, last_text, e if e is not None else event_state(mapper, n, traces=False)))
        return work

    def _project(self, c: Cursor, work: list[tuple[str, int, str, dict[str, Any]]]) -> None:
        """The rows of one decoded page (``_decode``), written through ``c`` in the caller's transaction."""
        out = _PageRows(self, c)
        requested = {oid for kind, _, oid, _ in work if kind == _REQUESTED}
        out.prefetch_exchanges({oid for kind, _, oid, _ in work if kind == _DECIDED} - requested)
        for kind, position, oid, e in work:
            if kind == _REQUEST_DECIDED:
                # The rows of a Requested event and of its Decided event, both from this one event.
                self._requested(out, position, oid, e)
                self._decided(out, position, oid, e)
            elif kind == _REQUESTED:
                self._requested(out, position, oid, e)
            elif kind == _DECIDED:
                self._decided(out, position, oid, e)
            elif kind == _REVIEWED:
                # A review updates decision rows, possibly ones from this very page.
                out.flush_rows()
                self._reviewed(c, oid, e, out)
            elif kind == _VERDICT:
                out.flush_rows()
                self._verdict(c, oid, e)
            elif kind == _ERASED:
                out.rows["erasures"].append(_erasure_row(position, e))
            else:
                self._rejected(out, e)
        out.flush()

    # -- the projections -----------------------------------------------------------------------

    # Rows are built as tuples in the tables' column order (TABLES); ``e`` is an event's attributes.

    def _requested(self, out: "_PageRows", position: int, oid: str, e: dict[str, Any]) -> None:
        s = e["summary"]
        occurred = str(s.get("occurred_at", ""))
        row = (oid, e["message_id"], e["sender"], e["subject"], occurred, occurred[:10], e["timestamp"],
               s.get("context") or "", s.get("underlying_basis") or "", s.get("cooperation_id") or "",
               s.get("purpose") or "", s.get("payload_type") or "",
               ",".join(s.get("present_categories") or s.get("declared_categories") or []), position)
        out.rows["exchanges"].append(row)
        out.exchanges[oid] = row
        out.bump("totals", ("requests",), 1)

    def _decided(self, out: "_PageRows", position: int, oid: str, e: dict[str, Any]) -> None:
        ex = out.exchange(oid)
        if ex is None:  # a decision without its request cannot happen in this ledger; keep what we can
            ex = (oid, *[""] * (len(_COLUMNS["exchanges"]) - 1))
        (exchange_id, message_id, sender, subject, occurred_at, day, _, context, basis, cooperation_id, purpose,
         payload_type, categories, _) = ex
        decision = e["decision"]
        policy_version = decision.get("policy_version", "")
        recorded_at = e["timestamp"]
        decisions, disclosures = out.rows["decisions"], out.rows["disclosures"]
        bump, counters = out.bump, out.counts
        stats: dict[tuple[str, ...], int] = {}
        totals, counts = counters["totals"], counters["counts"]
        for r in decision["results"]:
            recipient, outcome = r["recipient"], r["outcome"]
            rule, via, reason, citation = r.get("rule") or "", r.get("via") or "", r.get("reason") or "", \
                r.get("citation") or ""
            decisions.append((exchange_id, recipient, message_id, occurred_at, day, recorded_at, sender, context,
                              basis, cooperation_id, purpose, outcome, rule, via, reason, citation,
                              ",".join(r.get("warnings") or []), policy_version, "PENDING", 0, "", position))
            disclosures.append((subject, exchange_id, recipient, message_id, occurred_at, sender, context,
                                cooperation_id, purpose, categories, payload_type, outcome, rule, via, reason,
                                citation, policy_version))
            key = (day, context, outcome, rule, reason)
            stats[key] = stats.get(key, 0) + 1
            if outcome is None or sender is None or recipient is None:
                bump("totals", (outcome,), 1)
                bump("counts", ("sender", sender, outcome), 1)
                bump("counts", ("authority", sender, outcome), 1)
                bump("counts", ("status", "PENDING", outcome), 1)
                if recipient != sender:
                    bump("counts", ("authority", recipient, outcome), 1)
            else:  # no NULL in any key: summed here, as bump would
                k = (outcome,)
                totals[k] = totals.get(k, 0) + 1
                k = ("sender", sender, outcome)
                counts[k] = counts.get(k, 0) + 1
                k = ("authority", sender, outcome)
                counts[k] = counts.get(k, 0) + 1
                k = ("status", "PENDING", outcome)
                counts[k] = counts.get(k, 0) + 1
                if recipient != sender:
                    k = ("authority", recipient, outcome)
                    counts[k] = counts.get(k, 0) + 1
            if outcome == "ESCALATE":
                out.rows["escalations"].append(_escalation_row(ex, r, policy_version, recorded_at, position))
        for key, n in stats.items():
            bump("stats", key, n)

    def _reviewed(self, c: Cursor, oid: str, e: dict[str, Any], out: "_PageRows") -> None:
        review = e["review"] or {}
        status = REVIEW_STATUS.get(str(review.get("action", "")).upper())
        where, params = "exchange_id = ?", [oid]
        if review.get("recipient"):
            where += " AND recipient = ?"
            params.append(review["recipient"])
        at = e["timestamp"]
        if status:
            c.execute(f"SELECT review_status, outcome FROM {self.t('decisions')} WHERE {where}", params)
            for old, outcome in c.fetchall():
                if old != status:
                    out.bump("counts", ("status", str(old or ""), str(outcome or "")), -1)
                    out.bump("counts", ("status", status, str(outcome or "")), 1)
            c.execute(f"UPDATE {self.t('decisions')} SET review_status = ?, review_count = review_count + 1, "
                      f"last_review_at = ? WHERE {where}", [status, at, *params])
        else:
            c.execute(f"UPDATE {self.t('decisions')} SET review_count = review_count + 1, last_review_at = ? "
                      f"WHERE {where}", [at, *params])

    def _verdict(self, c: Cursor, oid: str, e: dict[str, Any]) -> None:
        v = e["verdict"] or {}
        approve = 1 if v.get("verdict") == "APPROVE" else 0
        status = v.get("status") or "OPEN"
        closed = status != "OPEN"
        at = e["timestamp"]
        officer = str(v.get("officer", ""))
        result = v.get("result") or {}
        key = [oid, v.get("recipient", "")]
        c.execute(
            f"UPDATE {self.t('escalations')} SET approvals = approvals + ?, verdicts = verdicts + 1, status = ?, "
            "approvers = CASE WHEN ? = 0 THEN approvers WHEN approvers = '' THEN ? ELSE approvers || ',' || ? END, "
            "resolved_at = ?, resolved_by = ?, result_citation = ? WHERE exchange_id = ? AND recipient = ?",
            [approve, status, approve, officer, officer, at if closed else "", officer if closed else "",
             result.get("citation") or "", *key])
        if closed and result:
            # The register shows what became of the request: an approved escalation was disclosed.
            c.execute(f"UPDATE {self.t('disclosures')} SET outcome = ?, rule = ?, via = ?, reason = ?, citation = ? "
                      "WHERE exchange_id = ? AND recipient = ?",
                      [result.get("outcome", ""), result.get("rule") or "", result.get("via") or "",
                       result.get("reason") or "", result.get("citation") or "", *key])

    def _rejected(self, out: "_PageRows", e: dict[str, Any]) -> None:
        out.bump("rejections", (e["timestamp"][:10], e["reason"]), 1)
        out.bump("totals", ("rejected",), 1)

    # -- reading ---------------------------------------------------------------------------------

    def rows(self, table: str) -> list[tuple]:
        cols, pk = TABLES[table]
        names = [c for c, _ in cols]
        return [tuple(r) for r in self.tables.fetchall(
            f"SELECT {', '.join(names)} FROM {self.t(table)} ORDER BY {', '.join(pk)}")]

    def query(self, table: str, where: str = "", params: Sequence[Any] = (), order: str = "",
              limit: int | None = None, offset: int = 0, cols: Sequence[str] | None = None) -> list[dict[str, Any]]:
        names = list(cols or columns(table))
        sql = f"SELECT {', '.join(names)} FROM {self.t(table)}"
        if where:
            sql += f" WHERE {where}"
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [dict(zip(names, r)) for r in self.tables.fetchall(sql, params)]

    def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {self.t(table)}" + (f" WHERE {where}" if where else "")
        return int(self.tables.fetchone(sql, params)[0])

    def subject_erasures(self, subject: str) -> list[dict[str, Any]]:
        return self.query("erasures", "subject = ?", [subject], order="erased_at, key_id")

    def subject_register(self, subject: str) -> list[dict[str, Any]]:
        return self.query("disclosures", "subject = ?", [subject], order="occurred_at, message_id, recipient")


def _escalation_row(ex: tuple, r: dict[str, Any], policy_version: str, recorded_at: str, position: int) -> tuple:
    """An escalated recipient's row (``escalations``) from its exchange's row (``exchanges``)."""
    (exchange_id, message_id, sender, _, occurred_at, day, _, context, _, _, purpose, _, categories, _) = ex
    return (exchange_id, r["recipient"], message_id, sender, context, purpose, occurred_at, day, recorded_at,
            r.get("rule") or "", r.get("reason") or "", r.get("citation") or "", ",".join(r.get("warnings") or []),
            policy_version, categories, "OPEN", 0, "", 0, "", "", "", position)


def _erasure_row(position: int, e: dict[str, Any]) -> tuple:
    return (e["subject"], e["key_id"], e["timestamp"], e["reason"], position)


class _PageRows:
    """The rows one page adds, written per table with ``executemany`` by ``flush``.

    Counters (``stats``, ``rejections``) are summed over the page and added with one
    upsert per key. Exchange rows of this page are kept here, and those of earlier pages
    are read in one query up front, because each decision copies its exchange's columns.
    """

    _BUMPED = {"stats": ["day", "cooperation", "outcome", "rule", "reason"], "rejections": ["day", "reason"],
               "totals": ["name"], "counts": ["kind", "key", "outcome"]}

    def __init__(self, models: ReadModels, c: Cursor):
        self.models = models
        self.c = c
        self.rows: dict[str, list[tuple]] = {"exchanges": [], "decisions": [], "disclosures": [], "escalations": [],
                                             "erasures": []}
        self.counts: dict[str, dict[tuple, int]] = {t: {} for t in self._BUMPED}
        # Keys with a NULL never match an existing row (SQL equality), so each bump of one is
        # its own row, as a per-event SELECT-then-INSERT would have made it.
        self.null_counts: dict[str, list[tuple[tuple, int]]] = {t: [] for t in self._BUMPED}
        # Exchange rows (tuples in column order) of this page, and of earlier ones read back.
        self.exchanges: dict[str, tuple] = {}
        self._stored: dict[str, tuple] = {}

    def bump(self, table: str, key: tuple, n: int) -> None:
        if None in key:
            self.null_counts[table].append((key, n))
            return
        counts = self.counts[table]
        counts[key] = counts.get(key, 0) + n

    def exchange(self, exchange_id: str) -> tuple | None:
        row = self.exchanges.get(exchange_id)
        return row if row is not None else self._stored.get(exchange_id)

    def prefetch_exchanges(self, ids: set[str]) -> None:
        if not ids:
            return
        cols = _COLUMNS["exchanges"]
        table = self.models.t("exchanges")
        wanted = sorted(ids)
        for i in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[i: i + _IN_CHUNK]
            if self.models.tables.is_postgres:
                self.c.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE exchange_id = ANY(?)", [chunk])
            else:
                self.c.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE exchange_id IN "
                               f"({', '.join('?' * len(chunk))})", chunk)
            for r in self.c.fetchall():
                self._stored[r[0]] = tuple(r)

    def flush_rows(self) -> None:
        for table, rows in self.rows.items():
            if rows:
                cols = _COLUMNS[table]
                self.c.executemany(f"INSERT INTO {self.models.t(table)} ({', '.join(cols)}) "
                                   f"VALUES ({', '.join('?' * len(cols))})", rows)
                rows.clear()

    def flush(self) -> None:
        self.flush_rows()
        for table, key_cols in self._BUMPED.items():
            counts, nulls = self.counts[table], self.null_counts[table]
            # In key order, so that two processes upserting the same keys lock them in the same
            # order (PostgreSQL) instead of deadlocking. A net 0 (a decision reviewed twice in the
            # page) changes nothing, and adds no row.
            upserts = [[*key, n] for key, n in sorted(counts.items()) if n]
            if upserts:
                cols = [*key_cols, "n"]
                self.c.executemany(
                    f"INSERT INTO {self.models.t(table)} AS cur ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT ({', '.join(key_cols)}) "
                    "DO UPDATE SET n = cur.n + excluded.n", upserts)
                if any(n < 0 for n in counts.values()):
                    # A review moved decisions from one status to another: no row of 0 is kept, as
                    # none is made when the table is filled from the decisions (old read models).
                    self.c.execute(f"DELETE FROM {self.models.t(table)} WHERE n = 0")
            counts.clear()
            if nulls:
                cols = [*key_cols, "n"]
                self.c.executemany(f"INSERT INTO {self.models.t(table)} ({', '.join(cols)}) "
                                   f"VALUES ({', '.join('?' * len(cols))})", [[*key, n] for key, n in nulls])
                nulls.clear()


# -- replay -------------------------------------------------------------------------------------


# A comparison holds at most this many rows of each table at once (one fetch), plus one group of
# rows with the same primary key per side, and keeps this many differing rows per side as examples.
COMPARE_FETCH = 2000
DIFF_EXAMPLES = 20


@dataclass
class TableDiff:
    table: str
    live: int
    replayed: int
    only_live: list[tuple] = field(default_factory=list)  # examples, in primary-key order
    only_replayed: list[tuple] = field(default_factory=list)
    only_live_count: int = 0  # all of them
    only_replayed_count: int = 0

    def __post_init__(self) -> None:
        self.only_live_count = max(self.only_live_count, len(self.only_live))
        self.only_replayed_count = max(self.only_replayed_count, len(self.only_replayed))

    @property
    def equal(self) -> bool:
        return not self.only_live_count and not self.only_replayed_count


def _sort_key(pk_values: Sequence[Any]) -> tuple:
    # NULLs first, as the ORDER BY below asks of both databases; None never meets a str.
    return tuple((0, "") if v is None else (1, v) for v in pk_values)


class OutOfOrder(RuntimeError):
    """The database returned rows out of the order the comparison merges by: no verdict is given."""


def _groups(rows: Iterator[tuple], pk_index: Sequence[int], what: str) -> Iterator[tuple[tuple, list[tuple]]]:
    """Consecutive rows with the same primary key, as (sort key, rows); checks the order."""
    key = group = None
    for r in rows:
        k = _sort_key([r[i] for i in pk_index])
        if group is not None and k == key:
            group.append(r)
            continue
        if group is not None:
            if k < key:
                raise OutOfOrder(f"{what}: rows not in primary-key order")
            yield key, group
        key, group = k, [r]
    if group is not None:
        yield key, group


def diff_sorted(table: str, live: Iterator[tuple], replayed: Iterator[tuple], pk_index: Sequence[int],
                examples: int = DIFF_EXAMPLES) -> TableDiff:
    """Compares two row streams sorted by primary key as multisets of rows, holding one group of
    rows per side at a time: memory does not grow with the table. Rows only on one side are
    counted; the first ``examples`` of each side are kept."""
    diff = TableDiff(table, 0, 0)
    a, b = _groups(live, pk_index, f"{table} (live)"), _groups(replayed, pk_index, f"{table} (replayed)")
    na, nb = next(a, None), next(b, None)

    def only(side: str, rows: list[tuple]) -> None:
        kept = diff.only_live if side == "live" else diff.only_replayed
        kept.extend(rows[: max(0, examples - len(kept))])
        if side == "live":
            diff.only_live_count += len(rows)
        else:
            diff.only_replayed_count += len(rows)

    while na is not None or nb is not None:
        if nb is None or (na is not None and na[0] < nb[0]):
            diff.live += len(na[1])
            only("live", na[1])
            na = next(a, None)
        elif na is None or nb[0] < na[0]:
            diff.replayed += len(nb[1])
            only("replayed", nb[1])
            nb = next(b, None)
        else:
            ga, gb = na[1], nb[1]
            diff.live += len(ga)
            diff.replayed += len(gb)
            if ga != gb:
                rest = list(gb)
                left = []
                for r in ga:
                    if r in rest:
                        rest.remove(r)
                    else:
                        left.append(r)
                if left:
                    only("live", left)
                if rest:
                    only("replayed", rest)
            na, nb = next(a, None), next(b, None)
    return diff


def compare(live: ReadModels, replayed: ReadModels, *, fetch: int = COMPARE_FETCH) -> list[TableDiff]:
    """Every table of the live read models against the replayed ones, streamed in primary-key order
    (never the whole table in memory: a replay of a million entries compares in the memory of a
    thousand). Both streams are read in one transaction, so they see one state of the database."""
    out = []
    with live.tables.cursor(commit=False) as c:
        for table in TABLES:
            names = columns(table)
            pk_index = [names.index(k) for k in TABLES[table][1]]
            out.append(_compare_table(table, _fetches(live, c, table, fetch), _fetches(replayed, c, table, fetch),
                                      pk_index))
    return out


def _compare_table(table: str, live: Iterator[list[tuple]], replayed: Iterator[list[tuple]],
                   pk_index: Sequence[int]) -> TableDiff:
    """``diff_sorted`` of two tables read a fetch at a time, with the fetches that are equal as lists
    skipped whole: in a replay that agrees, every pair of fetches is equal, and one list comparison
    (in C) replaces grouping and comparing each row in Python (a third of the comparison's CPU).
    Rows of equal fetches are the same multiset on both sides, so they add nothing to the
    differences; from the first pair that differs on, the rest of both tables is merged row by row,
    as ever (rows of a key group before that point were equal on both sides and cancel out)."""
    skipped = 0
    for fa in live:
        fb = next(replayed, None)
        if fa == fb:
            skipped += len(fa)
            continue
        rest = diff_sorted(table, chain(fa, chain.from_iterable(live)),
                           chain(fb or (), chain.from_iterable(replayed)), pk_index)
        break
    else:
        rest = diff_sorted(table, iter(()), chain.from_iterable(replayed), pk_index)
    rest.live += skipped
    rest.replayed += skipped
    return rest


def _fetches(models: ReadModels, c: Cursor, table: str, fetch: int) -> Iterator[list[tuple]]:
    """The table's rows in primary-key order as lists of ``fetch`` tuples, from a cursor of its own on
    the transaction's connection (on PostgreSQL a server-side cursor: psycopg's ordinary cursor would
    bring every row into memory first)."""
    names = columns(table)
    pg = models.tables.is_postgres
    # Python compares str by code point: the "C" collation (PostgreSQL) and BINARY (SQLite's
    # default) order UTF-8 text the same way; NULLs first on both.
    collate = ' COLLATE "C"' if pg else ""
    order = ", ".join(f"{k}{collate} NULLS FIRST" for k in TABLES[table][1])
    sql = models.tables.translate(f"SELECT {', '.join(names)} FROM {models.t(table)} ORDER BY {order}")
    if pg:
        from psycopg.rows import tuple_row

        cur = c.raw.connection.cursor(name=f"xl_cmp_{models.prefix}{table}", withhold=False, row_factory=tuple_row)
        cur.itersize = fetch
    else:
        cur = c.raw.sqlite_cursor.connection.cursor()
        cur.row_factory = None  # plain tuples
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(fetch):
            yield [r if type(r) is tuple else tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in rows]
    finally:
        cur.close()


def replay_prefix(tag: str) -> str:
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())[:16] or "x"
    return f"xl_rp_{tag}_"


__all__ = ["ReadModels", "TableDiff", "compare", "diff_sorted", "OutOfOrder", "COMPARE_FETCH", "replay_prefix", "TRACKING_NAME", "LIVE_PREFIX", "TABLES", "columns"]
