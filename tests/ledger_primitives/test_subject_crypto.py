"""Crypto-shredding: per-subject keys, wrapping, erasure, and what must never leak."""

from __future__ import annotations

import base64
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import InMemoryNodeStore, MerkleLog, leaf_hash, verify_inclusion
from ledger.subject_crypto import (
    DataKey,
    DecryptionError,
    InMemoryKeyStore,
    KeyStore,
    SubjectCipher,
    SubjectErased,
    decrypt,
    encrypt,
    generate_master_key,
    load_master_key,
    unwrap_key,
    wrap_key,
)

ALICE = "a1" * 32  # pseudonyms are hex HMACs of the CPR number
BOB = "b2" * 32
MASTER = generate_master_key()


@pytest.fixture
def store() -> InMemoryKeyStore:
    return InMemoryKeyStore()


@pytest.fixture
def cipher(store) -> SubjectCipher:
    return SubjectCipher(store, MASTER)


# ---------------------------------------------------------------- low-level AEAD


def test_encrypt_round_trip_and_layout():
    key = DataKey.generate()
    blob = encrypt(key, b"release notice", b"event-1")
    assert len(blob) == 12 + len(b"release notice") + 16
    assert decrypt(key, blob, b"event-1") == b"release notice"
    assert decrypt(key.secret, blob, b"event-1") == b"release notice"
    assert encrypt(key, b"same", b"") != encrypt(key, b"same", b"")  # fresh nonce each time


def test_decrypt_rejects_wrong_aad_key_or_tampering():
    key = DataKey.generate()
    blob = encrypt(key, b"concern report", b"event-1")
    with pytest.raises(DecryptionError):
        decrypt(key, blob, b"event-2")
    with pytest.raises(DecryptionError):
        decrypt(DataKey.generate(), blob, b"event-1")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 1
        with pytest.raises(DecryptionError):
            decrypt(key, bytes(bad), b"event-1")
    for short in (b"", blob[:27]):
        with pytest.raises(DecryptionError):
            decrypt(key, short, b"event-1")


def test_data_key_repr_hides_the_secret():
    key = DataKey.generate()
    assert key.secret.hex() not in repr(key)
    assert repr(key.secret) not in repr(key)


# ---------------------------------------------------------------- wrapping


def test_wrap_unwrap_round_trip_and_binding():
    key = DataKey.generate()
    wrapped = wrap_key(MASTER, ALICE, key)
    assert key.secret not in wrapped
    assert unwrap_key(MASTER, ALICE, wrapped) == key
    with pytest.raises(DecryptionError, match="another subject"):
        unwrap_key(MASTER, BOB, wrapped)  # a row copied to another subject is refused
    with pytest.raises(DecryptionError):
        unwrap_key(generate_master_key(), ALICE, wrapped)
    bad = bytearray(wrapped)
    bad[5] ^= 1  # the key id is authenticated too
    with pytest.raises(DecryptionError):
        unwrap_key(MASTER, ALICE, bytes(bad))
    with pytest.raises(DecryptionError):
        unwrap_key(MASTER, ALICE, wrapped[:-1])


def test_key_store_sees_only_wrapped_keys(store, cipher):
    cipher.seal(ALICE, b"x" * 20)
    stored = store.get(ALICE)
    assert cipher.data_key(ALICE).secret not in stored
    assert MASTER not in stored


def test_copying_a_wrapped_key_to_another_subject_is_detected(store, cipher):
    cipher.seal(ALICE, b"alice's data")
    store.destroy(BOB)
    store.create(BOB, store.get(ALICE))
    with pytest.raises(DecryptionError, match="another subject"):
        cipher.seal(BOB, b"bob's data")


def test_master_key_loading():
    assert load_master_key(MASTER) == MASTER
    assert load_master_key(base64.b64encode(MASTER).decode() + "\n") == MASTER
    for junk in ("", "AAAA", "not base64!", b"\x00" * 31, None):
        with pytest.raises(ValueError):
            load_master_key(junk)


# ---------------------------------------------------------------- subject cipher


def test_seal_open_round_trip(cipher):
    blob = cipher.seal(ALICE, b"CPR-free payload", b"event-7/payload")
    assert cipher.open(ALICE, blob, b"event-7/payload") == b"CPR-free payload"
    assert cipher.open(ALICE, cipher.seal(ALICE, b""), b"") == b""


def test_key_creation_is_idempotent(store, cipher):
    first = cipher.data_key(ALICE)
    assert cipher.data_key(ALICE) == first
    assert store.create(ALICE, b"other") == store.get(ALICE)  # create keeps the existing key
    assert cipher.data_key(ALICE) == first


def test_concurrent_first_use_yields_one_key(store):
    ciphers = [SubjectCipher(store, MASTER) for _ in range(8)]
    blobs, errors = [], []

    def work(c):
        try:
            blobs.append(c.seal(ALICE, b"concurrent", b""))
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in ciphers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for blob in blobs:
        assert ciphers[0].open(ALICE, blob) == b"concurrent"


def test_wrong_aad_fails(cipher):
    blob = cipher.seal(ALICE, b"assessment", b"event-1")
    with pytest.raises(DecryptionError):
        cipher.open(ALICE, blob, b"event-2")
    with pytest.raises(DecryptionError):
        cipher.open(ALICE, blob)


def test_wrong_subject_fails_as_decryption_error_not_erasure(cipher):
    blob = cipher.seal(ALICE, b"intake notice", b"e")
    cipher.seal(BOB, b"bob", b"e")
    with pytest.raises(DecryptionError, match="not made for this subject"):
        cipher.open(BOB, blob, b"e")
    with pytest.raises(DecryptionError):
        cipher.open("c3" * 32, blob, b"e")


def test_tampered_blob_fails(cipher):
    blob = cipher.seal(ALICE, b"infohus referral", b"e")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x80
        with pytest.raises(DecryptionError):
            cipher.open(ALICE, bytes(bad), b"e")
    with pytest.raises(DecryptionError):
        cipher.open(ALICE, blob[:20], b"e")


def test_destroyed_key_raises_subject_erased(store, cipher):
    blobs = [cipher.seal(ALICE, f"exchange {i}".encode(), b"e") for i in range(3)]
    bob_blob = cipher.seal(BOB, b"bob stays", b"e")
    cipher.erase(ALICE)
    assert store.get(ALICE) is None
    for blob in blobs:
        with pytest.raises(SubjectErased):
            cipher.open(ALICE, blob, b"e")
    assert cipher.open(BOB, bob_blob, b"e") == b"bob stays"
    cipher.erase(ALICE)  # erasing twice is harmless


def test_new_data_after_erasure_gets_a_new_key_old_data_stays_erased(cipher):
    old = cipher.seal(ALICE, b"before erasure", b"e")
    old_key = cipher.data_key(ALICE)
    cipher.erase(ALICE)
    new = cipher.seal(ALICE, b"after erasure", b"e")
    assert cipher.data_key(ALICE).key_id != old_key.key_id
    assert cipher.open(ALICE, new, b"e") == b"after erasure"
    with pytest.raises(SubjectErased):
        cipher.open(ALICE, old, b"e")


def test_other_master_key_cannot_open(store, cipher):
    blob = cipher.seal(ALICE, b"secret", b"e")
    with pytest.raises(DecryptionError):
        SubjectCipher(store, generate_master_key()).open(ALICE, blob, b"e")


def test_in_memory_store_satisfies_protocol():
    assert isinstance(InMemoryKeyStore(), KeyStore)


def test_erasure_keeps_merkle_hashes_verifying(cipher):
    # The ledger hashes the sealed bytes; shredding the key must not disturb any proof.
    log = MerkleLog(InMemoryNodeStore())
    entries = [cipher.seal(ALICE if i % 2 else BOB, f"entry {i}".encode(), b"e") for i in range(9)]
    log.append_many(leaf_hash(e) for e in entries)
    root = log.root()
    cipher.erase(ALICE)
    for i, entry in enumerate(entries):
        assert verify_inclusion(leaf_hash(entry), i, 9, log.inclusion_proof(i, 9), root)
    with pytest.raises(SubjectErased):
        cipher.open(ALICE, entries[1], b"e")


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(min_size=8, max_size=512), aad=st.binary(max_size=64))
def test_property_ciphertext_never_contains_plaintext(plaintext, aad):
    cipher = SubjectCipher(InMemoryKeyStore(), MASTER)
    blob = cipher.seal(ALICE, plaintext, aad)
    assert plaintext not in blob
    assert cipher.open(ALICE, blob, aad) == plaintext


def test_realistic_payload_does_not_leak():
    cipher = SubjectCipher(InMemoryKeyStore(), MASTER)
    payload = b'{"cpr":"0101901234","name":"Jens Jensen","note":"released 2025-11-20"}'
    blob = cipher.seal(ALICE, payload, b"e")
    for fragment in (b"0101901234", b"Jensen", b"released"):
        assert fragment not in blob
