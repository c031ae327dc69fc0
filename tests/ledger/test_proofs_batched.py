"""Proofs read all their nodes in one query (SqlNodeStore.get_many); they must equal the proofs
of reading node by node, fail the same way, and verify, on both backends."""

from __future__ import annotations

import pytest

from ledger.integrity import SqlNodeStore
from ledger.merkle import MerkleError, MerkleLog, verify_consistency, verify_inclusion
from tests.ledger.conftest import fill
from tests.ledger_primitives.test_merkle import ref_mth, ref_path, ref_proof


class NodeByNode:
    """The SQL store without get_many: MerkleLog then reads one node per query, as it used to."""

    def __init__(self, store: SqlNodeStore):
        self._store = store

    def get(self, level, index):
        return self._store.get(level, index)

    def put(self, level, index, h):  # pragma: no cover - read only here
        raise TypeError("read only")

    def size(self):
        return self._store.size()


@pytest.fixture
def tree(ledger):
    fill(ledger, 0, 18)  # 38 entries: sizes with many set bits below it
    ledger.integrate()
    with ledger.integrity.backend.transaction(write=False) as tx:
        leaves = [bytes(h) for (h,) in tx.all("SELECT hash FROM xl_merkle_nodes WHERE level = 0 ORDER BY idx")]
    return ledger, leaves


def test_inclusion_proofs_equal_node_by_node_and_the_rfc(tree):
    ledger, leaves = tree
    integrity = ledger.integrity
    n = integrity.tree_size()
    with integrity.backend.transaction(write=False) as tx:
        batched, single = MerkleLog(SqlNodeStore(tx)), MerkleLog(NodeByNode(SqlNodeStore(tx)))
        for size in range(1, n + 1):
            root = ref_mth(leaves[:size])
            assert batched.root(size) == single.root(size) == root
            for index in range(size):
                path = batched.inclusion_proof(index, size)
                assert path == single.inclusion_proof(index, size) == ref_path(index, leaves[:size])
                proof = integrity.inclusion_proof(index, size)
                assert proof.leaf_hash == leaves[index] and list(proof.path) == path
                assert verify_inclusion(proof.leaf_hash, index, size, proof.path, root)


def test_consistency_proofs_equal_node_by_node_and_the_rfc(tree):
    ledger, leaves = tree
    integrity = ledger.integrity
    n = integrity.tree_size()
    with integrity.backend.transaction(write=False) as tx:
        batched, single = MerkleLog(SqlNodeStore(tx)), MerkleLog(NodeByNode(SqlNodeStore(tx)))
        for new in range(0, n + 1):
            for old in range(0, new + 1):
                path = batched.consistency_proof(old, new)
                expected = ref_proof(old, leaves[:new]) if 0 < old < new else []
                assert path == single.consistency_proof(old, new) == expected
                assert list(integrity.consistency_proof(old, new).path) == path
                assert verify_consistency(old, new, ref_mth(leaves[:old]), ref_mth(leaves[:new]), path)


def test_a_proof_is_one_query(tree):
    ledger, _ = tree
    with ledger.integrity.backend.transaction(write=False) as tx:
        for call in (lambda log: log.inclusion_proof_with_leaf(21, 37), lambda log: log.consistency_proof(13, 37),
                     lambda log: log.root(29)):
            store = SqlNodeStore(tx)
            before = tx.statements
            call(MerkleLog(store))
            assert (tx.statements - before, store.reads) == (1, 1)  # the nodes and the tree size together


def test_bad_requests_and_missing_nodes_fail_as_node_by_node(tree, raw):
    ledger, _ = tree
    n = ledger.integrity.tree_size()
    raw.run("DELETE FROM xl_merkle_nodes WHERE level = 2 AND idx = 1")
    raw.run("DELETE FROM xl_merkle_nodes WHERE level = 0 AND idx = 36")
    calls = [
        lambda log: log.inclusion_proof(0, n), lambda log: log.inclusion_proof(36, n),
        lambda log: log.inclusion_proof(5, n + 1), lambda log: log.inclusion_proof(n, n),
        lambda log: log.inclusion_proof(-1, 4), lambda log: log.inclusion_proof(True, 4),
        lambda log: log.consistency_proof(3, n), lambda log: log.consistency_proof(7, 5),
        lambda log: log.consistency_proof(3, n + 1), lambda log: log.consistency_proof(0, n + 1),
        lambda log: log.root(n), lambda log: log.root(n + 1), lambda log: log.root(-2),
    ]
    with ledger.integrity.backend.transaction(write=False) as tx:
        failures = 0
        for call in calls:
            outcomes = []
            for store in (SqlNodeStore(tx), NodeByNode(SqlNodeStore(tx))):
                try:
                    outcomes.append(call(MerkleLog(store)))
                except MerkleError as exc:
                    outcomes.append(f"MerkleError: {exc}")
            assert outcomes[0] == outcomes[1]
            failures += str(outcomes[0]).startswith("MerkleError")
        # Only the proof for leaf 36 and the root of the whole tree need neither deleted node.
        assert failures == len(calls) - 2
        # The leaf itself is not part of the path: a missing leaf comes back as None.
        path, leaf = MerkleLog(SqlNodeStore(tx)).inclusion_proof_with_leaf(36, 37)
        assert leaf is None and path == MerkleLog(NodeByNode(SqlNodeStore(tx))).inclusion_proof(36, 37)
