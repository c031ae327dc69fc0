"""Signed checkpoints: canonical body, the C2SP note form written since v2, the v1 JSON form
that older ledgers hold (still read and verified), key history, and every way verification
must fail."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

import hashlib

from ledger.checkpoint import (
    FORMAT,
    LogKey,
    UnknownKeyError,
    parse_key_history,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    CheckpointVerifier,
    SignedCheckpoint,
    encode_private_key,
    encode_public_key,
    generate_keypair,
    key_fingerprint,
    load_private_key,
    load_public_key,
    utc_timestamp,
)
from ledger.note import Cosigner, Ed25519Signer, NoteSignature


def _raw(public) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

ROOT = bytes(range(32))
ORIGIN = "exchange-ledger/test"


@pytest.fixture(scope="module")
def keys():
    private, public = generate_keypair()
    return private, public, key_fingerprint(public)


def legacy_sign(private, key_id: str, cp: Checkpoint) -> SignedCheckpoint:
    """A checkpoint as ledgers before v2 signed it: plain Ed25519 over the body, JSON form."""
    return SignedCheckpoint(cp, legacy_key_id=key_id, legacy_signature=private.sign(cp.body()))


@pytest.fixture
def signed(keys):
    """A v1 (JSON form) checkpoint, as older ledgers hold them."""
    private, _, key_id = keys
    cp = Checkpoint(ORIGIN, 42, ROOT, "2025-11-26T08:04:00Z")
    return legacy_sign(private, key_id, cp)


@pytest.fixture
def note_signed(keys):
    private, _, key_id = keys
    return CheckpointSigner(private, key_id).sign(Checkpoint(ORIGIN, 42, ROOT))


def test_new_checkpoints_are_c2sp_notes_named_by_origin(keys, note_signed):
    _, public, key_id = keys
    text = note_signed.to_note()
    body, sep, sigs = text.partition("\n\n")
    assert body + "\n" == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    dash, name, blob = sigs.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", ORIGIN)
    raw = base64.b64decode(blob)
    assert raw[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + _raw(public)).digest()[:4]
    public.verify(raw[4:], note_signed.checkpoint.body())
    again = SignedCheckpoint.parse(text)
    assert again == note_signed and again.stored() == text
    assert CheckpointVerifier(public, key_id, origin=ORIGIN).verify(again).public_key == public
    assert SignedCheckpoint.from_json(note_signed.to_json()) == note_signed


def test_note_checkpoint_failures(keys, note_signed):
    _, public, _ = keys
    _, other = generate_keypair()
    with pytest.raises(UnknownKeyError, match="not signed by any known key"):
        CheckpointVerifier(other).verify(note_signed)
    with pytest.raises(UnknownKeyError, match="origin"):
        CheckpointVerifier(public, origin="exchange-ledger/prod").verify(note_signed)
    sig = note_signed.signatures[0]
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(CheckpointError, match="bad checkpoint signature"):
        CheckpointVerifier(public).verify(SignedCheckpoint(note_signed.checkpoint, (flipped,)))
    moved = SignedCheckpoint(Checkpoint(ORIGIN, 43, ROOT), note_signed.signatures)
    with pytest.raises(CheckpointError, match="bad checkpoint signature"):
        CheckpointVerifier(public).verify(moved)
    # An unknown signature beside the log's own is ignored, as the note spec requires.
    stranger = Ed25519Signer("witness.example/w", generate_keypair()[0]).sign(b"x")
    CheckpointVerifier(public).verify(note_signed.with_signatures([stranger]))


def test_key_history_lets_retired_keys_verify_only_their_sizes(keys):
    old_private, old_public, _ = keys
    new_private, new_public = generate_keypair()
    early = CheckpointSigner(old_private).sign(Checkpoint(ORIGIN, 10, ROOT))
    late = CheckpointSigner(new_private).sign(Checkpoint(ORIGIN, 30, ROOT))
    assert early.signatures[0].key_id != late.signatures[0].key_id  # a new key, a new key id
    history_text = "# retired log keys\n" + LogKey(old_public, ORIGIN, 0, 20).history_line() + "\n"
    history = parse_key_history(history_text)
    verifier = CheckpointVerifier(new_public, origin=ORIGIN, history=history)
    assert verifier.verify(early).public_key == history[0].public_key
    assert verifier.verify(late).public_key == new_public
    with pytest.raises(UnknownKeyError):
        CheckpointVerifier(new_public, origin=ORIGIN).verify(early)  # no history, no old key
    # The retired key may not sign past its last size; the current key not before its first.
    with pytest.raises(CheckpointError, match="may sign only sizes 0..20"):
        verifier.verify(CheckpointSigner(old_private).sign(Checkpoint(ORIGIN, 25, ROOT)))
    with pytest.raises(CheckpointError, match="may sign only sizes 21.."):
        verifier.verify(CheckpointSigner(new_private).sign(Checkpoint(ORIGIN, 15, ROOT)))
    # A v1 checkpoint signed by the retired key verifies through the history too.
    v1 = legacy_sign(old_private, key_fingerprint(old_public), Checkpoint(ORIGIN, 5, ROOT, "2025-01-01T00:00:00Z"))
    assert verifier.verify(v1).public_key == history[0].public_key


@pytest.mark.parametrize("line", ["nonsense", "a+b+c 0 1", "{vkey} x 1", "{vkey} 5 2", "{vkey} 1", "{cosig} 0 -"])
def test_bad_key_history_lines_are_named(keys, line):
    _, public, _ = keys
    vkey = LogKey(public, ORIGIN).history_line().split()[0]
    cosig = Cosigner("w.example", generate_keypair()[0]).verifier().vkey
    with pytest.raises(CheckpointError, match="line 2"):
        parse_key_history("# header\n" + line.format(vkey=vkey, cosig=cosig) + "\n")


def test_body_is_the_c2sp_checkpoint_text():
    cp = Checkpoint(ORIGIN, 42, ROOT, "2025-11-26T08:04:00Z")
    assert cp.body() == (
        b"exchange-ledger/test\n42\n"
        + base64.b64encode(ROOT)
        + b"\ntime 2025-11-26T08:04:00Z\n"
    )
    assert Checkpoint.from_body(cp.body()) == cp


def test_empty_tree_checkpoint_is_fine():
    cp = Checkpoint(ORIGIN, 0, bytes(32), utc_timestamp())
    assert Checkpoint.from_body(cp.body()) == cp


def test_sign_verify_and_json_round_trip(keys, signed):
    _, public, key_id = keys
    CheckpointVerifier(public, key_id).verify(signed)
    again = SignedCheckpoint.from_json(signed.to_json())
    assert again == signed
    CheckpointVerifier(encode_public_key(public), key_id, origin=ORIGIN).verify(again)
    doc = json.loads(signed.to_json())
    assert doc["format"] == FORMAT
    assert set(doc) == {"format", "origin", "tree_size", "root_hash", "timestamp", "key_id",
                        "signature"}
    assert base64.b64decode(doc["root_hash"]) == ROOT


def test_signature_is_plain_ed25519_over_the_body(keys, signed):
    # So the checkpoint can be re-expressed as a C2SP signed note without re-signing.
    _, public, _ = keys
    public.verify(signed.legacy_signature, signed.checkpoint.body())


@pytest.mark.parametrize(
    "field, value",
    [
        ("tree_size", 43),
        ("root_hash", base64.b64encode(bytes(32)).decode()),
        ("origin", "exchange-ledger/other"),
        ("timestamp", "2025-11-26T08:04:01Z"),
    ],
)
def test_any_change_to_the_signed_fields_breaks_the_signature(keys, signed, field, value):
    _, public, key_id = keys
    doc = signed.to_dict()
    doc[field] = value
    tampered = SignedCheckpoint.from_dict(doc)
    with pytest.raises(CheckpointError, match="bad checkpoint signature"):
        CheckpointVerifier(public, key_id).verify(tampered)


def test_wrong_key_wrong_key_id_wrong_origin(keys, signed):
    _, public, key_id = keys
    _, other_public = generate_keypair()
    with pytest.raises(CheckpointError, match="bad checkpoint signature"):
        CheckpointVerifier(other_public, key_id).verify(signed)
    with pytest.raises(CheckpointError, match="expected 'someone-else'"):
        CheckpointVerifier(public, "someone-else").verify(signed)
    with pytest.raises(CheckpointError, match="origin"):
        CheckpointVerifier(public, key_id, origin="exchange-ledger/prod").verify(signed)
    CheckpointVerifier(public, None).verify(signed)  # label check skipped, signature still needed
    relabelled = SignedCheckpoint(signed.checkpoint, legacy_key_id="someone-else",
                                  legacy_signature=signed.legacy_signature)
    CheckpointVerifier(public, None).verify(relabelled)
    with pytest.raises(UnknownKeyError, match="not signed by any known key"):
        CheckpointVerifier(other_public, None).verify(relabelled)


def test_flipped_signature_bit_fails(keys, signed):
    _, public, key_id = keys
    sig = bytearray(signed.legacy_signature)
    sig[10] ^= 0x40
    with pytest.raises(CheckpointError):
        CheckpointVerifier(public, key_id).verify(
            SignedCheckpoint(signed.checkpoint, legacy_key_id=signed.key_id, legacy_signature=bytes(sig))
        )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signature"),
        lambda d: d.update(extra=1),
        lambda d: d.update(format="exchange-ledger/signed-checkpoint/v0"),
        lambda d: d.update(tree_size="42"),
        lambda d: d.update(tree_size=42.0),
        lambda d: d.update(tree_size=True),
        lambda d: d.update(tree_size=-1),
        lambda d: d.update(root_hash="not base64!"),
        lambda d: d.update(root_hash=base64.b64encode(bytes(31)).decode()),
        lambda d: d.update(root_hash=base64.b64encode(bytes(32)).decode().rstrip("=")),
        lambda d: d.update(signature=base64.b64encode(bytes(63)).decode()),
        lambda d: d.update(signature=None),
        lambda d: d.update(timestamp="2025-11-26 08:04:00"),
        lambda d: d.update(timestamp="2025-11-26T08:04:00+01:00"),
        lambda d: d.update(timestamp="2025-02-30T08:04:00Z"),
        lambda d: d.update(origin=""),
        lambda d: d.update(origin="two\nlines"),
        lambda d: d.update(key_id=""),
        lambda d: d.update(key_id=7),
    ],
)
def test_malformed_json_is_rejected_with_checkpoint_error(signed, mutate):
    doc = signed.to_dict()
    mutate(doc)
    with pytest.raises(CheckpointError):
        SignedCheckpoint.from_json(json.dumps(doc))


@pytest.mark.parametrize("text", ["", "[]", "null", "{", b"\xff\xfe", '"string"'])
def test_non_object_json_is_rejected(text):
    with pytest.raises(CheckpointError):
        SignedCheckpoint.from_json(text)


def test_from_body_rejects_non_canonical_text():
    good = Checkpoint(ORIGIN, 7, ROOT, "2025-11-26T08:04:00Z").body().decode()
    for bad in [good.replace("\n7\n", "\n07\n"), good + "extra\n", good.rstrip("\n"),
                good.replace("time ", "when ")]:
        with pytest.raises(CheckpointError):
            Checkpoint.from_body(bad)


def test_utc_timestamp_spelling():
    moment = datetime(2025, 11, 26, 9, 4, tzinfo=timezone(timedelta(hours=1)))
    assert utc_timestamp(moment) == "2025-11-26T08:04:00Z"
    assert utc_timestamp(moment.replace(microsecond=5)) == "2025-11-26T08:04:00.000005Z"
    Checkpoint(ORIGIN, 1, ROOT, utc_timestamp())  # now is valid
    with pytest.raises(CheckpointError):
        utc_timestamp(datetime(2025, 1, 1))


def test_key_loading_forms(keys):
    private, public, _ = keys
    raw_pub = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_pub = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for form in (public, raw_pub, base64.b64encode(raw_pub), encode_public_key(public),
                 pem_pub, pem_pub.decode(), encode_public_key(public) + "\n"):
        assert load_public_key(form).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ) == raw_pub
    pem_priv = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for form in (private, pem_priv, pem_priv.decode(), encode_private_key(private)):
        assert encode_private_key(load_private_key(form)) == encode_private_key(private)
    for junk in ("", "AAAA", b"\x00" * 31, "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----",
                 12, None):
        with pytest.raises(CheckpointError):
            load_public_key(junk)
        with pytest.raises(CheckpointError):
            load_private_key(junk)


def test_non_ed25519_pem_is_rejected():
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(CheckpointError, match="not Ed25519"):
        load_public_key(pem)


def test_key_fingerprint_is_stable(keys):
    _, public, key_id = keys
    assert key_fingerprint(encode_public_key(public)) == key_id
    assert key_id.startswith("ed25519:") and len(key_id) == len("ed25519:") + 16


@settings(max_examples=100, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), min_size=1, max_size=30
    ),
    size=st.integers(0, 2**63),
    root=st.binary(min_size=32, max_size=32),
)
def test_property_json_round_trip(keys, origin, size, root):
    private, public, key_id = keys
    signed = legacy_sign(private, key_id, Checkpoint(origin, size, root, "2030-01-01T00:00:00.5Z"))
    again = SignedCheckpoint.from_json(signed.to_json())
    assert again == signed
    CheckpointVerifier(public, key_id).verify(again)
    if "+" not in origin:  # a note key name has no '+'
        note = CheckpointSigner(private, key_id).sign(Checkpoint(origin, size, root))
        assert SignedCheckpoint.parse(note.stored()) == note
        CheckpointVerifier(public, key_id).verify(SignedCheckpoint.parse(note.stored()))


# ---------------------------------------------------------------- C2SP signed-note interop
# Known answer from golang.org/x/mod/sumdb/note (note_test.go / package doc). Ed25519 is
# deterministic, so signing the same text with the same seed must give the same note.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT.decode()
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signed_note_matches_go_sumdb_note_vector():
    from ledger.checkpoint import note_verifier_key, signed_note

    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])[1:]
    private = load_private_key(seed)
    public = private.public_key()
    assert note_verifier_key("PeterNeumann", public) == GO_VERIFIER_KEY
    assert signed_note(GO_TEXT, "PeterNeumann", public, private.sign(GO_TEXT)) == GO_NOTE


def test_checkpoint_renders_as_signed_note(keys, signed):
    from ledger.checkpoint import note_verifier_key

    _, public, _ = keys
    note = signed.to_note(public)
    body, _, sig_line = note.partition("\n\n")
    assert (body + "\n").encode() == signed.checkpoint.body()
    dash, name, blob = sig_line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", ORIGIN)
    raw = base64.b64decode(blob)
    assert raw[4:] == signed.legacy_signature
    assert note_verifier_key(ORIGIN, public).split("+")[1] == raw[:4].hex()


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\n1\n" + base64.b64encode(ROOT) + b"\ntime 2025-11-26T08:04:00Z\n",
        "o\n\u0661\n" + base64.b64encode(ROOT).decode() + "\ntime 2025-11-26T08:04:00Z\n",
        "o\n1\n" + base64.b64encode(ROOT).decode() + "\ntime \u0662025-11-26T08:04:00Z\n",
        "\ud800\n1\n" + base64.b64encode(ROOT).decode() + "\ntime 2025-11-26T08:04:00Z\n",
        None,
    ],
)
def test_from_body_rejects_undecodable_or_non_ascii_numbers(body):
    with pytest.raises(CheckpointError):
        Checkpoint.from_body(body)


def test_a_note_whose_origin_looks_like_json_is_still_a_note(keys):
    private, public, _ = keys
    note = CheckpointSigner(private).sign(Checkpoint("{", 0, ROOT))
    assert SignedCheckpoint.parse(note.stored()) == note
    CheckpointVerifier(public).verify(SignedCheckpoint.parse(note.stored()))
