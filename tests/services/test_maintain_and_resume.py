"""Bounded maintenance for the relay, and the gate resuming a partition from the ledger (unit level,
real ledgers on both backends; the Kafka consumer is a recording stand-in)."""

from __future__ import annotations

from kafka import TopicPartition

from ledger.application import Tracking, kafka_tracking_name
from services.config import Settings
from services.gate import GateWorker
from services.runtime import Runtime
from tests.ledger.conftest import fill


def test_bounded_maintain_reports_until_everything_is_current(ledger_url):
    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        fill(rt.ledger, 0, 300)  # 300 exchanges + 30 rejections = 630 entries
        turns = []
        while True:
            turns.append(rt.maintain(max_entries=200))
            if turns[-1]:
                break
            assert len(turns) < 20
        assert turns[:-1] and not any(turns[:-1])  # more than one bounded step, then current
        assert rt.ledger.integrity.tree_size() == rt.ledger.max_notification_id() == 630
        assert rt.read_models.position() == 630
        assert rt.maintain(max_entries=200) is True  # nothing new: current at once
    finally:
        rt.close()


class RecordingConsumer:
    def __init__(self, tp):
        self.tp, self.seeks, self.commits = tp, [], []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def assignment(self):
        return {self.tp}

    def commit(self, offsets):
        self.commits.append(offsets)


class Record:
    def __init__(self, offset):
        self.topic, self.partition, self.offset, self.key, self.value = "exchange.requests", 0, offset, None, b"x"


def test_a_partition_without_a_ledger_position_is_resumed_from_the_ledger_first(ledger_url):
    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        tp = TopicPartition("exchange.requests", 0)
        rt.ledger.record([], Tracking(kafka_tracking_name(tp.topic, tp.partition), 7))
        consumer = RecordingConsumer(tp)
        gate = GateWorker(rt.pipeline(), rt.ledger, consumer, producer=None)
        # As after an assignment during a ledger outage, or a rewind: Kafka hands out offsets
        # 3..5 (its committed offset lags), the ledger says 7.
        gate.handle_batch(tp, [Record(3), Record(4), Record(5)])
        assert consumer.seeks == [(tp, 7)]
        assert gate.stats["batches"] == 0 and rt.ledger.position(kafka_tracking_name(tp.topic, 0)) == 7
        # A rewind after a failed batch forgets the position and seeks back to the batch.
        gate._rewind(tp, 7)
        assert consumer.seeks[-1] == (tp, 7) and tp not in gate._positions
    finally:
        rt.close()


def test_maintain_leaves_no_entry_unintegrated_at_any_count_around_its_step(ledger_url, monkeypatch):
    """maintain() trusts a short integrate() call to mean the tree has caught up: at exact multiples
    of the step, one over and one under, bounded or not, nothing is left out of the tree."""
    import services.runtime as runtime
    from tests.ledger.conftest import make_rejection

    monkeypatch.setattr(runtime, "INTEGRATE_STEP", 10)
    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        rt.ledger.integrity.batch_size = 3  # integrate() makes several steps of its own per call
        n = 0
        for add, bound in [(20, None), (9, None), (1, None), (10, 10), (11, 10), (30, 7), (1, 10)]:
            rt.ledger.record([make_rejection(n + i) for i in range(add)])
            n += add
            turns = 0
            while not rt.maintain(max_entries=bound):
                turns += 1
                assert turns < 20
            assert rt.ledger.integrity.tree_size() == rt.ledger.max_notification_id() == n, (add, bound)
            assert rt.read_models.position() == n
    finally:
        rt.close()


def test_maintain_reads_new_events_once_for_the_tree_and_the_read_models(ledger_url, monkeypatch):
    """The read models take the events the tree's steps read where both stand at the same place,
    read the rest themselves where they do not (behind after a crash between the two, ahead after
    the relay projected pages), and end equal to a replay either way."""
    from tests.ledger.test_readmodels_paging import _project, _record_history, _rows

    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        rt.ledger.integrity.batch_size = 7  # several steps per integrate() call
        rt.read_models.page_size = 5
        reads = []
        notifications = rt.ledger.notifications
        monkeypatch.setattr(rt.ledger, "notifications",
                            lambda start, limit=1000: reads.append(start) or notifications(start, limit))
        _record_history(rt.ledger, 0, 2)
        assert rt.maintain() is True
        level = rt.ledger.max_notification_id()
        assert reads == []  # every event from the tree's rows, and no read past them that finds nothing

        _record_history(rt.ledger, 100, 2)
        rt.integrate()  # the tree ahead, as after a crash between the two
        tree = rt.ledger.max_notification_id()
        _record_history(rt.ledger, 200, 1)
        reads.clear()
        assert rt.maintain() is True
        last = rt.ledger.max_notification_id()
        assert reads[0] == level + 1  # the read models read their part themselves
        assert all(start <= tree for start in reads)  # and the tree's part from its rows

        _record_history(rt.ledger, 300, 2)
        rt.read_models.catch_up(max_entries=8)  # the read models ahead
        reads.clear()
        assert rt.maintain() is True
        last = rt.ledger.max_notification_id()
        assert reads == []
        assert rt.ledger.integrity.pending() == 0
        assert rt.read_models.position() == last
        assert _rows(rt.read_models) == _project(rt.ledger, "all", 1000)
    finally:
        rt.close()


def test_events_written_while_a_step_runs_are_read_once_by_the_next_step(ledger_url, monkeypatch):
    """The gates write while the maintainer steps: what lands between the tree's read and the read
    models' is left to the next step, which reads it once for both, instead of being read from the
    events table by the read models and again by the tree. Bounded or not, both end level and equal
    to a replay."""
    from tests.ledger.test_readmodels_paging import _project, _record_history, _rows

    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        rt.ledger.integrity.batch_size = 7
        rt.read_models.page_size = 5
        reads = []
        notifications = rt.ledger.notifications
        monkeypatch.setattr(rt.ledger, "notifications",
                            lambda start, limit=1000: reads.append(start) or notifications(start, limit))
        integrate = rt.integrate
        batches = iter(range(100, 1000, 100))

        def integrate_while_the_gates_write(**kwargs):
            result = integrate(**kwargs)
            batch = next(batches, None)
            if batch is not None:
                _record_history(rt.ledger, batch, 1)
            return result

        monkeypatch.setattr(rt, "integrate", integrate_while_the_gates_write)
        _record_history(rt.ledger, 0, 1)
        for bound in (None, 5000, None, 5000, 5000, None):
            tree_before, level = rt.ledger.integrity.tree_size(), rt.read_models.position()
            assert rt.maintain(max_entries=bound) is True
            # Both took the same step, the read models from the tree's rows alone: none read the table.
            assert rt.ledger.integrity.tree_size() - tree_before == rt.read_models.position() - level > 0
            assert reads == [], bound
        monkeypatch.setattr(rt, "integrate", integrate)
        while not rt.maintain(max_entries=5000):
            pass
        last = rt.ledger.max_notification_id()
        assert rt.ledger.integrity.tree_size() == rt.read_models.position() == last
        assert _rows(rt.read_models) == _project(rt.ledger, "all", 1000)
    finally:
        rt.close()
