"""Checkpoint-key rotation (issue #19, item 4): a new key has a new note key id, and checkpoints
signed with earlier keys still verify given the published key history; ledgers holding v1 JSON
checkpoints keep verifying beside new C2SP notes. Both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ledger.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    SignedCheckpoint,
    encode_public_key,
    key_fingerprint,
    load_private_key,
)
from services.cli import app
from tests.ledger.conftest import ORIGIN, PRIVATE_KEY, Raw, fill

ROOT = Path(__file__).resolve().parents[2]


def test_rotated_key_keeps_old_checkpoints_verifiable(ledger, ledger_url, tmp_path):
    runner = CliRunner()
    old_key = PRIVATE_KEY
    new_key = runner.invoke(app, ["ledger", "checkpoint-keygen"], env={"XLEDGER_LEDGER_ORIGIN": ORIGIN}).stdout.strip()
    base = {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_LEDGER_ORIGIN": ORIGIN, "XLEDGER_CHECKPOINT_INTERVAL": "10"}
    old_env, new_env = {**base, "XLEDGER_CHECKPOINT_KEY": old_key}, {**base, "XLEDGER_CHECKPOINT_KEY": new_key}
    history = tmp_path / "checkpoint-keys.txt"

    fill(ledger, 0, 12)
    assert runner.invoke(app, ["ledger", "integrate"], env=old_env).exit_code == 0      # 10, 20, 26 with the old key
    r = runner.invoke(app, ["ledger", "retire-checkpoint-key", "--history", str(history)], env=old_env)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith(" 0 26") and history.read_text().count("\n") == 2
    fill(ledger, 12, 10)
    assert runner.invoke(app, ["ledger", "integrate"], env=new_env).exit_code == 0      # 30, 40, 47 with the new key

    old_pub = encode_public_key(load_private_key(old_key).public_key())
    new_pub = encode_public_key(load_private_key(new_key).public_key())
    ids = {cp.checkpoint.tree_size: cp.signatures[0].key_id for cp in ledger.integrity.checkpoints()}
    assert ids[10] == ids[26] != ids[30] == ids[47]  # a new key, a new key id

    verify = ["verify", "--public-key", new_pub, "--origin", ORIGIN]
    r = runner.invoke(app, [*verify, "--key-history", str(history)], env=base)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("OK: 47 entries, 6 signed checkpoints verified")
    r = runner.invoke(app, verify, env={**base, "XLEDGER_CHECKPOINT_KEY_HISTORY": str(history)})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, verify, env=base)  # without the history the old checkpoints are unexplained
    assert r.exit_code == 1 and "not signed by any known key" in r.stdout

    # Offline proofs across the rotation, with nothing but files and public keys.
    out = tmp_path / "con"
    assert runner.invoke(app, ["proof", "consistency", "20", "47", "--out", str(out)], env=new_env).exit_code == 0
    done = subprocess.run([sys.executable, "-m", "ledger.proofs", "verify-consistency", str(out / "proof.json"),
                           str(out / "old.note"), str(out / "new.note"), new_pub, "--key-history", str(history)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    # The retired key cannot sign anything new: a checkpoint of size 47 by it is rejected.
    Raw(ledger).run("DELETE FROM xl_checkpoints WHERE tree_size = 47")
    forged = CheckpointSigner(load_private_key(old_key)).sign(Checkpoint(ORIGIN, 47, ledger.integrity.root(47)))
    Raw(ledger).run("INSERT INTO xl_checkpoints (tree_size, signed_json) VALUES (?, ?)", (47, forged.stored()))
    r = runner.invoke(app, [*verify, "--key-history", str(history)], env=base)
    assert r.exit_code == 1 and "may sign only sizes 0..26" in r.stdout
    assert old_pub != new_pub


def test_v1_json_checkpoints_of_an_old_ledger_still_verify(ledger, ledger_url, signer, public_key):
    """A ledger written before v2 holds checkpoints as JSON; new ones are notes; both verify."""
    fill(ledger, 0, 12)
    ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10)  # 10, 20 (26 leaves)
    raw = Raw(ledger)
    private = load_private_key(PRIVATE_KEY)
    for size in (10, 20):  # rewrite them exactly as v1 stored them
        cp = Checkpoint(ORIGIN, size, ledger.integrity.root(size), "2025-11-26T08:04:00Z")
        v1 = SignedCheckpoint(cp, legacy_key_id=key_fingerprint(private.public_key()),
                              legacy_signature=private.sign(cp.body()))
        raw.run("UPDATE xl_checkpoints SET signed_json = ? WHERE tree_size = ?", (v1.to_json(), size))
    ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10, checkpoint=True)  # 26 as a note
    stored = [r[0] for r in raw.rows("SELECT signed_json FROM xl_checkpoints ORDER BY tree_size")]
    assert stored[0].lstrip().startswith("{") and stored[2].startswith(ORIGIN + "\n26\n")
    report = ledger.verify(public_key, origin=ORIGIN, checkpoint_interval=10)
    assert report.verified, (report.findings, report.unchecked)
    # And a tampered v1 checkpoint is still caught.
    raw.run("UPDATE xl_checkpoints SET signed_json = replace(signed_json, '\"tree_size\": 10', '\"tree_size\": 11') "
            "WHERE tree_size = 10")
    assert [f.kind for f in ledger.verify(public_key, origin=ORIGIN).findings] == ["checkpoint-signature"]
