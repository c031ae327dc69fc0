"""RFC 9162 Merkle tree: reference model, published vectors, tamper cases, cost bounds."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    InMemoryNodeStore,
    MerkleError,
    MerkleLog,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------- reference model
# Straight transcription of RFC 9162 §2.1.1 (MTH), §2.1.3.1 (PATH), §2.1.4.1 (PROOF) over
# the list of leaf hashes, with no cleverness, so the store-backed log can be checked against it.


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _k(n)
    return node_hash(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, leaves[:k], b) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def hashes(n: int, salt: str = "") -> list[bytes]:
    return [leaf_hash(f"entry-{salt}{i}".encode()) for i in range(n)]


def build(leaves: list[bytes]) -> MerkleLog:
    log = MerkleLog(InMemoryNodeStore())
    for h in leaves:
        log.append(h)
    return log


# ---------------------------------------------------------------- published vectors
# RFC 6962 reference inputs used by certificate-transparency and Trillian's test suites.

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, path) from Trillian's merkle/log_verifier_test.go
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


@pytest.fixture(scope="module")
def ct_log() -> MerkleLog:
    return build([leaf_hash(d) for d in CT_LEAVES])


def test_empty_tree_root_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleLog(InMemoryNodeStore()).root() == EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation():
    assert leaf_hash(b"\x00").hex() == (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
    )
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    left, right = b"\x01" * 32, b"\x02" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # A leaf whose data looks like two child hashes must not collide with their parent.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_vector_roots_for_every_historical_size(ct_log, size):
    assert ct_log.root(size).hex() == CT_ROOTS[size - 1]


def test_ct_vector_root_of_eight_leaves(ct_log):
    assert ct_log.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_ct_vector_inclusion_proofs(ct_log, index, size, path):
    proof = ct_log.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(CT_ROOTS[size - 1])
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, root)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_ct_vector_consistency_proofs(ct_log, old, new, path):
    proof = ct_log.consistency_proof(old, new)
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1])
    assert verify_consistency(old, new, old_root, new_root, proof)


# ---------------------------------------------------------------- exhaustive vs reference

N_MAX = 70


@pytest.fixture(scope="module")
def big():
    leaves = hashes(N_MAX)
    return leaves, build(leaves)


def test_roots_match_reference_for_all_sizes(big):
    leaves, log = big
    for n in range(0, N_MAX + 1):
        assert log.root(n) == ref_mth(leaves[:n]), n


def test_inclusion_proofs_match_reference_for_all_sizes_and_indices(big):
    leaves, log = big
    for n in range(1, N_MAX + 1):
        root = ref_mth(leaves[:n])
        for m in range(n):
            proof = log.inclusion_proof(m, n)
            assert proof == ref_path(m, leaves[:n]), (m, n)
            assert verify_inclusion(leaves[m], m, n, proof, root), (m, n)


def test_consistency_proofs_match_reference_for_all_size_pairs(big):
    leaves, log = big
    for n in range(1, N_MAX + 1):
        new_root = ref_mth(leaves[:n])
        for m in range(1, n + 1):
            proof = log.consistency_proof(m, n)
            expected = ref_proof(m, leaves[:n]) if m < n else []
            assert proof == expected, (m, n)
            assert verify_consistency(m, n, ref_mth(leaves[:m]), new_root, proof), (m, n)


def test_consistency_from_empty_tree(big):
    _, log = big
    assert log.consistency_proof(0, 5) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, log.root(5), [])
    assert not verify_consistency(0, 5, log.root(1), log.root(5), [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, log.root(5), [log.root(1)])


def test_append_many_equals_repeated_append():
    leaves = hashes(77)
    one_by_one = build(leaves)
    for cut in (0, 1, 5, 32, 63, 77):
        batched = MerkleLog(InMemoryNodeStore())
        assert batched.append_many(leaves[:cut]) == range(0, cut)
        assert batched.append_many(leaves[cut:40]) == range(cut, max(cut, 40))
        batched.append_many(leaves[max(cut, 40):])
        assert batched.size == 77
        assert batched.store._nodes == one_by_one.store._nodes


def test_store_holds_only_complete_subtrees():
    log = build(hashes(13))
    for (level, index) in log.store._nodes:
        assert (index + 1) << level <= 13


# ---------------------------------------------------------------- tampering & malformed input


def _tamper_cases(proof: list[bytes], root: bytes):
    bad = b"\xff" * 32
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        yield f"flip byte of element {i}", flipped
    if proof:
        yield "truncated", proof[:-1]
        yield "reversed", list(reversed(proof)) if len(proof) > 1 else [bad]
    yield "extra at end", proof + [bad]
    yield "root at end", proof + [root]
    yield "extra at front", [bad] + proof
    yield "short element", proof + [b""]


def _shape_changing_sizes(n: int, differs) -> list[int]:
    # A proof pins only the shape of the tree, and sizes whose shape matches (3 and 4 for
    # leaf 0, say) verify the same path. That is inherent to RFC 9162 and harmless, because
    # the size is taken from the signed checkpoint; so only shape-changing sizes must fail.
    return [s for s in {n * 2, n // 2, n + 1, n - 1, n + 5} if s >= 1 and s != n and differs(s)]


def test_tampered_inclusion_proofs_fail(big):
    leaves, log = big
    for n in (1, 2, 3, 7, 8, 9, 31, 64, 70):
        root = log.root(n)
        for m in range(n):
            proof = log.inclusion_proof(m, n)
            for what, bad in _tamper_cases(proof, root):
                assert not verify_inclusion(leaves[m], m, n, bad, root), (what, m, n)
            assert not verify_inclusion(leaves[m], m, n, proof, log.root(n - 1) if n > 1 else EMPTY_ROOT)
            other = leaves[(m + 1) % len(leaves)]
            assert not verify_inclusion(other, m, n, proof, root)
            for wrong_index in {m - 1, m + 1, m ^ 2} - {m}:
                assert not verify_inclusion(leaves[m], wrong_index, n, proof, root), (m, n)
            for wrong_size in _shape_changing_sizes(n, lambda s: m < s and len(ref_path(m, leaves[:s])) != len(proof)):
                assert not verify_inclusion(leaves[m], m, wrong_size, proof, root), (m, n, wrong_size)


def test_tampered_consistency_proofs_fail(big):
    _, log = big
    for n in (2, 3, 7, 8, 9, 31, 64, 70):
        new_root = log.root(n)
        for m in range(1, n):
            old_root = log.root(m)
            proof = log.consistency_proof(m, n)
            for what, bad in _tamper_cases(proof, new_root):
                assert not verify_consistency(m, n, old_root, new_root, bad), (what, m, n)
            assert not verify_consistency(m, n, new_root, old_root, proof)
            assert not verify_consistency(m, n, old_root, new_root, [])
            assert not verify_consistency(n, m, old_root, new_root, proof)
            for wrong_old in {m - 1, m + 1, m ^ 2} - {m, 0}:
                if wrong_old < n:
                    assert not verify_consistency(wrong_old, n, old_root, new_root, proof), (m, n)
            for wrong_new in _shape_changing_sizes(n, lambda s: m < s and len(ref_proof(m, hashes(s))) != len(proof)):
                assert not verify_consistency(m, wrong_new, old_root, new_root, proof), (m, n, wrong_new)


def test_forked_history_is_not_consistent():
    honest = hashes(20)
    forked = honest[:9] + hashes(11, salt="fork")
    a, b = build(honest), build(forked)
    proof = b.consistency_proof(12, 20)
    assert not verify_consistency(12, 20, a.root(12), b.root(20), proof)
    assert verify_consistency(9, 20, a.root(9), b.root(20), b.consistency_proof(9, 20))


GARBAGE = [None, "", "abc", b"", b"\x00" * 31, b"\x00" * 33, 1.5, True, -1, [], [None], [b"x"],
           object(), 2**70, "0" * 64]


def test_verifiers_never_raise_on_garbage():
    log = build(hashes(10))
    good = (leaf_hash(b"entry-3"), 3, 10, log.inclusion_proof(3, 10), log.root())
    for position in range(5):
        for junk in GARBAGE:
            args = list(good)
            args[position] = junk
            assert verify_inclusion(*args) is False, (position, junk)
    good_c = (4, 10, log.root(4), log.root(), log.consistency_proof(4, 10))
    for position in range(5):
        for junk in GARBAGE:
            args = list(good_c)
            args[position] = junk
            assert verify_consistency(*args) is False, (position, junk)
    assert verify_inclusion(good[0], 0, 0, [], EMPTY_ROOT) is False
    assert verify_inclusion(good[0], 10, 10, [], log.root()) is False
    assert verify_inclusion(good[0], -1, 10, [], log.root()) is False
    assert verify_consistency(3, 2, log.root(3), log.root(2), []) is False


def test_equal_sizes_need_equal_roots_and_empty_proof():
    log = build(hashes(6))
    assert verify_consistency(6, 6, log.root(), log.root(), [])
    assert not verify_consistency(6, 6, log.root(), log.root(5), [])
    assert not verify_consistency(6, 6, log.root(), log.root(), [log.root()])


def test_log_rejects_bad_requests():
    log = build(hashes(5))
    with pytest.raises(MerkleError):
        log.root(6)
    with pytest.raises(MerkleError):
        log.inclusion_proof(5, 5)
    with pytest.raises(MerkleError):
        log.inclusion_proof(0, 6)
    with pytest.raises(MerkleError):
        log.consistency_proof(4, 3)
    with pytest.raises(MerkleError):
        log.consistency_proof(1, 6)
    with pytest.raises(MerkleError):
        log.append(b"raw entry, not a hash")
    with pytest.raises(MerkleError):
        log.append_many([leaf_hash(b"ok"), b"short"])
    assert log.size == 5  # a rejected batch appends nothing


def test_in_memory_store_refuses_rewrites():
    store = InMemoryNodeStore()
    store.put(0, 0, b"\x01" * 32)
    store.put(0, 0, b"\x01" * 32)  # idempotent
    with pytest.raises(MerkleError):
        store.put(0, 0, b"\x02" * 32)
    with pytest.raises(MerkleError):
        store.put(0, 5, b"\x02" * 32)


def test_missing_node_is_reported_not_miscomputed():
    log = build(hashes(8))
    del log.store._nodes[(2, 0)]
    with pytest.raises(MerkleError, match="level=2, index=0"):
        log.root(7)
    with pytest.raises(MerkleError, match="level=2, index=0"):
        log.inclusion_proof(7, 8)


# ---------------------------------------------------------------- property tests


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=150), st.data())
def test_property_proofs_roundtrip(entries, data):
    leaves = [leaf_hash(e) for e in entries]
    log = MerkleLog(InMemoryNodeStore())
    log.append_many(leaves)
    n = data.draw(st.integers(1, len(leaves)), label="size")
    m = data.draw(st.integers(0, n - 1), label="index")
    old = data.draw(st.integers(0, n), label="old_size")
    root = log.root(n)
    assert root == ref_mth(leaves[:n])
    assert verify_inclusion(leaves[m], m, n, log.inclusion_proof(m, n), root)
    assert verify_consistency(old, n, log.root(old), root, log.consistency_proof(old, n))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300),
    st.data(),
)
def test_property_mutated_proofs_fail(n, data):
    leaves = hashes(n)
    log = MerkleLog(InMemoryNodeStore())
    log.append_many(leaves)
    m = data.draw(st.integers(0, n - 1))
    proof = log.inclusion_proof(m, n)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[i] = bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b for j, b in enumerate(proof[i]))
        assert not verify_inclusion(leaves[m], m, n, bad, log.root(n))
    if n > 1:
        old = data.draw(st.integers(1, n - 1))
        cproof = log.consistency_proof(old, n)
        i = data.draw(st.integers(0, len(cproof) - 1))
        bad = list(cproof)
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_consistency(old, n, log.root(old), log.root(n), bad)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40),
    st.integers(-3, 2**64),
    st.integers(-3, 2**64),
    st.lists(st.binary(min_size=0, max_size=40), max_size=70),
    st.binary(max_size=40),
)
def test_property_random_inputs_never_raise(leaf, index, size, proof, root):
    assert verify_inclusion(leaf, index, size, proof, root) in (True, False)
    assert verify_consistency(index, size, leaf, root, proof) in (True, False)


# ---------------------------------------------------------------- cost: store reads are O(log n)


class CountingStore(InMemoryNodeStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return super().get(level, index)


def _worst_reads(n: int) -> dict[str, int]:
    store = CountingStore()
    log = MerkleLog(store)
    log.append_many(hashes(n - 1))
    worst = {"append": 0, "root": 0, "inclusion": 0, "consistency": 0}

    def measure(kind, fn, *args):
        store.reads = 0
        fn(*args)
        worst[kind] = max(worst[kind], store.reads)

    measure("append", log.append, leaf_hash(b"last"))
    # Sizes and indices with many set bits are the expensive ones for the RFC split.
    probes = sorted({n, n - 1, n // 2 + 1, (n - 1) | ((n - 1) >> 1), 3, 2, 1} - {0})
    probes = [p for p in probes if 1 <= p <= n]
    for size in probes:
        measure("root", log.root, size)
        for index in {0, size - 1, size // 2, (size - 1) & ~1, 1 % size}:
            measure("inclusion", log.inclusion_proof, index, size)
        for old in {1, size - 1, size // 2 + 1, (size - 1) & 0x5555_5555} - {0}:
            if old <= size:
                measure("consistency", log.consistency_proof, old, size)
    return worst


@pytest.mark.parametrize("exponent", [10, 16])
def test_store_reads_are_logarithmic(exponent):
    n = 2**exponent
    worst = _worst_reads(n)
    bound = 2 * math.ceil(math.log2(n)) + 2
    for kind, reads in worst.items():
        assert reads <= bound, (kind, reads, bound)


def test_store_reads_grow_logarithmically_not_linearly():
    small, large = _worst_reads(2**10 - 1), _worst_reads(2**16 - 1)
    for kind in small:
        # 64x more leaves: linear growth would be 64x more reads; log growth is ~1.6x.
        assert large[kind] <= 2 * max(small[kind], 1), (kind, small[kind], large[kind])


def test_append_reads_one_node_per_completed_subtree():
    store = CountingStore()
    log = MerkleLog(store)
    log.append_many(hashes(2**12 - 1))
    store.reads = 0
    log.append(leaf_hash(b"completes 12 subtrees"))
    assert store.reads == 12
    store.reads = 0
    log.append(leaf_hash(b"completes none"))
    assert store.reads == 0
    store.reads = 0
    log.append_many(hashes(1000, salt="batch"))
    assert store.reads <= 13  # one read per frontier node, not per leaf


def test_failed_append_writes_nothing():
    log = build(hashes(3))
    del log.store._nodes[(1, 0)]
    before = dict(log.store._nodes)
    with pytest.raises(MerkleError):
        log.append(leaf_hash(b"needs (1, 0)"))
    assert log.store._nodes == before and log.size == 3


class SqliteNodeStore:
    """The protocol on a plain SQL table, as a template for the ledger's own store."""

    def __init__(self) -> None:
        import sqlite3

        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            "CREATE TABLE nodes (level INTEGER, idx INTEGER, hash BLOB NOT NULL, "
            "PRIMARY KEY (level, idx))"
        )

    def get(self, level: int, index: int) -> bytes | None:
        row = self.db.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        return bytes(row[0]) if row else None

    def put(self, level: int, index: int, h: bytes) -> None:
        self.db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, index, h))

    def size(self) -> int:
        # MAX over the primary-key index is O(log n); COUNT(*) would scan.
        (top,) = self.db.execute("SELECT MAX(idx) FROM nodes WHERE level = 0").fetchone()
        return 0 if top is None else top + 1


def test_sql_backed_store_gives_identical_results():
    import sqlite3

    leaves = hashes(45)
    sql = MerkleLog(SqliteNodeStore())
    sql.append_many(leaves[:20])
    for h in leaves[20:]:
        with sql.store.db:  # one transaction per append, as the protocol asks
            sql.append(h)
    mem = build(leaves)
    for n in range(46):
        assert sql.root(n) == mem.root(n)
    assert sql.inclusion_proof(17, 45) == mem.inclusion_proof(17, 45)
    assert sql.consistency_proof(13, 45) == mem.consistency_proof(13, 45)
    with pytest.raises(sqlite3.IntegrityError):
        sql.store.put(0, 3, b"\x00" * 32)  # history cannot be rewritten under the key
