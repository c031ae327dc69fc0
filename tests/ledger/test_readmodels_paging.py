"""Read models are projected a page at a time (one executemany per table); the rows must be
exactly those of projecting one event at a time, on both backends. Also: creating the tables
from several processes at once."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest

import ledger.readmodels as readmodels
from ledger.application import IntegrityError, Tracking
from ledger.domain import Delivery
from ledger.readmodels import TABLES, ReadModels, replay_prefix
from tests.ledger.conftest import make_exchange, make_rejection


def _record_history(ledger, start: int, rounds: int) -> None:
    """Exchanges (some with two recipients), rejections, deliveries, and reviews of exchanges
    recorded in the same batch and in earlier ones."""
    recorded = []
    for j in range(start, start + rounds * 7, 7):
        batch: list[Any] = []
        for i in range(j, j + 7):
            e = make_exchange(i, subject=hashlib.sha256(f"s{i % 5}".encode()).hexdigest())
            e.summary.update({"occurred_at": f"2026-03-{10 + i % 3:02d}T09:00:00Z",
                              "context": "KSP" if i % 2 else "SSP",
                              "present_categories": ["health", "crime"][: 1 + i % 2]})
            if i % 4 == 0:
                e.decision["results"].append({"recipient": "kommune:202", "outcome": "ESCALATE", "rule": "R9",
                                              "reason": "NEEDS_REVIEW", "warnings": ["w1", "w2"]})
            recorded.append(e)
            batch.append(e)
        batch += [make_rejection(j), make_rejection(j + 1000)]
        ledger.record(batch)
        reviews = []
        for n, e in enumerate(recorded[-10::3]):
            again = ledger.get_exchange(e.id)
            again.review({"action": ["UPHOLD", "OVERTURN", "FLAG", "NOTE"][n % 4],
                          "recipient": "kommune:202" if n % 2 else None})
            reviews.append(again)
        ledger.record(reviews)
        ledger.record([Delivery(exchange=str(recorded[-1].id), recipient="kommune:101", kind="payload",
                                topic="inbox.kommune-101", outcome="ALLOW")], Tracking("relay", j + 1))


def _rows(models: ReadModels) -> dict[str, list[tuple]]:
    return {t: models.rows(t) for t in TABLES}


def _project(ledger, tag: str, page_size: int) -> dict[str, list[tuple]]:
    models = ReadModels(ledger, replay_prefix(tag), tracked=False, page_size=page_size)
    try:
        models.catch_up()
        return _rows(models)
    finally:
        models.drop()


def test_page_at_a_time_equals_event_at_a_time(ledger):
    _record_history(ledger, 0, 6)
    # A page of one event is the old one-statement-per-row projection; every page size must agree.
    one_by_one = _project(ledger, "p1", 1)
    assert len(one_by_one["decisions"]) == 42 + 11
    for page_size in (2, 7, 13, 500):
        assert _project(ledger, f"p{page_size}", page_size) == one_by_one, page_size
    decisions = ReadModels(ledger, replay_prefix("chk"), tracked=False)
    try:
        decisions.catch_up()
        got = Counter((r["review_status"], r["review_count"]) for r in decisions.query("decisions"))
        assert got[("PENDING", 0)] < 53 and got[("UPHELD", 1)] and got[("FLAGGED", 1)]  # reviews applied
        assert sum(r[5] for r in decisions.rows("stats")) == 53
        assert {r[1] for r in decisions.rows("rejections")} == {"UNDECODABLE"}
        assert sum(r[2] for r in decisions.rows("rejections")) == 12
    finally:
        decisions.drop()


def test_tracked_catch_up_in_small_pages_equals_a_replay(ledger):
    live = ReadModels(ledger, page_size=5)
    _record_history(ledger, 0, 2)
    consumed = live.catch_up()
    _record_history(ledger, 100, 3)  # new events, some reviewing exchanges projected earlier
    consumed += live.catch_up()
    assert consumed == ledger.max_notification_id() == live.position()
    assert _rows(live) == _project(ledger, "all", 1000)


def test_a_page_that_was_already_projected_is_rolled_back_whole(ledger):
    _record_history(ledger, 0, 2)
    live = ReadModels(ledger, page_size=10)
    live.catch_up()
    before = _rows(live)
    with pytest.raises(IntegrityError):
        live._apply_page(ledger.notifications(1, 10))
    assert _rows(live) == before  # counters not bumped twice, no partial page


def test_replay_until_decodes_once_and_stops_at_the_cut(ledger):
    _record_history(ledger, 0, 2)
    notes = ledger.notifications(1, 1000)
    cut = ledger.mapper.to_domain_event(notes[20]).timestamp
    expected = sum(1 for n in notes if ledger.mapper.to_domain_event(n).timestamp <= cut)
    calls = 0
    real = readmodels.event_state

    def counting(mapper, n, **options):
        nonlocal calls
        calls += 1
        return real(mapper, n, **options)

    models = ReadModels(ledger, replay_prefix("until"), tracked=False, page_size=8)
    readmodels.event_state = counting
    try:
        assert models.catch_up(until=cut) == expected
    finally:
        readmodels.event_state = real
        models.drop()
    # Every notification up to the cut (and the first one after it) is decoded once, not twice.
    assert calls <= expected + 1


def test_read_models_can_be_created_by_several_processes_at_once(ledger):
    import threading

    barrier, errors = threading.Barrier(4), []

    def create():
        barrier.wait()
        try:
            ReadModels(ledger)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _index_names(ledger, prefix: str) -> set[str]:
    if ledger.tables.is_postgres:
        rows = ledger.tables.fetchall("SELECT indexname FROM pg_indexes WHERE indexname LIKE ?",
                                      ["ix" + prefix[2:] + "%"])
    else:
        rows = ledger.tables.fetchall("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ?",
                                      ["ix" + prefix[2:] + "%"])
    return {r[0] for r in rows}


def test_a_rebuild_in_groups_of_pages_per_transaction_equals_the_live_models_and_finds_a_change(ledger):
    from services.audit import _catch_up_to

    _record_history(ledger, 0, 4)
    live = ReadModels(ledger, page_size=5)
    live.catch_up()
    target = live.position()
    seen: list[int] = []
    for pages in (1, 3, 100):
        fresh = ReadModels(ledger, replay_prefix(f"grp{pages}"), tracked=False, page_size=4, indexes=False)
        try:
            assert _index_names(ledger, fresh.prefix) == set()  # the primary keys only
            consumed = _catch_up_to(fresh, ledger, target, lambda last, n: seen.append(last),
                                    pages_per_transaction=pages)
            assert consumed == target and seen[-1] == target
            assert _rows(fresh) == _rows(live), pages
            # One row changed inside a group is found by the comparison.
            with ledger.tables.cursor() as c:
                c.execute(f"UPDATE {fresh.t('decisions')} SET outcome = 'CHANGED' WHERE position = "
                          f"(SELECT MAX(position) FROM {fresh.t('decisions')})")
            diffs = {d.table: d for d in readmodels.compare(live, fresh)}
            assert diffs["decisions"].only_live_count == diffs["decisions"].only_replayed_count == 1
        finally:
            fresh.drop()
    with pytest.raises(ValueError):
        live.apply_pages([ledger.notifications(1, 5)])  # tracked pages keep one transaction each


def test_a_kept_replay_gets_the_indexes_a_dropped_one_never_had(ledger):
    from services.audit import replay

    _record_history(ledger, 0, 2)
    ReadModels(ledger).catch_up()
    kept = replay(ledger, keep=True, tag="kept")
    try:
        assert kept.equal and kept.consumed == ledger.max_notification_id()
        live_indexes = _index_names(ledger, readmodels.LIVE_PREFIX)
        assert live_indexes and _index_names(ledger, kept.prefix) == {
            n.replace("ix_rm_", "ix" + kept.prefix[2:], 1) for n in live_indexes}
    finally:
        ReadModels(ledger, kept.prefix, tracked=False).drop()
