"""The witness role (ledger.witness) and cosignatures (ledger.note), without HTTP: every
decision of the C2SP tlog-witness protocol, and the atomic state update."""

from __future__ import annotations

import base64
import struct
import threading

import pytest

from ledger.checkpoint import Checkpoint, CheckpointSigner, generate_keypair, note_verifier_key
from ledger.merkle import InMemoryNodeStore, MerkleLog, leaf_hash
from ledger.note import Cosigner, CosignatureVerifier, Note, NoteError, NoteSignature, open_note, verifier_from_vkey
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    SqliteWitnessStore,
    Witness,
    WitnessRefusal,
    format_add_checkpoint,
    parse_add_checkpoint,
)

ORIGIN = "exchange-ledger/test"


class Log:
    def __init__(self, entries: int = 40, flipped: int | None = None):
        self.private, self.public = generate_keypair()
        self.signer = CheckpointSigner(self.private)
        self.tree = MerkleLog(InMemoryNodeStore())
        self.tree.append_many(leaf_hash(b"entry %d%s" % (i, b"!" if i == flipped else b"")) for i in range(entries))

    def note(self, size: int, root: bytes | None = None) -> str:
        return self.signer.sign(Checkpoint(ORIGIN, size, root or self.tree.root(size))).to_note()

    def vkey(self) -> str:
        return note_verifier_key(ORIGIN, self.public)

    def request(self, old: int, new: int, root: bytes | None = None, proof=None) -> bytes:
        if proof is None:
            proof = self.tree.consistency_proof(old, new) if 0 < old < new else []
        return format_add_checkpoint(old, proof, self.note(new, root))


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def witness(tmp_path, log) -> Witness:
    cosigner = Cosigner("witness.example/w1", generate_keypair()[0])
    return Witness(cosigner, {ORIGIN: [verifier_from_vkey(log.vkey())]}, SqliteWitnessStore(tmp_path / "w.sqlite"),
                   clock=lambda: 1_700_000_000)


def refusal(witness: Witness, body: bytes) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as exc:
        witness.add_checkpoint(body)
    return exc.value


def test_cosignature_is_c2sp_cosignature_v1(witness, log):
    line = witness.add_checkpoint(log.request(0, 10))
    sig = NoteSignature.parse_line(line)
    verifier = witness.cosigner.verifier()
    assert sig.name == "witness.example/w1" and sig.key_id == verifier.key_id
    # The signed message: header, time line, then the checkpoint note text, as the spec shows.
    (timestamp,) = struct.unpack(">Q", sig.signature[:8])
    assert timestamp == 1_700_000_000
    body = Checkpoint(ORIGIN, 10, log.tree.root(10)).body()
    witness.cosigner.public_key.verify(sig.signature[8:], b"cosignature/v1\ntime 1700000000\n" + body)
    # Key id: SHA-256(name || 0x0A || 0x04 || key)[:4], and the vkey round-trips.
    assert verifier_from_vkey(verifier.vkey).key_id == verifier.key_id
    assert base64.b64decode(verifier.vkey.split("+", 2)[2])[0] == 0x04
    note = Note.parse(log.note(10)).with_signatures([sig])
    _, good = open_note(note.render(), [verifier])
    assert good == [sig]
    assert CosignatureVerifier.timestamp(sig) == 1_700_000_000


def test_honest_growth_is_cosigned_and_remembered(witness, log, tmp_path):
    witness.add_checkpoint(log.request(0, 10))
    witness.add_checkpoint(log.request(10, 25))
    witness.add_checkpoint(log.request(25, 25))  # the same checkpoint again is fine
    assert SqliteWitnessStore(tmp_path / "w.sqlite").latest(ORIGIN).tree_size == 25


def test_size_mismatch_is_409_with_the_witness_size(witness, log):
    witness.add_checkpoint(log.request(0, 10))
    r = refusal(witness, log.request(0, 20))
    assert (r.status, r.body, r.content_type) == (409, "10\n", SIZE_CONTENT_TYPE)
    witness.add_checkpoint(log.request(10, 20))


def test_fork_bad_proof_and_rollback_are_refused_and_kept_as_evidence(witness, log):
    witness.add_checkpoint(log.request(0, 20))
    other = Log(flipped=3)  # the same key signing another history: what an insider's rebuild looks like
    other.signer = log.signer
    r = refusal(witness, format_add_checkpoint(20, other.tree.consistency_proof(20, 30), other.note(30)))
    assert (r.status, r.reason) == (422, "bad-proof")
    r = refusal(witness, format_add_checkpoint(20, [], other.note(20)))
    assert (r.status, r.reason) == (409, "fork")
    r = refusal(witness, log.request(20, 15))
    assert (r.status, r.reason) == (400, "rollback")
    r = refusal(witness, log.request(10, 15))
    assert (r.status, r.reason, r.body) == (409, "rollback", "20\n")
    assert [x[2] for x in witness.store.refusals(ORIGIN)] == ["bad-proof", "fork", "rollback", "rollback"]
    assert witness.store.latest(ORIGIN).tree_size == 20


def test_unknown_log_and_bad_signatures(witness, log, tmp_path):
    stranger = Log()
    r = refusal(witness, stranger.request(0, 5))
    assert (r.status, r.reason) == (403, "unsigned")
    moved = log.note(5).replace("\n5\n", "\n6\n", 1)
    r = refusal(witness, format_add_checkpoint(0, [], moved))
    assert (r.status, r.reason) == (403, "bad-signature")
    other_origin = CheckpointSigner(log.private).sign(Checkpoint("exchange-ledger/other", 5, log.tree.root(5)))
    r = refusal(witness, format_add_checkpoint(0, [], other_origin.to_note()))
    assert r.status == 404
    assert witness.store.latest(ORIGIN) is None and witness.store.refusals() == []


@pytest.mark.parametrize("body", [
    b"", b"old 1", b"old 01\n\n", b"new 1\n\n", b"old 1\nnot base64!\n\n", b"old 0\n" + b"AAAA\n\n",
    b"old 0\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * 64) + b"\n",
    b"old 0\n\nnot a note", b"\xff\xfe", b"old 0\n\n" + "o\n1\n{}\n\n\u2014 o AAAAAAA=\n".encode(),
    b"old 99999999999999999999\n\n",
])
def test_malformed_requests_are_400(witness, body):
    assert refusal(witness, body).status == 400


def test_old_larger_than_new_is_400(witness, log):
    assert refusal(witness, log.request(0, 5).replace(b"old 0", b"old 7", 1)).status == 400


def test_nonempty_proof_from_zero_is_422(witness, log):
    r = refusal(witness, format_add_checkpoint(0, [bytes(32)], log.note(5)))
    assert r.status == 422


def test_parse_round_trip(log):
    proof = log.tree.consistency_proof(7, 30)
    req = parse_add_checkpoint(format_add_checkpoint(7, proof, log.note(30)))
    assert (req.old_size, list(req.proof), req.note) == (7, proof, log.note(30))


def test_racing_requests_never_roll_the_state_back(witness, log):
    """Both requests extend size 10; whichever stores first wins, the other gets 409, and the stored
    size never goes down (the check and the update are one transaction)."""
    witness.add_checkpoint(log.request(0, 10))
    results: dict[int, object] = {}

    def submit(size: int) -> None:
        try:
            results[size] = witness.add_checkpoint(log.request(10, size))
        except WitnessRefusal as exc:
            results[size] = exc

    threads = [threading.Thread(target=submit, args=(size,)) for size in (20, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [s for s, r in results.items() if isinstance(r, str)]
    lost = [r for r in results.values() if isinstance(r, WitnessRefusal)]
    assert len(won) == 1 and len(lost) == 1 and lost[0].status == 409
    assert witness.store.latest(ORIGIN).tree_size == won[0]


def test_note_parsing_rejects_what_the_spec_forbids():
    for bad in ["no blank line\n", "text\n\n", "text\n\n\u2014 name\n", "text\n\n\u2014 na+me AAAAAAA=\n",
                "te\x01xt\n\n\u2014 name AAAAAAA=\n", "text\n\n- name AAAAAAA=\n", "text\n\n\u2014 name AAAA\n"]:
        with pytest.raises(NoteError):
            Note.parse(bad)
    for bad in ["name+00000000+AAAA", "na me+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
                "name+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
                "name+zz+" + base64.b64encode(b"\x02" + bytes(32)).decode()]:
        with pytest.raises(NoteError):
            verifier_from_vkey(bad)
