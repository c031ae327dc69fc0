"""Cross-check with an implementation no one here wrote: Go's golang.org/x/mod/sumdb/note opens our
checkpoint notes (log signature, and witness cosignatures through a cosignature/v1 verifier
written against the C2SP spec), and sumdb/tlog checks our inclusion and consistency proofs.
Debian's golang-go and golang-golang-x-mod-dev provide both (`make go`); built offline in GOPATH
mode against /usr/share/gocode. Both ledger backends."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.checkpoint import Checkpoint, SignedCheckpoint, key_fingerprint, load_private_key
from services.cli import app
from tests.ledger.conftest import fill
from tests.witness.conftest import ORIGIN, PRIVATE_KEY, log_vkey

ROOT = Path(__file__).resolve().parents[2]
GO_SOURCE = ROOT / "tests/go/xlcheck/main.go"
GOPATH = Path("/usr/share/gocode")


@pytest.fixture(scope="module")
def xlcheck(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.skip("the Go cross-check needs Debian's golang-go and golang-golang-x-mod-dev; `make go` installs "
                    "them (as root, with apt-get)")
    work = tmp_path_factory.mktemp("go")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "GO111MODULE": "off",
           "GOPATH": str(GOPATH), "GOCACHE": str(work / "cache"), "GOFLAGS": "", "GOPROXY": "off", "CGO_ENABLED": "0"}
    binary = work / "xlcheck"
    done = subprocess.run([go, "build", "-o", str(binary), str(GO_SOURCE)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return binary


def run(binary: Path, doc: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=60)


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def test_go_verifies_our_checkpoints_cosignatures_and_proofs(xlcheck, ledger, ledger_url, witnesses):
    runner = CliRunner()
    env = {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": PRIVATE_KEY, "XLEDGER_LEDGER_ORIGIN": ORIGIN,
           "XLEDGER_CHECKPOINT_INTERVAL": "10", "XLEDGER_WITNESSES": " ".join(w.entry for w in witnesses)}
    fill(ledger, 0, 12)
    assert runner.invoke(app, ["ledger", "integrate"], env=env).exit_code == 0  # 10, 20, 26 (26 cosigned)
    fill(ledger, 12, 10)
    assert runner.invoke(app, ["ledger", "integrate"], env=env).exit_code == 0  # 30, 40, 47 (47 cosigned)
    integrity = ledger.integrity
    private = load_private_key(PRIVATE_KEY)
    cp20 = Checkpoint(ORIGIN, 20, integrity.root(20), "2025-11-26T08:04:00Z")  # a v1 checkpoint, as a note
    v1 = SignedCheckpoint(cp20, legacy_key_id=key_fingerprint(private.public_key()),
                          legacy_signature=private.sign(cp20.body()))
    notes = [integrity.checkpoint(10).to_note(), integrity.checkpoint(26).to_note(),
             integrity.checkpoint(47).to_note(), v1.to_note(private.public_key())]
    inclusion = []
    for cp_index, size, leaves in ((1, 26, (0, 13, 25)), (2, 47, (5, 26, 46)), (3, 20, (19,))):
        for leaf in leaves:
            proof = integrity.inclusion_proof(leaf, size)
            inclusion.append({"checkpoint": cp_index, "index": leaf, "leaf_hash": b64(proof.leaf_hash),
                              "proof": [b64(h) for h in proof.path]})
    consistency = [{"old": o, "new": n, "proof": [b64(h) for h in integrity.consistency_proof(so, sn).path]}
                   for o, n, so, sn in ((0, 1, 10, 26), (1, 2, 26, 47), (0, 2, 10, 47), (3, 2, 20, 47))]
    doc = {"log_vkey": log_vkey(), "witness_vkeys": [w.vkey for w in witnesses], "checkpoints": notes,
           "cosignatures": [0, 2, 2, 0], "inclusion": inclusion, "consistency": consistency}
    done = run(xlcheck, doc)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == 4 + 7 + 4
    assert "ok checkpoint 2: exchange-ledger/test size 47, 2 cosignature(s)" in done.stdout

    # And Go rejects what is wrong: a changed proof hash, a changed size, a cosignature moved elsewhere.
    bad = json.loads(json.dumps(doc))
    bad["inclusion"][1]["proof"][0] = b64(bytes(32))
    bad["consistency"][3]["proof"][-1] = b64(bytes(32))
    bad["checkpoints"][0] = notes[0].replace("\n10\n", "\n11\n", 1)
    lines26, lines47 = notes[1].split("\n"), notes[2].split("\n")
    bad["checkpoints"][1] = "\n".join(lines26[:5] + [lines47[6]] + [""])  # 47's first cosignature on 26
    done = run(xlcheck, bad)
    assert done.returncode == 1, done.stdout + done.stderr
    fails = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert any("checkpoint 0" in f for f in fails) and any("checkpoint 1" in f for f in fails)
    assert any("inclusion of leaf 13" in f for f in fails) and any("consistency 20 -> 47" in f for f in fails)
