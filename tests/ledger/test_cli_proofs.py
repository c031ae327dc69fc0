"""The xledger commands, and proofs an outsider checks from the JSON files alone."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.proofs import verify_consistency_bundle, verify_inclusion_bundle
from services.cli import app
from tests.ledger.conftest import ORIGIN, PRIVATE_KEY, fill

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(ledger_url):
    runner = CliRunner()
    env = {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": PRIVATE_KEY,
           "XLEDGER_LEDGER_ORIGIN": ORIGIN, "XLEDGER_CHECKPOINT_INTERVAL": "10"}

    def invoke(*args: str):
        return runner.invoke(app, list(args), env=env)

    return invoke


def _offline(*args: str) -> subprocess.CompletedProcess:
    # No database, no environment: the files and the public key only.
    return subprocess.run([sys.executable, "-m", "ledger.proofs", *args], cwd=ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)


def test_integrate_verify_and_key_commands(cli, ledger, public_key):
    fill(ledger, 0, 12)  # 26 entries
    r = cli("ledger", "integrate")
    assert r.exit_code == 0, r.output
    assert "tree size 26" in r.stdout and f"root {ledger.integrity.root().hex()}" not in r.stdout
    assert ledger.integrity.checkpoint_sizes() == [10, 20, 26]
    r = cli("ledger", "checkpoint-key")
    assert r.exit_code == 0 and r.stdout.strip() == public_key
    r = cli("verify", "--public-key", public_key, "--origin", ORIGIN)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("OK: 26 entries, 3 signed checkpoints verified")


def test_verify_names_the_bad_entry_and_exits_1(cli, ledger, public_key, raw):
    fill(ledger, 0, 5)
    assert cli("ledger", "integrate").exit_code == 0
    nid = raw.nids()[4]
    raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (raw.event(nid)[4] + b" ", nid))
    r = cli("verify", "--public-key", public_key)
    assert r.exit_code == 1
    line = r.stdout.splitlines()[0]
    assert line.startswith("TAMPERED:") and "leaf 4" in line and f"notification {nid}" in line
    assert "aggregate " in line and "topic ledger.domain:" in line


@pytest.mark.parametrize("args", [
    ["verify", "--public-key", "not-a-key"],
    ["verify", "--ledger-url", "mysql://x/y"],
    ["verify", "--ledger-url", "sqlite:////nonexistent/dir/ledger.sqlite"],
    ["proof", "inclusion", "999"],
    ["proof", "inclusion", "0", "--size", "3"],
    ["proof", "consistency", "20", "10"],
    ["proof", "consistency", "27"],
    ["proof", "consistency"],
    ["verify", "--trusted", "/nonexistent/checkpoint.note"],
    ["verify", "--witness", "not-a-vkey"],
    ["subject", "erase", "0101901234", "--reason", "x"],
    ["subject", "erase", "a" * 64, "--reason", " "],
])
def test_bad_input_exits_2_with_one_line(cli, ledger, args):
    fill(ledger, 0, 12)
    cli("ledger", "integrate")
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "0101901234" not in r.stderr


def test_every_command_has_help(cli):
    for args in (["verify"], ["ledger", "integrate"], ["ledger", "checkpoint-key"], ["proof", "inclusion"],
                 ["proof", "consistency"], ["subject", "erase"]):
        r = cli(*args, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout


def test_cli_proofs_verify_offline_from_their_files(cli, ledger, public_key, tmp_path):
    fill(ledger, 0, 12)
    assert cli("ledger", "integrate").exit_code == 0  # checkpoints 10, 20, 26
    key = tmp_path / "key.pub"
    key.write_text(public_key)

    r = cli("proof", "inclusion", "13", "--out", str(tmp_path / "inc"))
    assert r.exit_code == 0, r.output
    bundle = json.loads(r.stdout)
    assert bundle["tree_size"] == 26
    verify_inclusion_bundle(bundle["proof"], bundle["checkpoint"], public_key, origin=ORIGIN)
    done = _offline("verify-inclusion", str(tmp_path / "inc/proof.json"), str(tmp_path / "inc/checkpoint.note"),
                    str(key), "--leaf", str(tmp_path / "inc/entry.bin"), "--origin", ORIGIN)
    assert done.returncode == 0, done.stderr
    assert "leaf 13 is included" in done.stdout

    r = cli("proof", "inclusion", "3", "--size", "10", "--out", str(tmp_path / "inc10"))
    assert r.exit_code == 0 and json.loads(r.stdout)["proof"]["tree_size"] == 10
    assert _offline("verify-inclusion", str(tmp_path / "inc10/proof.json"), str(tmp_path / "inc10/checkpoint.note"),
                    public_key).returncode == 0

    r = cli("proof", "consistency", "10", "26", "--out", str(tmp_path / "con"))
    assert r.exit_code == 0, r.output
    bundle = json.loads(r.stdout)
    verify_consistency_bundle(bundle["proof"], bundle["old_checkpoint"], bundle["new_checkpoint"], public_key)
    assert bundle["old_root"] == base64.b64encode(ledger.integrity.root(10)).decode()
    done = _offline("verify-consistency", str(tmp_path / "con/proof.json"), str(tmp_path / "con/old.note"),
                    str(tmp_path / "con/new.note"), str(key))
    assert done.returncode == 0, done.stderr

    # A doctored proof or entry fails offline.
    proof = json.loads((tmp_path / "inc/proof.json").read_text())
    proof["leaf_index"] = 12
    (tmp_path / "inc/proof.json").write_text(json.dumps(proof))
    assert _offline("verify-inclusion", str(tmp_path / "inc/proof.json"), str(tmp_path / "inc/checkpoint.note"),
                    str(key)).returncode == 1
    (tmp_path / "inc10/entry.bin").write_bytes((tmp_path / "inc10/entry.bin").read_bytes() + b" ")
    assert _offline("verify-inclusion", str(tmp_path / "inc10/proof.json"), str(tmp_path / "inc10/checkpoint.note"),
                    str(key), "--leaf", str(tmp_path / "inc10/entry.bin")).returncode == 1


def test_proof_for_an_entry_after_the_last_checkpoint_signs_one_now(cli, ledger, signer, public_key):
    fill(ledger, 0, 12)
    ledger.integrate(signer=signer, origin=ORIGIN, sign_every=10)  # 10, 20; 26 leaves
    r = cli("proof", "inclusion", "24")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tree_size"] == 26
    assert ledger.integrity.checkpoint_sizes() == [10, 20, 26]
    r = cli("proof", "consistency", "20", "26")
    assert r.exit_code == 0
    assert ledger.verify(public_key).ok


def test_forged_checkpoint_fails_offline(cli, ledger, public_key, tmp_path):
    fill(ledger, 0, 12)
    cli("ledger", "integrate")
    assert cli("proof", "inclusion", "2", "--out", str(tmp_path)).exit_code == 0
    note = (tmp_path / "checkpoint.note").read_text()
    forged = note.replace("\n26\n", "\n27\n", 1)  # the signature no longer covers the body
    assert forged != note
    (tmp_path / "checkpoint.note").write_text(forged)
    done = _offline("verify-inclusion", str(tmp_path / "proof.json"), str(tmp_path / "checkpoint.note"), public_key)
    assert done.returncode == 1 and "rejected" in done.stderr
