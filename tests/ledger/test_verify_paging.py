"""verify_ledger hashes clean pages of leaves in bulk and sends any page with a gap, a missing
row or a backwards notification id through the row-by-row check. Whatever the page size (so
whichever path a page takes), the report must be the same; and interior nodes must sit at
their own index, not merely hash right in order."""

from __future__ import annotations

import pytest

from ledger.verify import verify_ledger
from tests.ledger.conftest import ORIGIN, fill


def _forge(state: bytes) -> bytes:
    return state.replace(b"kommune:101", b"kommune:999")


def _swap_leaf_map(raw):
    nids = raw.nids()
    raw.run("UPDATE xl_merkle_leaves SET notification_id = -notification_id WHERE idx IN (4, 5)")
    raw.run("UPDATE xl_merkle_leaves SET notification_id = ? WHERE idx = 4", (nids[5],))
    raw.run("UPDATE xl_merkle_leaves SET notification_id = ? WHERE idx = 5", (nids[4],))


TAMPERINGS = {
    "none": lambda raw: None,
    "changed rows": lambda raw: [raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?",
                                         (_forge(raw.event(n)[4]), n)) for n in raw.nids()[3:40:6]],
    "deleted rows": lambda raw: raw.run("DELETE FROM {events} WHERE {nid} IN (?, ?)",
                                        (raw.nids()[8], raw.nids()[30])),
    "reordered leaf map": _swap_leaf_map,
    "deleted leaf mapping": lambda raw: raw.run("DELETE FROM xl_merkle_leaves WHERE idx = 11"),
    "deleted leaf node": lambda raw: raw.run("DELETE FROM xl_merkle_nodes WHERE level = 0 AND idx = 13"),
    "emptied leaf node": lambda raw: raw.run("UPDATE xl_merkle_nodes SET hash = ? WHERE level = 0 AND idx = 13", (b"",)),
    "deleted interior node": lambda raw: raw.run("DELETE FROM xl_merkle_nodes WHERE level = 3 AND idx = 1"),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_the_report_does_not_depend_on_the_page_size(ledger, signer, public_key, raw, name):
    fill(ledger, 0, 20)  # 42 entries
    ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10, checkpoint=True)
    fill(ledger, 100, 2)  # pending, not yet integrated
    TAMPERINGS[name](raw)

    def report(page_size):
        r = verify_ledger(ledger, public_key, origin=ORIGIN, page_size=page_size)
        # Findings are listed page by page, so only their set (and the first) is page-size free.
        return (r.tree_size, r.notifications, r.pending, r.checkpoints, r.root, sorted(r.findings, key=repr),
                r.warnings, r.findings_total, r.first)

    whole = report(1000)
    assert whole[0] == 42 and whole[2] == 5
    assert (not whole[5]) == (name == "none")
    for page_size in (1, 5, 16):
        assert report(page_size) == whole, page_size


def test_interior_nodes_shifted_by_one_index_are_named(ledger, signer, public_key, raw):
    fill(ledger, 0, 20)
    ledger.integrate(signer=signer, origin=ORIGIN, checkpoint=True)
    # Every level-1 hash kept, in order, but each one index further right: proofs served from
    # these nodes would be wrong although the hashes read in index order are all correct.
    raw.run("UPDATE xl_merkle_nodes SET idx = -idx - 100 WHERE level = 1")
    raw.run("UPDATE xl_merkle_nodes SET idx = -idx - 99 WHERE level = 1")
    first = ledger.verify(public_key, origin=ORIGIN).first
    assert first.kind == "node-changed" and "(level 1, index 1)" in first.message
