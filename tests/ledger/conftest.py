"""Ledger fixtures: real aggregates recorded with Ledger.record, on SQLite and PostgreSQL.

Every test here takes ``ledger_url`` (tests/conftest.py), so it runs on both backends.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Iterator

import pytest

from ledger.application import Ledger
from ledger.checkpoint import encode_public_key
from ledger.domain import Exchange, RejectedMessage
from ledger.integrity import signer_from_key

ORIGIN = "exchange-ledger/test"
SUBJECT = hashlib.sha256(b"subject-1").hexdigest()
PRIVATE_KEY = base64.b64encode(hashlib.sha256(b"tests/ledger checkpoint key").digest()).decode()


def make_exchange(i: int, subject: str = SUBJECT, sealed: str = "c2VhbGVk") -> Exchange:
    e = Exchange(
        sender="politikreds:koebenhavn",
        message_id=f"msg-{i}",
        source={"topic": "exchange.requests", "partition": i % 4, "offset": i},
        summary={"purpose": "SSP", "recipients": ["kommune:101"], "note": "x" * (i % 50)},
        subject=subject,
        message_digest=hashlib.sha256(f"m{i}".encode()).hexdigest(),
        sealed_message=sealed,
    )
    e.decide({"results": [{"recipient": "kommune:101", "outcome": "ALLOW" if i % 3 else "DENY"}],
              "policy_version": "p" * 64, "request_digest": "r" * 64})
    return e


def make_rejection(i: int) -> RejectedMessage:
    return RejectedMessage(source={"topic": "exchange.requests", "partition": 0, "offset": 10_000 + i},
                           reason="UNDECODABLE", detail="bad magic", message_digest="d" * 64, size=12)


def fill(ledger: Ledger, start: int, count: int, batch: int = 10) -> None:
    """Record ``count`` exchanges (two events each) plus a rejection per batch."""
    for j in range(start, start + count, batch):
        aggregates: list[Any] = [make_exchange(i) for i in range(j, min(j + batch, start + count))]
        aggregates.append(make_rejection(j))
        ledger.record(aggregates)


@pytest.fixture
def signer():
    return signer_from_key(PRIVATE_KEY)


@pytest.fixture
def public_key(signer) -> str:
    return encode_public_key(signer.public_key)


@pytest.fixture
def ledger(ledger_url) -> Iterator[Ledger]:
    app = Ledger(ledger_url)
    try:
        yield app
    finally:
        app.close()


class Raw:
    """Direct SQL on the ledger's tables, as a malicious operator would do it."""

    def __init__(self, ledger: Ledger):
        self.backend = ledger.integrity.backend

    def run(self, sql: str, params=()) -> list[Any]:
        with self.backend.transaction(write=True) as tx:
            tx.execute(sql, params)
            try:
                return tx.cursor.fetchall()
            except Exception:  # noqa: BLE001 - statements without a result
                return []

    def rows(self, sql: str, params=()) -> list[Any]:
        with self.backend.transaction(write=False) as tx:
            return tx.all(sql, params)

    def event(self, nid: int) -> Any:
        return self.rows("SELECT {nid}, originator_id, originator_version, topic, state FROM {events} "
                         "WHERE {nid} = ?", (nid,))[0]

    def nids(self) -> list[int]:
        return [int(r[0]) for r in self.rows("SELECT {nid} FROM {events} ORDER BY {nid}")]

    def insert_event(self, nid: int, originator_id: Any, version: int, topic: str, state: bytes) -> None:
        if self.backend.is_postgres:
            self.run("INSERT INTO {events} (notification_id, originator_id, originator_version, topic, state) "
                     "VALUES (?, ?, ?, ?, ?)", (nid, originator_id, version, topic, state))
        else:
            self.run("INSERT INTO {events} (rowid, originator_id, originator_version, topic, state) "
                     "VALUES (?, ?, ?, ?, ?)", (nid, originator_id, version, topic, state))


@pytest.fixture
def raw(ledger) -> Raw:
    return Raw(ledger)


def integrate_racing(ledger_url: str, **integrate_kw) -> list[tuple[Any, dict[str, Any]]]:
    """Two integrators on their own connections, without the transaction lock, held until both have
    read the same tree state: one loses on the insert and retries. Returns each one's
    (IntegrationResult, integrate_kw), the keyword arguments each got (``rows`` made per integrator
    when given as a factory: ``rows=EventRows``)."""
    import threading

    from ledger.integrity import Integrity

    apps = [Ledger(ledger_url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=5)
    results, errors = [], []

    def run(app: Ledger) -> None:
        integrity = Integrity(app, lock=False)
        kw = {k: (v() if k == "rows" else v) for k, v in integrate_kw.items()}
        waited = []

        def after_read(size: int) -> None:
            if not waited:
                waited.append(size)
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass

        integrity._after_read = after_read
        try:
            results.append((integrity.integrate(**kw), kw))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for a in apps:
            a.close()
    assert not errors, errors
    return results
