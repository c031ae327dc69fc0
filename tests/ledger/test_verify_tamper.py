"""Tampering with stored rows is detected, and verify names the first bad entry."""

from __future__ import annotations

import json
import random
from uuid import UUID

import pytest

from ledger.checkpoint import CheckpointSigner, generate_keypair, key_fingerprint
from tests.ledger.conftest import ORIGIN, fill


@pytest.fixture
def built(ledger, signer, public_key, raw):
    fill(ledger, 0, 20)  # 42 entries
    ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10, checkpoint=True)
    assert ledger.verify(public_key, origin=ORIGIN).ok
    return ledger


def _oid(value) -> UUID:
    return value if isinstance(value, UUID) else UUID(hex=value)


def _forge(state: bytes) -> bytes:
    forged = state.replace(b"kommune:101", b"kommune:999")
    assert forged != state
    return forged


def _leaf_of(ledger, nid: int) -> int:
    return ledger.integrity.leaf_index_of(nid)


def test_changed_event_bytes_are_named(built, public_key, raw):
    nid = raw.nids()[17]
    _, oid, version, topic, state = raw.event(nid)
    raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (_forge(state), nid))
    report = built.verify(public_key)
    assert not report.ok
    first = report.first
    assert first.kind == "entry-changed"
    assert (first.leaf_index, first.notification_id) == (_leaf_of(built, nid), nid)
    assert (first.originator_id, first.originator_version, first.topic) == (_oid(oid), version, topic)


def test_changed_topic_or_version_is_detected(built, public_key, raw):
    nids = raw.nids()
    raw.run("UPDATE {events} SET topic = ? WHERE {nid} = ?", ("ledger.domain:Exchange.Reviewed", nids[5]))
    assert built.verify(public_key).first.leaf_index == 5


def test_deleted_event_row_is_named(built, public_key, raw):
    nid = raw.nids()[8]
    raw.run("DELETE FROM {events} WHERE {nid} = ?", (nid,))
    first = built.verify(public_key).first
    assert first.kind == "missing-entry"
    assert (first.leaf_index, first.notification_id) == (8, nid)


def test_reordered_event_rows_are_named(built, public_key, raw):
    nids = raw.nids()
    a, b = raw.event(nids[3]), raw.event(nids[30])
    # Swap the two rows' positions in the log: each keeps its content, under the other's id.
    raw.run("DELETE FROM {events} WHERE {nid} = ? OR {nid} = ?", (nids[3], nids[30]))
    raw.insert_event(nids[3], *b[1:])
    raw.insert_event(nids[30], *a[1:])
    report = built.verify(public_key)
    first = report.first
    assert first.kind == "entry-changed" and first.leaf_index == 3 and first.notification_id == nids[3]
    assert {f.leaf_index for f in report.findings if f.kind == "entry-changed"} == {3, 30}


def test_reordered_leaf_map_is_named(built, public_key, raw):
    raw.run("UPDATE xl_merkle_leaves SET notification_id = -notification_id WHERE idx IN (4, 5)")
    nids = raw.nids()
    raw.run("UPDATE xl_merkle_leaves SET notification_id = ? WHERE idx = 4", (nids[5],))
    raw.run("UPDATE xl_merkle_leaves SET notification_id = ? WHERE idx = 5", (nids[4],))
    first = built.verify(public_key).first
    assert first.leaf_index == 4


def test_inserted_event_row_is_named(ledger, signer, public_key, raw):
    fill(ledger, 0, 10)
    nids = raw.nids()
    gap = nids[6]
    template = raw.event(gap)
    raw.run("DELETE FROM {events} WHERE {nid} = ?", (gap,))  # a legitimate gap, before integration
    ledger.integrate(signer=signer, origin=ORIGIN, checkpoint=True)
    assert ledger.verify(public_key).ok
    # Later someone slips a row into the gap.
    raw.insert_event(gap, template[1], template[2], template[3], template[4])
    first = ledger.verify(public_key).first
    assert first.kind == "inserted-entry"
    assert (first.leaf_index, first.notification_id) == (6, gap)
    assert first.originator_id == _oid(template[1])


def test_truncated_tail_is_caught_by_the_signed_checkpoint(built, public_key, raw):
    n = built.integrity.tree_size()
    nids = raw.nids()
    # Remove the last 5 entries and every trace of them in the tree.
    raw.run("DELETE FROM {events} WHERE {nid} >= ?", (nids[n - 5],))
    raw.run("DELETE FROM xl_merkle_leaves WHERE idx >= ?", (n - 5,))
    for level in range(7):
        raw.run("DELETE FROM xl_merkle_nodes WHERE level = ? AND (idx + 1) * ? > ?", (level, 1 << level, n - 5))
    report = built.verify(public_key)
    assert not report.ok
    assert any(f.kind == "checkpoint-size" for f in report.findings)


def test_history_rewritten_with_a_rebuilt_tree_fails_the_signed_roots(built, public_key, raw):
    nid = raw.nids()[12]
    state = raw.event(nid)[4]
    raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (_forge(state), nid))
    raw.run("DELETE FROM xl_merkle_nodes")
    raw.run("DELETE FROM xl_merkle_leaves")
    built.integrate()  # the tree is now consistent with the forged rows
    report = built.verify(public_key)
    kinds = {f.kind for f in report.findings}
    assert kinds == {"checkpoint-root"}
    assert report.first.leaf_index == 10  # the change lies after the checkpoint of size 10


def test_changed_tree_node_is_named(built, public_key, raw):
    raw.run("UPDATE xl_merkle_nodes SET hash = ? WHERE level = 2 AND idx = 3", (b"\x07" * 32,))
    first = built.verify(public_key).first
    assert first.kind == "node-changed" and first.leaf_index == 12


@pytest.mark.parametrize("level, idx, first_leaf", [(0, 6, 6), (1, 4, 8)])
def test_neighbouring_nodes_trading_a_byte_are_named(built, public_key, raw, level, idx, first_leaf):
    # Joined, the two nodes are the bytes the tree needs; each on its own is 31 or 33 bytes long.
    a, b = (bytes(r[0]) for r in raw.rows("SELECT hash FROM xl_merkle_nodes WHERE level = ? AND idx IN (?, ?) "
                                          "ORDER BY idx", (level, idx, idx + 1)))
    raw.run("UPDATE xl_merkle_nodes SET hash = ? WHERE level = ? AND idx = ?", (a[:31], level, idx))
    raw.run("UPDATE xl_merkle_nodes SET hash = ? WHERE level = ? AND idx = ?", (a[31:] + b, level, idx + 1))
    report = built.verify(public_key)
    assert not report.ok
    assert report.first.leaf_index == first_leaf
    assert report.first.kind == ("entry-changed" if level == 0 else "node-changed")


def test_forged_checkpoint_signature_is_rejected(built, public_key, raw):
    from ledger.checkpoint import SignedCheckpoint
    from ledger.note import NoteSignature

    size, text = raw.rows("SELECT tree_size, signed_json FROM xl_checkpoints ORDER BY tree_size")[1]
    signed = SignedCheckpoint.parse(text)
    sig = signed.signatures[0]
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    forged = SignedCheckpoint(signed.checkpoint, (flipped,))
    raw.run("UPDATE xl_checkpoints SET signed_json = ? WHERE tree_size = ?", (forged.stored(), size))
    report = built.verify(public_key)
    assert [f.kind for f in report.findings] == ["checkpoint-signature"]


def test_checkpoint_signed_by_another_key_is_rejected(built, public_key, raw):
    from ledger.checkpoint import Checkpoint

    private, public = generate_keypair()
    forger = CheckpointSigner(private, key_fingerprint(public))
    root = built.integrity.root(42)
    forged = forger.sign(Checkpoint(ORIGIN, 42, root))
    raw.run("UPDATE xl_checkpoints SET signed_json = ? WHERE tree_size = 42", (forged.stored(),))
    assert built.verify(public_key).first.kind == "checkpoint-signature"


def test_another_origin_or_key_is_could_not_check_not_tampered(built, public_key, signer, raw):
    for report in (built.verify(public_key, origin="exchange-ledger/prod"),
                   built.verify(generate_keypair()[1], origin=ORIGIN)):
        assert report.ok and not report.verified
        assert "none of the 5 stored checkpoints is signed by the given key" in report.unchecked[0]


def test_a_thousand_random_single_byte_mutations_are_all_detected(built, public_key, raw):
    rng = random.Random(9162)
    rows = {r[0]: r for r in raw.rows("SELECT {nid}, state FROM {events} ORDER BY {nid}")}
    nids = sorted(rows)
    leaf_of = {nid: built.integrity.leaf_index_of(nid) for nid in nids}
    mutations = 1000
    for _ in range(mutations):
        nid = rng.choice(nids)
        state = rows[nid][1]
        pos = rng.randrange(len(state))
        mutated = bytearray(state)
        mutated[pos] ^= rng.randrange(1, 256)
        raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (bytes(mutated), nid))
        report = built.verify(public_key)
        assert not report.ok, (nid, pos)
        assert report.first.leaf_index == leaf_of[nid] and report.first.notification_id == nid
        raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (state, nid))
    assert built.verify(public_key).ok
