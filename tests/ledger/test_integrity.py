"""Integration of the notification log into the Merkle tree, on both backends."""

from __future__ import annotations

import hashlib
import threading

import pytest

from ledger.application import Ledger
from ledger.checkpoint import CheckpointVerifier
from ledger.entry import encode_entry, entry_leaf_hash, leaf_hashes
from ledger.integrity import Integrity, SqlNodeStore
from ledger.merkle import InMemoryNodeStore, MerkleLog, leaf_hash
from tests.ledger.conftest import ORIGIN, fill, integrate_racing


def _expected_root(ledger: Ledger) -> tuple[int, bytes]:
    log = MerkleLog(InMemoryNodeStore())
    for n in ledger.notifications(1, 100_000):
        log.append(entry_leaf_hash(n.originator_id, n.originator_version, n.topic, n.state))
    return log.size, log.root()


def test_entry_encoding_is_length_prefixed():
    from uuid import UUID

    oid = UUID(int=1)
    data = encode_entry(oid, 2, "t", b"{}")
    assert data == (b"\x00\x00\x00\x10" + oid.bytes + b"\x00\x00\x00\x08" + (2).to_bytes(8, "big")
                    + b"\x00\x00\x00\x01t" + b"\x00\x00\x00\x02{}")
    assert entry_leaf_hash(oid, 2, "t", b"{}") == leaf_hash(data)
    # Moving bytes between topic and state changes the leaf.
    assert entry_leaf_hash(oid, 2, "t{", b"}") != entry_leaf_hash(oid, 2, "t", b"{}")


def test_leaf_hashes_are_the_leaf_hash_of_each_encoded_entry():
    from uuid import UUID

    oids = [UUID(int=1), UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), UUID(int=(1 << 128) - 1)]
    entries = [(oids[i % 3], i + 1, topic, state) for i, (topic, state) in enumerate([
        ("ledger.domain:Exchange.Requested", b'{"a":1}'),
        ("ledger.domain:Exchange.Decided", b"\x00" * 3000),
        ("ledger.domain:Exchange.Requested", b""),
        ("", b"x"),
        ("emne:Æøå", bytes(range(256))),
    ])]
    expected = [leaf_hash(encode_entry(oid, v, t, s)) for oid, v, t, s in entries]
    # SQLite: the originator id as 32 hex characters; PostgreSQL: uuid_send's 16 bytes (a
    # memoryview too), or a UUID. States as bytes or as a memoryview, as drivers hand them over.
    for oid_form, oid_bytes in [(lambda u: u.hex, bytes.fromhex), (lambda u: u.bytes, bytes),
                                (lambda u: memoryview(u.bytes), bytes), (lambda u: u, lambda u: u.bytes)]:
        for state_form in (bytes, memoryview):
            rows = [(nid, oid_form(oid), v, t, state_form(s)) for nid, (oid, v, t, s) in enumerate(entries, 1)]
            assert leaf_hashes(rows, oid_bytes) == expected
            assert [leaf_hashes([r], oid_bytes)[0] for r in rows] == expected
    assert leaf_hashes([], bytes) == []


def test_leaf_hashes_of_the_rows_as_the_backend_reads_them(ledger):
    fill(ledger, 0, 5)
    b = ledger.integrity.backend
    with b.transaction(write=False) as tx:
        rows = tx.all("SELECT {nid}, {oid}, originator_version, topic, state FROM {events} ORDER BY {nid}",
                      binary=True)
    assert [leaf_hashes([r], b.oid_bytes)[0] for r in rows] == leaf_hashes(rows, b.oid_bytes) == [
        entry_leaf_hash(n.originator_id, n.originator_version, n.topic, n.state)
        for n in ledger.notifications(1, 100)]
    assert len(rows) == 11  # five exchanges of two events, one rejection


def test_integrate_builds_the_rfc9162_tree_and_signs_every_interval(ledger, signer, public_key):
    fill(ledger, 0, 30)  # 30 exchanges x 2 events + 3 rejections = 63 entries
    result = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=16)
    assert result.appended == result.tree_size == 63
    assert [c.checkpoint.tree_size for c in result.checkpoints] == [16, 32, 48]
    assert (result.tree_size, result.root) == _expected_root(ledger)
    verifier = CheckpointVerifier(public_key, signer.key_id, origin=ORIGIN)
    for cp in ledger.integrity.checkpoints():
        verifier.verify(cp)
        assert cp.checkpoint.root_hash == ledger.integrity.root(cp.checkpoint.tree_size)
    # On demand: the final size.
    now = ledger.checkpoint_now(signer, ORIGIN)
    assert now.checkpoint.tree_size == 63 and now.checkpoint.root_hash == result.root
    assert ledger.verify(public_key, origin=ORIGIN).ok


def test_integrating_twice_appends_nothing(ledger, signer, raw):
    fill(ledger, 0, 12)
    first = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=5, checkpoint=True)
    nodes = raw.rows("SELECT COUNT(*) FROM xl_merkle_nodes")[0][0]
    again = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=5, checkpoint=True)
    assert again.appended == 0 and again.checkpoints == ()
    assert (again.tree_size, again.root) == (first.tree_size, first.root)
    assert raw.rows("SELECT COUNT(*) FROM xl_merkle_nodes")[0][0] == nodes
    # New entries continue the same tree.
    fill(ledger, 100, 3)
    more = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=5)
    assert more.appended == 7 and more.tree_size == first.tree_size + 7
    assert (more.tree_size, more.root) == _expected_root(ledger)


def test_leaf_index_is_its_own_counter_over_notification_id_gaps(ledger, signer, public_key, raw):
    fill(ledger, 0, 5)
    nids = raw.nids()
    # A gap in the notification ids (PostgreSQL sequences have them after rollbacks).
    raw.run("DELETE FROM {events} WHERE {nid} = ?", (nids[3],))
    result = ledger.integrate(signer=signer, origin=ORIGIN, checkpoint=True)
    assert result.tree_size == len(nids) - 1
    mapping = [r[0] for r in raw.rows("SELECT notification_id FROM xl_merkle_leaves ORDER BY idx")]
    assert mapping == nids[:3] + nids[4:]
    assert ledger.verify(public_key, origin=ORIGIN).ok


def test_batches_are_one_transaction_each_and_resume(ledger, signer, public_key):
    fill(ledger, 0, 40)
    ledger.integrity.batch_size = 7
    result = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10, checkpoint=True)
    assert result.tree_size == 84
    assert [c.checkpoint.tree_size for c in result.checkpoints] == [10, 20, 30, 40, 50, 60, 70, 80, 84]
    assert (result.tree_size, result.root) == _expected_root(ledger)
    partial = ledger.integrate(max_entries=0)
    assert partial.appended == 0
    assert ledger.verify(public_key).ok


def test_racing_integrators_build_one_consistent_tree(ledger_url, ledger, signer, public_key, raw):
    """Two processes' worth of integrators (own connection pools) race while entries arrive."""
    others = [Ledger(ledger_url) for _ in range(2)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def integrate_loop(app: Ledger) -> None:
        try:
            app.integrity.batch_size = 5
            while not stop.is_set():
                app.integrate(signer=signer, origin=ORIGIN, sign_every=8)
            app.integrate(signer=signer, origin=ORIGIN, sign_every=8)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=integrate_loop, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for k in range(10):
        fill(ledger, k * 4, 4, batch=2)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    final = ledger.integrate(signer=signer, origin=ORIGIN, sign_every=8)
    assert (final.tree_size, final.root) == _expected_root(ledger)
    sizes = ledger.integrity.checkpoint_sizes()
    assert sizes == list(range(8, final.tree_size + 1, 8))
    assert ledger.verify(public_key, origin=ORIGIN).ok
    for o in others:
        o.close()


def test_loser_of_a_race_without_the_lock_fails_its_insert_and_retries(ledger_url, ledger, signer, public_key):
    """Disable the transaction lock and force both integrators to read the same state."""
    fill(ledger, 0, 6)
    results = [r for r, _ in integrate_racing(ledger_url, signer=signer, origin=ORIGIN, sign_every=4)]
    assert sorted(r.appended for r in results) == [0, 13]
    assert sum(r.retries for r in results) >= 1
    assert (results[0].tree_size, results[0].root) == _expected_root(ledger)
    assert ledger.verify(public_key).ok


class CountingStore:
    def __init__(self, inner):
        self.inner, self.gets = inner, 0

    def get(self, level, index):
        self.gets += 1
        return self.inner.get(level, index)

    def put(self, level, index, h):
        self.inner.put(level, index, h)

    def size(self):
        return self.inner.size()


def _leaves(start: int, count: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(start, start + count)]


def test_append_cost_is_flat_in_memory_10k_vs_100k(ledger_url):
    """Store reads per appended leaf do not grow with the tree (operation count, not time)."""
    per_append = {}
    for size in (10_000, 100_000):
        store = CountingStore(InMemoryNodeStore())
        log = MerkleLog(store)
        log.append_many(_leaves(0, size))
        store.gets = 0
        for leaf in _leaves(size, 1024):
            log.append(leaf)
        per_append[size] = store.gets / 1024
        store.gets = 0
        log.append_many(_leaves(size + 1024, 1000))
        assert store.gets <= size.bit_length()  # the frontier only: popcount(size)
    assert per_append[10_000] == per_append[100_000] == pytest.approx(1.0, abs=0.01)


def test_sql_append_cost_is_flat_10k_vs_100k(ledger):
    """The same on the SQL NodeStore: database reads per leaf, at 10k and 100k leaves."""
    backend = ledger.integrity.backend
    reads = {}
    done = 0
    for size in (10_000, 100_000):
        with backend.transaction(write=True) as tx:
            store = SqlNodeStore(tx)
            MerkleLog(store).append_many(_leaves(done, size - done))
            store.flush()
        done = size
        with backend.transaction(write=False) as tx:  # rolled back: measure only
            store = SqlNodeStore(tx)
            log = MerkleLog(store)
            assert log.size == size
            statements = tx.statements
            for leaf in _leaves(size, 256):
                log.append(leaf)
            one_by_one = store.reads / 256
            store.reads = 0
            log.append_many(_leaves(size + 256, 1000))
            reads[size] = (one_by_one, store.reads, tx.statements - statements)
    # One read for size(), then about one sibling per append; a batch reads only its frontier.
    assert reads[10_000][0] == pytest.approx(reads[100_000][0], abs=0.02)
    assert reads[10_000][0] < 1.1
    assert reads[10_000][1] <= 14 and reads[100_000][1] <= 17
