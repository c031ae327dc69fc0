"""Portable proofs: an outsider checks them from JSON files and a public key alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    SignedCheckpoint,
    encode_public_key,
    generate_keypair,
    key_fingerprint,
)
from ledger.merkle import InMemoryNodeStore, MerkleLog, leaf_hash
from ledger.proofs import (
    CONSISTENCY_FORMAT,
    INCLUSION_FORMAT,
    ConsistencyProof,
    InclusionProof,
    ProofError,
    ProofFormatError,
    main,
    make_consistency_proof,
    make_inclusion_proof,
    verify_consistency_bundle,
    verify_inclusion_bundle,
)

ORIGIN = "exchange-ledger/test"
ENTRIES = [f"decision-{i}".encode() for i in range(40)]


class Operator:
    """The log side: a tree, a signer, and checkpoints at chosen sizes."""

    def __init__(self, entries=ENTRIES):
        self.private, self.public = generate_keypair()
        self.key_id = key_fingerprint(self.public)
        self.signer = CheckpointSigner(self.private, self.key_id)
        self.log = MerkleLog(InMemoryNodeStore())
        self.log.append_many(leaf_hash(e) for e in entries)

    def checkpoint(self, size: int, root: bytes | None = None, origin: str = ORIGIN) -> str:
        """A C2SP checkpoint note, as the ledger signs them since v2."""
        return self.signer.sign(Checkpoint(origin, size, root or self.log.root(size))).stored()

    def legacy_checkpoint(self, size: int) -> str:
        """A checkpoint in the v1 JSON form that older ledgers hold."""
        cp = Checkpoint(ORIGIN, size, self.log.root(size), "2025-11-26T08:04:00Z")
        return SignedCheckpoint(cp, legacy_key_id=self.key_id, legacy_signature=self.private.sign(cp.body())).to_json()


@pytest.fixture(scope="module")
def op() -> Operator:
    return Operator()


def test_inclusion_bundle_valid_for_every_leaf(op):
    for size in (1, 7, 8, 40):
        cp = op.checkpoint(size)
        for index in range(size):
            proof = make_inclusion_proof(op.log, index, size).to_json()
            verify_inclusion_bundle(proof, cp, encode_public_key(op.public), key_id=op.key_id,
                                    origin=ORIGIN, leaf_data=ENTRIES[index])


def test_consistency_bundle_valid_for_size_pairs(op):
    for old in (0, 1, 5, 8, 39, 40):
        for new in (old, 13, 40):
            if new < old:
                continue
            proof = make_consistency_proof(op.log, old, new).to_json()
            verify_consistency_bundle(proof, op.checkpoint(old), op.checkpoint(new), op.public)


def test_proof_json_round_trip_and_documented_shape(op):
    inc = make_inclusion_proof(op.log, 3, 40)
    doc = json.loads(inc.to_json())
    assert doc["format"] == INCLUSION_FORMAT
    assert set(doc) == {"format", "leaf_index", "tree_size", "leaf_hash", "path"}
    assert InclusionProof.from_json(inc.to_json()) == inc
    con = make_consistency_proof(op.log, 7, 40)
    assert json.loads(con.to_json())["format"] == CONSISTENCY_FORMAT
    assert ConsistencyProof.from_json(con.to_json()) == con


def test_inclusion_failures_name_the_check(op):
    proof = make_inclusion_proof(op.log, 3, 20)
    cp20 = op.checkpoint(20)
    with pytest.raises(ProofError, match="tree size mismatch"):
        verify_inclusion_bundle(proof.to_json(), op.checkpoint(21), op.public)
    with pytest.raises(ProofError, match="leaf hash mismatch"):
        verify_inclusion_bundle(proof.to_json(), cp20, op.public, leaf_data=b"something else")
    with pytest.raises(ProofError, match="does not lead to the signed root"):
        bad = InclusionProof(3, 20, leaf_hash(b"forged"), proof.path)
        verify_inclusion_bundle(bad.to_json(), cp20, op.public)
    with pytest.raises(ProofError, match="does not lead to the signed root"):
        verify_inclusion_bundle(proof.to_json(), op.checkpoint(20, root=op.log.root(19)), op.public)
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion_bundle(InclusionProof(20, 20, proof.leaf_hash, proof.path).to_json(),
                                cp20, op.public)
    other = Operator()
    with pytest.raises(ProofError, match="checkpoint rejected: .*not signed by any known key"):
        verify_inclusion_bundle(proof.to_json(), cp20, other.public)
    with pytest.raises(ProofError, match="checkpoint rejected"):
        verify_inclusion_bundle(proof.to_json(), cp20, op.public, key_id="other")
    with pytest.raises(ProofError, match="checkpoint rejected"):
        verify_inclusion_bundle(proof.to_json(), cp20, op.public, origin="exchange-ledger/prod")


def test_tampered_checkpoint_json_is_rejected(op):
    proof = make_inclusion_proof(op.log, 3, 20).to_json()
    proof21 = make_inclusion_proof(op.log, 3, 21).to_json()
    verify_inclusion_bundle(proof, op.legacy_checkpoint(20), op.public)  # old checkpoints still verify
    doc = json.loads(op.legacy_checkpoint(20))
    doc["tree_size"] = 21  # a dishonest relabel, signature unchanged
    with pytest.raises(ProofError, match="bad checkpoint signature"):
        verify_inclusion_bundle(proof21, json.dumps(doc), op.public)
    note = op.checkpoint(20).replace("\n20\n", "\n21\n", 1)
    with pytest.raises(ProofError, match="bad checkpoint signature"):
        verify_inclusion_bundle(proof21, note, op.public)
    with pytest.raises(ProofFormatError):
        verify_inclusion_bundle(proof, "{not json", op.public)


def test_consistency_failures_name_the_check(op):
    proof = make_consistency_proof(op.log, 8, 30)
    old, new = op.checkpoint(8), op.checkpoint(30)
    with pytest.raises(ProofError, match="old size mismatch"):
        verify_consistency_bundle(proof.to_json(), op.checkpoint(9), new, op.public)
    with pytest.raises(ProofError, match="new size mismatch"):
        verify_consistency_bundle(proof.to_json(), old, op.checkpoint(31), op.public)
    with pytest.raises(ProofError, match="origin mismatch"):
        verify_consistency_bundle(proof.to_json(), old,
                                  op.checkpoint(30, origin="exchange-ledger/other"), op.public)
    with pytest.raises(ProofError, match="old checkpoint rejected"):
        verify_consistency_bundle(proof.to_json(), Operator().checkpoint(8), new, op.public)
    with pytest.raises(ProofError, match="larger than new"):
        backwards = ConsistencyProof(30, 8, proof.path)
        verify_consistency_bundle(backwards.to_json(), new, old, op.public)
    path = list(proof.path)
    path[0] = bytes(32)
    with pytest.raises(ProofError, match="does not verify"):
        verify_consistency_bundle(ConsistencyProof(8, 30, tuple(path)).to_json(), old, new,
                                  op.public)


def test_rewritten_history_is_detected():
    # The operator signs size 10, then rewrites entry 4 and signs size 20 of the new history.
    honest = Operator()
    rewritten = list(ENTRIES[:20])
    rewritten[4] = b"decision-4-quietly-changed"
    forked = MerkleLog(InMemoryNodeStore())
    forked.append_many(leaf_hash(e) for e in rewritten)
    old = honest.checkpoint(10)
    new = honest.signer.sign(
        Checkpoint(ORIGIN, 20, forked.root(20), "2025-11-27T08:04:00Z")
    ).to_json()
    proof = make_consistency_proof(forked, 10, 20).to_json()
    with pytest.raises(ProofError, match="history was rewritten"):
        verify_consistency_bundle(proof, old, new, honest.public)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="exchange-ledger/inclusion-proof/v9"),
        lambda d: d.pop("path"),
        lambda d: d.update(surprise=True),
        lambda d: d.update(leaf_index=-1),
        lambda d: d.update(leaf_index="3"),
        lambda d: d.update(tree_size=None),
        lambda d: d.update(leaf_hash="zz"),
        lambda d: d.update(path="not a list"),
        lambda d: d.update(path=[123]),
        lambda d: d.update(path=[d["path"][0][:-4]]),
    ],
)
def test_malformed_inclusion_proof_json_is_a_format_error(op, mutate):
    doc = make_inclusion_proof(op.log, 3, 20).to_dict()
    mutate(doc)
    with pytest.raises(ProofFormatError):
        verify_inclusion_bundle(json.dumps(doc), op.checkpoint(20), op.public)


@pytest.mark.parametrize("text", ["", "[]", "3", "{", b"\xff"])
def test_non_object_proof_is_a_format_error(op, text):
    with pytest.raises(ProofFormatError):
        verify_consistency_bundle(text, op.checkpoint(1), op.checkpoint(2), op.public)


def test_unusable_public_key_is_a_format_error(op):
    proof = make_inclusion_proof(op.log, 0, 1).to_json()
    with pytest.raises(ProofFormatError, match="public key"):
        verify_inclusion_bundle(proof, op.checkpoint(1), "not-a-key")


# ---------------------------------------------------------------- command line


@pytest.fixture
def files(tmp_path: Path, op: Operator) -> dict[str, Path]:
    def write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return {
        "inc": write("inclusion.json", make_inclusion_proof(op.log, 5, 30).to_json()),
        "con": write("consistency.json", make_consistency_proof(op.log, 12, 30).to_json()),
        "cp12": write("cp12.json", op.checkpoint(12)),
        "cp30": write("cp30.json", op.checkpoint(30)),
        "key": write("ledger.pub", encode_public_key(op.public) + "\n"),
        "entry": write("entry.bin", ENTRIES[5]),
        "garbage": write("garbage.json", "{]"),
    }


def test_cli_exit_codes(files, op, capsys):
    f = {k: str(v) for k, v in files.items()}
    assert main(["verify-inclusion", f["inc"], f["cp30"], f["key"], "--leaf", f["entry"]]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify-inclusion", f["inc"], f["cp30"], encode_public_key(op.public)]) == 0
    assert main(["verify-consistency", f["con"], f["cp12"], f["cp30"], f["key"],
                 "--origin", ORIGIN, "--key-id", op.key_id]) == 0
    capsys.readouterr()
    assert main(["verify-inclusion", f["inc"], f["cp12"], f["key"]]) == 1
    assert "INVALID: tree size mismatch" in capsys.readouterr().err
    assert main(["verify-consistency", f["con"], f["cp30"], f["cp12"], f["key"]]) == 1
    assert main(["verify-inclusion", f["inc"], f["cp30"], encode_public_key(Operator().public)]) == 1
    assert main(["verify-inclusion", f["inc"], f["cp30"], f["key"], "--leaf", f["key"]]) == 1
    capsys.readouterr()
    assert main(["verify-inclusion", f["garbage"], f["cp30"], f["key"]]) == 2
    assert main(["verify-inclusion", f["inc"], f["cp30"] + ".missing", f["key"]]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["verify-inclusion", f["inc"], f["cp30"], f["garbage"]]) == 2
    assert main(["verify-consistency", f["inc"], f["cp12"], f["cp30"], f["key"]]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["verify-inclusion", f["inc"]])
    assert exc.value.code == 2


def test_cli_runs_as_module(files):
    result = subprocess.run(
        [sys.executable, "-m", "ledger.proofs", "verify-consistency", str(files["con"]),
         str(files["cp12"]), str(files["cp30"]), str(files["key"])],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "format": st.sampled_from([INCLUSION_FORMAT, CONSISTENCY_FORMAT]) | _json,
            "leaf_index": _json, "tree_size": _json, "leaf_hash": _json, "path": _json,
            "old_size": _json, "new_size": _json,
            "origin": _json, "root_hash": _json, "timestamp": _json, "key_id": _json,
            "signature": _json,
        },
    )
)
def test_property_hostile_json_only_raises_proof_errors(doc):
    from ledger.checkpoint import CheckpointError, SignedCheckpoint

    text = json.dumps(doc)
    for parse in (InclusionProof.from_json, ConsistencyProof.from_json):
        try:
            parse(text)
        except ProofFormatError:
            pass
    try:
        SignedCheckpoint.from_json(text)
    except CheckpointError:
        pass
    key = encode_public_key(generate_keypair()[1])
    try:
        verify_inclusion_bundle(text, text, key)
    except ProofError:
        pass
