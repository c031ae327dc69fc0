"""The ledger application: a thin eventsourcing layer that records batches atomically with their source position.

A batch from one Kafka partition (or one page of the outbox) is stored in one
transaction together with one tracking record, so a message is recorded once or
not at all, and a restarted reader resumes from ``position(name)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, InterfaceError, Notification, OperationalError, Tracking
from eventsourcing.utils import retry
import structlog

from ledger.domain import (Delivery, DeliveryPage, Exchange, QuarantinedDelivery, RejectedMessage, SubjectErasure,
                           erasure_id)
from ledger.subject_crypto import MasterKeyUnavailable
from ledger.schema_lock import sqlite_schema_lock
from ledger.tables import Cursor, SideTables
from ledger.url import persistence_env

__all__ = ["Ledger", "LedgerConfigError", "IntegrityError", "Tracking", "kafka_tracking_name", "LEDGER_UNAVAILABLE", "SCHEMA_LOCK_KEY"]

# What a service loop waits out and retries: the database is locked, restarting or unreachable
# (eventsourcing maps both drivers' errors onto the first two), or a master-key rotation names
# a master key this process does not hold yet (it logs which; the operator adds it).
LEDGER_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, MasterKeyUnavailable)


def kafka_tracking_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


# PostgreSQL advisory lock held while a Ledger creates its tables: CREATE TABLE IF NOT EXISTS is not
# safe against itself, and services started at the same moment on a new database (the gate, the
# relay, forked workers) failed with a unique violation on pg_type or "tuple concurrently updated".
# A constant of our own (the first 8 bytes of sha256("xledger schema")), per database.
SCHEMA_LOCK_KEY = 0x54D4_E3E3_CB46_C92B
SCHEMA_LOCK_WAIT_S = 60


@contextmanager
def _schema_lock(env: dict[str, str]) -> Iterator[None]:
    """Serialises table creation between processes on one database: PostgreSQL's advisory lock, or
    on SQLite a lock file beside the database (``ledger.schema_lock``); a no-op when the caller opens
    without creating tables, and for an in-memory SQLite database (one process)."""
    creating = env.get("CREATE_TABLE", "y").strip().lower() not in ("n", "no", "false", "0", "off")
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite" and creating:
        with sqlite_schema_lock(env.get("SQLITE_DBNAME", ""), SCHEMA_LOCK_WAIT_S):
            yield
        return
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres" or not creating:
        yield
        return
    import psycopg

    params = {"dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"],
              "user": env["POSTGRES_USER"], "password": env.get("POSTGRES_PASSWORD") or None,
              "connect_timeout": env.get("POSTGRES_CONNECT_TIMEOUT") or "5"}
    try:
        conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None})
    except psycopg.Error:
        # Unreachable: opening goes on without the lock and fails in eventsourcing's connect, with
        # the error every caller already handles (LEDGER_UNAVAILABLE).
        yield
        return
    try:
        # A transaction-level lock, held by keeping this transaction open while the tables are made:
        # released when it ends, whatever happens to the connection, and it keeps behind a pooler in
        # transaction mode (PgBouncer), where a session lock and its unlock could land on two server
        # connections. Bounded: making the tables takes well under a second, so a holder that keeps
        # the lock this long is stuck, and the opener reports an unavailable ledger (exit 3).
        try:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{SCHEMA_LOCK_WAIT_S * 1000}ms",))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        except psycopg.Error as exc:
            raise OperationalError(f"another process held the ledger's schema lock for over {SCHEMA_LOCK_WAIT_S} s, "
                                   f"or the lock could not be taken ({type(exc).__name__})") from None
        yield
    finally:
        try:
            conn.rollback()
        except psycopg.Error:
            pass  # a broken connection's transaction, and its lock, end with it
        conn.close()


class LedgerConfigError(ValueError):
    """eventsourcing was configured (through the environment) to store events in a way the ledger
    does not support."""


def _refuse_other_storage(datastore: Any) -> None:
    """Before any table is made: eventsourcing reads these settings from the environment (also with
    the prefix ``XLEDGER_``, this application's name), and the ledger depends on their defaults. The
    Merkle tree, the read models and the relay take originator ids as UUIDs, and read notifications
    on the premise that ids commit in order, which on PostgreSQL eventsourcing's table lock on insert
    gives; its database functions insert without that lock and without our side rows and tracking."""
    kind = getattr(datastore, "originator_id_type", "uuid")
    if kind != "uuid":
        raise LedgerConfigError(f"ORIGINATOR_ID_TYPE={kind!r} is set in the environment: the ledger stores "
                                "originator ids as UUIDs; unset it")
    if getattr(datastore, "enable_db_functions", False):
        raise LedgerConfigError("POSTGRES_ENABLE_DB_FUNCTIONS is set in the environment: the ledger inserts "
                                "events itself, in id order with its side rows; unset it")


# The settings that say which database (and PostgreSQL schema) the ledger is: the URL's alone.
_LOCATION_KEYS = frozenset({"PERSISTENCE_MODULE", "SQLITE_DBNAME", "POSTGRES_DBNAME", "POSTGRES_HOST",
                            "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_SCHEMA"})


log = structlog.get_logger(__name__)

def _compress_events_with_lz4(tables: SideTables, events_table: str) -> None:
    """On PostgreSQL 14 and later built with lz4: the events' ``state`` compressed with lz4 instead of
    the default pglz. An exchange's RequestDecided event (~5 KB) is over the size at which PostgreSQL
    compresses a row (~2 KB): with pglz the server spent ~50 µs more of its CPU per exchange on it
    than with lz4 (87 against 36; bench/README.md, "One event per exchange"). Only values written
    afterwards are compressed so; older ones read as before.

    The ALTER takes an exclusive lock on the events table, and every reader and writer queues behind
    it while it waits; so it is looked up first (made once per database), waits at most 50 ms, and
    any failure (busy table, no lz4, a role that does not own the table, a statement timeout) leaves
    pglz and is tried again at the next open, with a warning. Only the column's default ('') is
    switched: a method an operator set is kept. docs/production.md tells how to switch it by hand."""
    from psycopg import sql

    schema = getattr(tables.datastore, "schema", "") or ""
    try:
        with tables.cursor() as c:
            raw = c.raw  # psycopg's cursor: the names quoted as identifiers, not rewritten by translate()
            raw.execute("SELECT current_setting('server_version_num')::int >= 140000 AS new_enough")
            if not raw.fetchone()["new_enough"]:
                return
            raw.execute("SELECT a.attcompression AS method FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid "
                        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE t.relname = %s AND a.attname = 'state' "
                        "AND n.nspname = COALESCE(NULLIF(%s, ''), current_schema())", (events_table, schema))
            row = raw.fetchone()
            if row is None or row["method"] != "":
                return
            raw.execute("SELECT set_config('lock_timeout', '50ms', true), set_config('statement_timeout', '2s', true)")
            table = sql.Identifier(schema, events_table) if schema else sql.Identifier(events_table)
            raw.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN state SET COMPRESSION lz4").format(table))
    except Exception as exc:  # noqa: BLE001 - an optimisation: whatever stops it, the ledger works with pglz
        log.warning("ledger.lz4_not_set", error=type(exc).__name__,
                    cause=type(exc.__cause__).__name__ if exc.__cause__ else None)


class Ledger(Application[UUID]):
    name = "xledger"
    # Aggregates here are short-lived; caching them only costs memory under a backlog.
    env = {"AGGREGATE_CACHE_MAXSIZE": "0", "IS_SNAPSHOTTING_ENABLED": "n"}

    def __init__(self, url: str, env: dict[str, str] | None = None):
        located = persistence_env(url)
        merged = {**located, **(env or {})}
        # The database the URL names wins in both spellings eventsourcing reads. It looks for
        # XLEDGER_<KEY> in the process environment before <KEY>, so XLEDGER_SQLITE_DBNAME or
        # XLEDGER_POSTGRES_HOST would otherwise have opened another database than the URL names, with
        # the schema lock taken on the URL's. Only the keys that choose the database: tunables such as
        # XLEDGER_SQLITE_LOCK_TIMEOUT keep working as eventsourcing documents them.
        merged.update({f"{self.name.upper()}_{key}": located[key] for key in located if key in _LOCATION_KEYS})
        self.url = url
        with _schema_lock(merged):
            super().__init__(env=merged)
            self.tables = SideTables(self.recorder.datastore)
            if self.tables.is_postgres:
                _compress_events_with_lz4(self.tables, self.recorder.events_table_name)

    def construct_transcoder(self):
        # The same JSON as eventsourcing's transcoder writes, through orjson (ledger.transcoder).
        from eventsourcing.persistence import JSONTranscoder

        from ledger.transcoder import OrjsonTranscoder

        transcoder = self.factory.transcoder()
        if type(transcoder) is JSONTranscoder:
            transcoder = OrjsonTranscoder()
        if isinstance(transcoder, JSONTranscoder):
            self.register_transcodings(transcoder)
        return transcoder

    def construct_recorder(self):
        _refuse_other_storage(self.factory.datastore)
        # A process recorder stores tracking records in the same transaction as events.
        recorder = self.factory.process_recorder()
        if _is_psycopg_sql(getattr(recorder, "insert_events_statement", None)):  # PostgreSQL
            recorder.insert_events_statement = _binary_events_parameter(recorder.insert_events_statement)
            _insert_without_pipeline(recorder)
        _with_side_rows(recorder, lambda: self.tables)
        return recorder

    # -- writing ----------------------------------------------------------------------------

    def record(self, aggregates: Iterable[Any], tracking: Tracking | None = None) -> int:
        """Stores the aggregates' pending events and the tracking record in one transaction.

        Raises IntegrityError if the tracking position was already recorded or any
        aggregate already exists: the caller re-reads ``position`` and skips.
        """
        processing = ProcessingEvent[UUID](tracking=tracking)
        deliveries: list[tuple[str, str, str]] = []
        # Filled directly rather than through collect_events(), whose two runtime Protocol
        # checks per aggregate cost more than building the aggregate (profiled in bench/).
        for aggregate in aggregates:
            events = aggregate.collect_events()
            processing.events.extend(events)
            processing.aggregates[aggregate.id] = aggregate
            if events and events[0].originator_version == 1:
                deliveries.extend(_delivery_rows(aggregate))
        if not processing.events and tracking is None:
            return 0
        if deliveries:
            processing.saved_kwargs["side_rows"] = [(_INSERT_DELIVERIES, deliveries)]
        recordings = self._record(processing)
        return len(recordings)

    # -- integrity (Merkle tree, checkpoints, proofs, erasure) ------------------------------

    @property
    def integrity(self):
        """The ledger's Merkle tree (``ledger.integrity.Integrity``): checkpoints and proofs."""
        if getattr(self, "_integrity", None) is None:
            from ledger.integrity import Integrity

            self._integrity = Integrity(self)
        return self._integrity

    def integrate(self, *, signer=None, origin: str | None = None, sign_every: int | None = None,
                  checkpoint: bool = False, max_entries: int | None = None, rows=None):
        """Fold new notifications into the Merkle tree; sign a checkpoint every ``sign_every``
        entries (and at the end if ``checkpoint``). Safe to run from several processes.
        ``rows`` (``ledger.integrity.EventRows``) keeps the event rows read, for the read models.
        Returns ``ledger.integrity.IntegrationResult``."""
        from ledger.integrity import DEFAULT_ORIGIN

        return self.integrity.integrate(signer=signer, origin=origin or DEFAULT_ORIGIN, sign_every=sign_every,
                                        checkpoint=checkpoint, max_entries=max_entries, rows=rows)

    def checkpoint_now(self, signer, origin: str | None = None):
        """Integrate everything, then sign (or return the stored) checkpoint of the final size."""
        from ledger.integrity import DEFAULT_ORIGIN

        return self.integrity.checkpoint_now(signer, origin or DEFAULT_ORIGIN)

    def verify(self, public_key, *, origin: str | None = None, progress=None, **options):
        """Recompute and check everything (``ledger.verify.verify_ledger``, which takes the
        ``options``: key history, checkpoint interval, trusted checkpoints, witnesses);
        returns a VerifyReport."""
        from ledger.verify import verify_ledger

        return verify_ledger(self, public_key, origin=origin, progress=progress, **options)

    def erased_key(self, subject: str, key_id: bytes) -> bool:
        """Whether the ledger recorded the erasure of this data key generation of the subject."""
        return bool(self.existing([erasure_id(subject, key_id.hex())]))

    def erase_subject(self, subject: str, reason: str):
        """Destroy the subject's data key and record a SubjectErasure (``ledger.erasure``)."""
        from ledger.erasure import erase_subject

        return erase_subject(self, subject, reason)

    # -- reading ----------------------------------------------------------------------------

    def position(self, tracking_name: str) -> int | None:
        return self.recorder.max_tracking_id(tracking_name)

    def existing(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these aggregate ids already have events: one query for the whole batch."""
        if not ids:
            return set()
        table = self.recorder.events_table_name
        if self.tables.is_postgres:
            sql = f'SELECT DISTINCT originator_id FROM {self.recorder.datastore.schema}."{table}" WHERE originator_id = ANY(?)'
            rows = self.tables.fetchall(sql, (list(ids),))
            return {r[0] if isinstance(r[0], UUID) else UUID(str(r[0])) for r in rows}
        marks = ",".join("?" * len(ids))
        rows = self.tables.fetchall(f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id IN ({marks})",
                                    [i.hex for i in ids])
        return {UUID(r[0]) for r in rows}

    def notifications(self, start: int, limit: int = 1000) -> Sequence[Notification]:
        return self._select_notifications(start, limit)

    def _select_notifications(self, start: int, limit: int, topics: Sequence[str] = ()) -> Sequence[Notification]:
        if not self.tables.is_postgres:
            return self.recorder.select_notifications(start, limit=limit, topics=topics)
        return _select_notifications_binary(self.recorder, start, limit, list(topics))

    def all_notifications(self, start: int = 1, page_size: int = 1000, topics: Sequence[str] = ()
                          ) -> Iterator[Notification]:
        """Every notification from ``start`` on (only of these event ``topics``, if given), read in
        pages (long histories are read fastest this way)."""
        while page := self._select_notifications(start, page_size, topics):
            yield from page
            start = page[-1].id + 1

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

    def first_event(self, originator_id: UUID) -> Any:
        """An aggregate's first (creating) event, decoded, without reconstructing the aggregate."""
        stored = self.recorder.select_events(originator_id, lte=1, limit=1)
        if not stored:
            raise KeyError(f"no events for {originator_id}")
        return self.mapper.to_domain_event(stored[0])

    def deliveries(self, exchange: UUID, legacy: Sequence[UUID] = ()) -> list[dict[str, Any]]:
        """What was delivered for one exchange (or rejection): per delivery its id, recipient, kind,
        topic, outcome and when it was recorded. Found through the deliveries' index, and for
        ledgers written before it, as the ``Delivery`` aggregates with these ``legacy`` ids."""
        rows = self.tables.fetchall("SELECT delivery_id, entry_id FROM xl_deliveries WHERE exchange_id = ?",
                                    (str(exchange),))
        entries: dict[str, set[str]] = {}
        for did, entry in rows:
            entries.setdefault(entry, set()).add(did)
        indexed = {did for did, _ in rows}
        found = {str(i): {str(i)} for i in self.existing([i for i in legacy if str(i) not in indexed])}
        out: list[dict[str, Any]] = []
        for entry, ids in {**found, **entries}.items():
            event = self.first_event(UUID(entry))
            at = event.timestamp.isoformat()
            items = getattr(event, "deliveries", None)
            if items is None:  # a Delivery of its own
                out.append({"delivery_id": entry, "exchange": event.exchange, "recipient": event.recipient,
                            "kind": event.kind, "topic": event.topic, "outcome": event.outcome, "at": at})
                continue
            out.extend({**d, "at": at} for d in items if d["delivery_id"] in ids)
        return out

    def get_exchange(self, exchange: UUID) -> Exchange:
        return self.repository.get(exchange)

    def counts(self) -> dict[str, int]:
        """Entries and decisions by outcome, from the log itself (no read model needed)."""
        out = {"entries": 0, "requests": 0, "rejected": 0, "allowed": 0, "denied": 0, "escalated": 0, "deliveries": 0}
        for n in self.all_notifications():
            out["entries"] += 1
            # An exchange is one RequestDecided event, or in older ledgers a Requested and a Decided.
            if n.topic.endswith(("Exchange.RequestDecided", "Exchange.Requested")):
                out["requests"] += 1
            elif n.topic.endswith("RejectedMessage.Rejected"):
                out["rejected"] += 1
            elif n.topic.endswith("Delivery.Published"):
                out["deliveries"] += 1
            elif n.topic.endswith("DeliveryPage.Recorded"):
                out["deliveries"] += len(self.mapper.to_domain_event(n).deliveries)
            if n.topic.endswith(("Exchange.RequestDecided", "Exchange.Decided")):
                for result in self.mapper.to_domain_event(n).decision["results"]:
                    out[{"ALLOW": "allowed", "DENY": "denied", "ESCALATE": "escalated"}[result["outcome"]]] += 1
        return out


__all__ += ["Exchange", "RejectedMessage", "Delivery", "DeliveryPage", "QuarantinedDelivery", "SubjectErasure"]

_INSERT_DELIVERIES = "INSERT INTO xl_deliveries (delivery_id, exchange_id, entry_id) VALUES (?, ?, ?)"


def _delivery_rows(aggregate: Any) -> list[tuple[str, str, str]]:
    """The deliveries' index rows of a newly created DeliveryPage or Delivery; none for anything else."""
    if isinstance(aggregate, DeliveryPage):
        entry = str(aggregate.id)
        return [(d["delivery_id"], d["exchange"], entry) for d in aggregate.deliveries]
    if isinstance(aggregate, Delivery):
        return [(str(aggregate.id), aggregate.exchange, str(aggregate.id))]
    return []


def _with_side_rows(recorder: Any, side_tables: Any) -> None:
    """Lets ``Ledger.record`` write rows of side tables in the transaction of its events.

    eventsourcing hands the keyword arguments of a recording to the recorder's ``_insert_events``,
    which runs inside that transaction on both back-ends; ``side_rows`` there is a list of
    (statement with '?', rows). A row that violates a key fails the whole recording with
    IntegrityError, as a duplicate event does.
    """
    insert_events = recorder._insert_events

    def _insert_events(c: Any, stored_events: Any, *, side_rows: Sequence[tuple[str, list]] = (), **kwargs: Any):
        tables = side_tables()
        tables.take_write_lock(c)  # on a SQLite file, polled (ledger.tables)
        returning = insert_events(c, stored_events, **kwargs)
        if side_rows:
            cursor = Cursor(c, tables.translate, tables.is_postgres)  # one INSERT per table on PostgreSQL
            for sql, rows in side_rows:
                cursor.executemany(sql, rows)
        return returning

    recorder._insert_events = _insert_events


def _insert_without_pipeline(recorder: Any) -> None:
    """eventsourcing's PostgreSQL ``insert_events`` (same statements, same order, one transaction, same
    retries and error types), without psycopg's pipeline mode.

    In pipeline mode psycopg (3.3.9 measured) stops flushing once its command queue is empty, so a
    recording larger than the socket buffers can take in one flush leaves the rest of its Bind message
    unsent: the server waits in ClientRead and the client for results, for ever. On the loopback
    interface that happened from about 8-16 MB per recording (a gate batch of 2,000 exchanges, or 16
    messages at the codec's 1 MB limit); over a network the buffers are smaller. The pipeline saves a
    few round trips per recording; a gate that can hang for ever costs more
    (tests/ledger/test_large_recordings.py).
    """
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(stored_events: Any, **kwargs: Any) -> Any:
        with recorder.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                recorder._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            with conn.cursor() as curs:
                recorder._insert_stored_events(curs, stored_events, **kwargs)
                return recorder._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    recorder.insert_events = insert_events


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
def _select_notifications_binary(recorder: Any, start: int, limit: int, topics: list[str]) -> list[Notification]:
    """eventsourcing's ``select_notifications`` on PostgreSQL (same rows, same retries), with the
    rows in binary: in its text format every event's state travels as hex, which cost client and
    server more per event than the relay's Merkle hashing of it (bench/README.md)."""
    from psycopg.sql import SQL, Identifier

    statement = SQL("SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
                    "WHERE notification_id>=%s").format(Identifier(recorder.datastore.schema),
                                                        Identifier(recorder.events_table_name))
    params: list[Any] = [start]
    if topics:
        statement += SQL(" AND topic = ANY(%s)")
        params.append(topics)
    statement += SQL(" ORDER BY notification_id LIMIT %s")
    params.append(limit)
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, params, prepare=True, binary=True)
        return [Notification(id=row["notification_id"], originator_id=row["originator_id"],
                             originator_version=row["originator_version"], topic=row["topic"],
                             state=bytes(row["state"]))
                for row in curs.fetchall()]


def _is_psycopg_sql(statement) -> bool:
    from psycopg import sql

    return isinstance(statement, sql.Composable)


def _binary_events_parameter(statement):
    """eventsourcing's PostgreSQL insert with its array of stored events sent in binary.

    With ``%s`` psycopg picks the composite type's text dumper, which escapes the hex of
    every event with a regular expression: ~0.14 ms of the gate's ~0.6 ms per exchange.
    ``%b`` selects the binary dumper that psycopg registers beside it; the stored bytes are
    the same.
    """
    from psycopg import sql

    parts = []
    for part in statement:
        if isinstance(part, sql.SQL):
            part = sql.SQL(part.as_string(None).replace("unnest(%s::", "unnest(%b::"))
        parts.append(part)
    rewritten = sql.Composed(parts)
    if rewritten.as_string(None) == statement.as_string(None):
        raise RuntimeError("eventsourcing's PostgreSQL insert statement changed shape; see _binary_events_parameter")
    return rewritten

