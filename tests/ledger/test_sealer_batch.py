"""LedgerSealer.batch: one key query per batch, the same keys as one message at a time, and erasure seen at once."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger.privacy import LedgerSealer, SqlKeyStore, SubjectErased

MASTER = hashlib.sha256(b"tests/ledger sealer-batch master key").digest()
SUBJECTS = [hashlib.sha256(f"subject {i}".encode()).hexdigest() for i in range(5)]


class CountingStore(SqlKeyStore):
    """The real SQL key store, counting its round trips (the database work is real)."""

    def __init__(self, tables):
        super().__init__(tables)
        self.calls: list[str] = []

    def get_many(self, subjects):
        self.calls.append("get_many")
        return super().get_many(subjects)

    def create_many(self, wrapped):
        self.calls.append("create_many")
        return super().create_many(wrapped)


def test_a_batch_reads_and_creates_its_keys_in_two_round_trips(ledger):
    store = CountingStore(ledger.tables)
    sealer = LedgerSealer(ledger.tables, MASTER, _store=store)
    sealer.seal(SUBJECTS[0], b"known before the batch")
    store.calls.clear()
    with sealer.batch(SUBJECTS + SUBJECTS) as batch:
        blobs = {s: batch.seal(s, f"data of {s}".encode(), b"aad") for s in SUBJECTS}
    assert store.calls == ["get_many", "create_many"]
    # Sealed under the stored keys: the plain per-message sealer opens every blob.
    plain = LedgerSealer(ledger.tables, MASTER)
    assert all(plain.open(s, b, b"aad") == f"data of {s}".encode() for s, b in blobs.items())


def test_a_batch_without_create_leaves_unknown_subjects_without_a_key(ledger):
    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(SUBJECTS[:2], create=False):
        pass
    assert SqlKeyStore(ledger.tables).get_many(SUBJECTS[:2]) == {}


def test_an_erasure_between_batches_is_seen_by_the_next_batch(ledger):
    gate = LedgerSealer(ledger.tables, MASTER)
    eraser = LedgerSealer(ledger.tables, MASTER)  # another process: `xledger subject erase`
    with gate.batch([SUBJECTS[1]]) as batch:
        before = batch.seal(SUBJECTS[1], b"before erasure")
    eraser.erase(SUBJECTS[1])
    with gate.batch([SUBJECTS[1]], create=False) as batch:
        with pytest.raises(SubjectErased):
            batch.open(SUBJECTS[1], before)
    with gate.batch([SUBJECTS[1]]) as batch:
        after = batch.seal(SUBJECTS[1], b"seen again after erasure")
        # A new key generation: the new blob opens, the old one stays shredded.
        assert batch.open(SUBJECTS[1], after) == b"seen again after erasure"
        with pytest.raises(SubjectErased):
            batch.open(SUBJECTS[1], before)


def test_the_first_stored_key_wins_when_two_processes_create_one(ledger):
    from ledger.subject_crypto import new_wrapped_key

    store = SqlKeyStore(ledger.tables)
    ours, theirs = new_wrapped_key(MASTER, SUBJECTS[2]), new_wrapped_key(MASTER, SUBJECTS[2])
    assert store.create_many({SUBJECTS[2]: theirs}) == {SUBJECTS[2]: theirs}
    # Our insert of a key made before we saw theirs loses: we get theirs back and seal under it.
    fresh = new_wrapped_key(MASTER, SUBJECTS[3])
    assert store.create_many({SUBJECTS[2]: ours, SUBJECTS[3]: fresh}) == {SUBJECTS[2]: theirs, SUBJECTS[3]: fresh}


def test_many_subjects_are_read_in_bounded_statements(ledger):
    subjects = [hashlib.sha256(f"many {i}".encode()).hexdigest() for i in range(1203)]
    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(subjects) as batch:
        blobs = [batch.seal(s, b"x") for s in subjects]
    assert len(SqlKeyStore(ledger.tables).get_many(subjects)) == 1203
    with sealer.batch(subjects, create=False) as batch:
        assert all(batch.open(s, b) == b"x" for s, b in zip(subjects, blobs))


def test_new_keys_wait_for_another_writer_instead_of_failing(ledger, ledger_url):
    """Another process (the relay, a second gate) writing while a batch makes keys: the batch waits
    for it and stores its keys. (Read before write, SQLite refused it at once: "database is locked".)"""
    import threading

    from ledger.application import Ledger

    other = Ledger(ledger_url)
    holding, release = threading.Event(), threading.Event()

    def write_meanwhile():
        with other.tables.cursor() as c:
            c.execute("INSERT INTO xl_checkpoints (tree_size, signed_json) VALUES (?, ?)", (999, "{}"))
            holding.set()
            release.wait(5)

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    try:
        assert holding.wait(5)
        threading.Timer(0.3, release.set).start()  # the other commits while the batch waits for the lock
        sealer = LedgerSealer(ledger.tables, MASTER)
        with sealer.batch(SUBJECTS[3:]) as batch:
            blob = batch.seal(SUBJECTS[3], b"sealed while another wrote")
    finally:
        release.set()
        writer.join()
        other.close()
    assert set(SqlKeyStore(ledger.tables).get_many(SUBJECTS[3:])) == set(SUBJECTS[3:])
    assert LedgerSealer(ledger.tables, MASTER).open(SUBJECTS[3], blob) == b"sealed while another wrote"


def test_a_batch_unwraps_each_subjects_key_once_and_not_after_erasure(ledger, monkeypatch):
    import ledger.subject_crypto as sc

    unwrapped: list[str] = []
    real = sc.unwrap_key
    monkeypatch.setattr(sc, "unwrap_key", lambda ring, s, w: unwrapped.append(s) or real(ring, s, w))
    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(SUBJECTS[:2]) as batch:
        blobs = [batch.seal(s, b"data", b"aad") for s in SUBJECTS[:2] * 3]
        assert sorted(unwrapped) == sorted(SUBJECTS[:2])
        batch.erase(SUBJECTS[0])  # erased within the batch: its remembered key is not used again
        with pytest.raises(SubjectErased):
            batch.open(SUBJECTS[0], blobs[0], b"aad")
        fresh = batch.seal(SUBJECTS[0], b"after", b"aad")  # a new key, unwrapped anew
    assert unwrapped.count(SUBJECTS[0]) == 2
    plain = LedgerSealer(ledger.tables, MASTER)
    assert plain.open(SUBJECTS[0], fresh, b"aad") == b"after"
    assert plain.open(SUBJECTS[1], blobs[1], b"aad") == b"data"


def test_a_batch_seals_the_same_blob_as_the_plain_cipher(ledger, monkeypatch):
    """The batch's cipher derives header, AES-GCM object and aad prefix once per data key: with the
    same nonce its blob is byte for byte the plain SubjectCipher's, and opens with the plain sealer."""
    import ledger.subject_crypto as sc

    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(SUBJECTS[:2]) as batch:
        monkeypatch.setattr(sc.os, "urandom", lambda n: b"\x07" * n)
        for s in SUBJECTS[:2] * 2:
            for aad in (b"", b"exchange:1", bytearray(b"exchange:2")):
                assert batch.cipher.seal(s, b"data", aad) == sc.SubjectCipher.seal(batch.cipher, s, b"data", aad)
        monkeypatch.undo()
        blob = batch.seal(SUBJECTS[0], b"data", b"exchange:3")
        assert batch.cipher.memo.sealing
    assert batch.cipher.memo.sealing == {}  # forgotten with the batch, as the keys are
    assert LedgerSealer(ledger.tables, MASTER).open(SUBJECTS[0], blob, b"exchange:3") == b"data"
    with pytest.raises(sc.DecryptionError):
        LedgerSealer(ledger.tables, MASTER).open(SUBJECTS[0], blob, b"exchange:4")


def test_a_key_replaced_within_a_batch_is_not_sealed_under(ledger):
    """The wrapped key is read for every message: erased within the batch and made anew, the next
    messages are sealed under the new key, not under what the batch derived for the old one."""
    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(SUBJECTS[:1]) as batch:
        old = batch.seal(SUBJECTS[0], b"old key", b"aad")
        batch.erase(SUBJECTS[0])
        with pytest.raises(ValueError):
            batch.seal("", b"no subject", b"aad")  # not a subject: named, never sealed
        new = batch.seal(SUBJECTS[0], b"new key", b"aad")  # the key made here
        again = batch.seal(SUBJECTS[0], b"new key again", b"aad")  # and now found in the store
    assert base64.b64decode(new)[1:17] == base64.b64decode(again)[1:17] != base64.b64decode(old)[1:17]
    plain = LedgerSealer(ledger.tables, MASTER)
    assert plain.open(SUBJECTS[0], new, b"aad") == b"new key"
    assert plain.open(SUBJECTS[0], again, b"aad") == b"new key again"
    with pytest.raises(SubjectErased):
        plain.open(SUBJECTS[0], old, b"aad")


def test_nothing_unwrapped_outlives_the_batch_and_erasure_between_batches_is_honoured(ledger, ledger_url):
    from ledger.application import Ledger

    sealer = LedgerSealer(ledger.tables, MASTER)
    with sealer.batch(SUBJECTS[:2]) as batch:
        blob = batch.seal(SUBJECTS[0], b"first batch", b"aad")
        assert batch.cipher.memo.keys and batch.cipher.memo.aeads
    # the view was kept: its keys (and their AES-GCM objects) were not
    assert batch.cipher.memo.keys == {} and batch.cipher.memo.aeads == {}
    other = Ledger(ledger_url)  # another process erases the subject between the batches
    try:
        LedgerSealer(other.tables, MASTER).erase(SUBJECTS[0])
    finally:
        other.close()
    with sealer.batch(SUBJECTS[:2]) as batch:
        with pytest.raises(SubjectErased):
            batch.open(SUBJECTS[0], blob, b"aad")
        fresh = batch.seal(SUBJECTS[0], b"second batch", b"aad")
    assert fresh[:20] != blob[:20]  # a new data key (its id is in the blob's header)
    with pytest.raises(SubjectErased):
        LedgerSealer(ledger.tables, MASTER).open(SUBJECTS[0], blob, b"aad")


def test_a_master_key_rotation_during_and_between_batches_loses_nothing(ledger):
    from ledger.rotation import rotate_master_key
    from ledger.subject_crypto import MasterKeyRing, master_key_id

    m1 = hashlib.sha256(b"tests/ledger sealer-batch master key 1").digest()
    both = MasterKeyRing([MASTER, m1])
    sealer = LedgerSealer(ledger.tables, both)
    with sealer.batch(SUBJECTS[:3]) as batch:
        before = {s: batch.seal(s, b"before", b"aad") for s in SUBJECTS[:3]}
        rotate_master_key(ledger.tables, both, master_key_id(m1), batch_size=2)  # another process, mid-batch
        during = {s: batch.seal(s, b"during", b"aad") for s in SUBJECTS[:3]}
    with sealer.batch(SUBJECTS[:3]) as batch:
        after = {s: batch.seal(s, b"after", b"aad") for s in SUBJECTS[:3]}
        assert {batch.open(s, before[s], b"aad") for s in SUBJECTS[:3]} == {b"before"}
    only_new = LedgerSealer(ledger.tables, MasterKeyRing([m1]))  # the old master key gone
    for s in SUBJECTS[:3]:
        assert [only_new.open(s, blobs[s], b"aad") for blobs in (before, during, after)] == \
            [b"before", b"during", b"after"]
