"""What one integration step reads, and the outbox read, on both backends (issue 18).

The step's reads are counted (``Integrity.last_step_reads``: database reads of the node store),
never timed: the frontier is one read however many nodes it has, and the root after the append
needs none. The outbox read returns what eventsourcing's own query returns.
"""

from __future__ import annotations

from ledger.application import Ledger
from tests.ledger.conftest import fill
from tests.ledger.test_integrity import _expected_root


def test_a_step_reads_its_whole_frontier_at_once_and_its_root_from_what_it_wrote(ledger: Ledger):
    fill(ledger, 0, 20, batch=4)
    ledger.integrate()
    size = ledger.integrity.tree_size()
    assert bin(size).count("1") >= 3, size  # a frontier of several nodes, one per set bit
    fill(ledger, 100, 3, batch=3)
    result = ledger.integrate()
    assert result.appended == 7  # three exchanges of two events and a rejection
    assert ledger.integrity.last_step_reads == 1
    assert (result.tree_size, result.root) == _expected_root(ledger)


def test_notifications_are_eventsourcings_own(ledger: Ledger):
    fill(ledger, 0, 12, batch=5)
    ours = ledger.notifications(3, 9)
    assert len(ours) == 9
    assert list(ours) == list(ledger.recorder.select_notifications(3, limit=9))
    topic = ours[0].topic
    filtered = list(ledger.all_notifications(topics=[topic], page_size=2))
    assert filtered == list(ledger.recorder.select_notifications(1, limit=100, topics=[topic]))
    assert filtered and all(n.topic == topic for n in filtered)
