"""The event rows integration read, kept for the read models (``EventRows``), on both backends:
exactly the notifications the ledger reads, one unbroken run, nothing from a step that did not commit."""

from __future__ import annotations


from ledger.integrity import EventRows
from ledger.readmodels import ReadModels
from tests.ledger.conftest import ORIGIN, fill, integrate_racing
from tests.ledger.test_readmodels_paging import _project, _record_history, _rows


def test_kept_rows_are_the_notifications_the_ledger_reads(ledger, signer):
    _record_history(ledger, 0, 3)
    ledger.integrity.batch_size = 7  # several steps, one run
    rows = EventRows()
    result = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10, rows=rows)
    last = ledger.max_notification_id()
    assert (rows.after, rows.last, len(rows)) == (0, last, result.appended)
    for start in range(1, last + 1):
        for limit in (1, 6, 500):
            assert rows.notifications(start, limit) == ledger.notifications(start, limit), (start, limit)
    assert rows.notifications(0, 10) is None and rows.notifications(last + 1, 10) is None

    fill(ledger, 100, 5)
    more = EventRows()
    ledger.integrate(signer=signer, origin=ORIGIN, rows=more)
    assert (more.after, more.last) == (last, ledger.max_notification_id())
    assert more.notifications(last, 10) is None  # not held: the caller reads it itself
    assert more.notifications(last + 1, 500) == ledger.notifications(last + 1, 500)


def test_a_step_that_does_not_continue_the_run_is_not_kept(ledger, signer):
    fill(ledger, 0, 20)  # 42 entries
    ledger.integrity.batch_size = 4
    rows = EventRows()
    ledger.integrate(signer=signer, origin=ORIGIN, max_entries=8, rows=rows)
    assert (rows.after, len(rows)) == (0, 8)
    held = rows.last
    ledger.integrate(signer=signer, origin=ORIGIN, max_entries=4)  # another integrator in between
    ledger.integrate(signer=signer, origin=ORIGIN, rows=rows)
    assert (rows.last, len(rows)) == (held, 8)
    assert rows.notifications(held + 1, 10) is None
    assert rows.notifications(1, 500) == ledger.notifications(1, 8)

    bounded = EventRows(limit=10)
    fill(ledger, 100, 20)
    ledger.integrate(signer=signer, origin=ORIGIN, rows=bounded)
    assert len(bounded) == 8  # a third step of 4 would pass the limit: the run ends before it
    assert ledger.integrity.tree_size() == ledger.max_notification_id()


def test_a_step_that_lost_a_race_hands_nothing_over(ledger_url, ledger, signer):
    fill(ledger, 0, 6)  # 13 entries
    results = integrate_racing(ledger_url, signer=signer, origin=ORIGIN, rows=EventRows)
    results.sort(key=lambda r: r[0].appended)
    (lost, lost_kw), (won, won_kw) = results
    assert (lost.appended, won.appended) == (0, 13) and lost.retries >= 1
    assert len(won_kw["rows"]) == 13 and len(lost_kw["rows"]) == 0
    assert lost_kw["rows"].notifications(1, 500) is None


def test_read_models_from_kept_rows_equal_a_replay_whether_behind_level_or_ahead(ledger, signer):
    live = ReadModels(ledger, page_size=6)
    _record_history(ledger, 0, 2)
    ledger.integrate(signer=signer, origin=ORIGIN)  # the tree ahead: the read models read their part
    _record_history(ledger, 100, 2)
    rows = EventRows()
    ledger.integrate(signer=signer, origin=ORIGIN, rows=rows)
    assert rows.after > live.position() + 1
    live.catch_up(rows=rows)
    assert live.position() == ledger.max_notification_id()
    _record_history(ledger, 200, 2)
    live.catch_up(max_entries=10)  # the read models ahead of the tree: the rows start behind them
    rows = EventRows()
    ledger.integrate(signer=signer, origin=ORIGIN, rows=rows)
    assert rows.after < live.position() < rows.last
    live.catch_up(rows=rows)
    assert live.position() == ledger.max_notification_id()
    assert _rows(live) == _project(ledger, "all", 1000)


def test_catch_up_through_stops_at_the_first_page_end_at_or_past_it(ledger, signer):
    live = ReadModels(ledger, page_size=6)
    _record_history(ledger, 0, 2)
    rows = EventRows()
    ledger.integrate(signer=signer, origin=ORIGIN, rows=rows)
    _record_history(ledger, 100, 2)  # written after the tree's read: not the read models' yet
    assert live.catch_up(rows=rows, through=rows.last) == rows.last
    assert live.position() == rows.last
    assert live.catch_up(rows=rows, through=rows.last) == 0  # there already: nothing read
    # Behind it, from the table: pages of 6 from the position, the last one may pass it.
    assert live.catch_up(through=rows.last + 1) == 6 and live.position() == rows.last + 6
    live.catch_up()
    assert live.position() == ledger.max_notification_id()
    assert _rows(live) == _project(ledger, "all", 1000)
