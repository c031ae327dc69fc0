"""`xledger verify` separates verified (0), tampered (1), bad input (2) and could not check (3);
missing checkpoints fail; `proof consistency` works from any old size and says when the tree is
not the one a trusted checkpoint committed to. Both backends."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ledger.checkpoint import encode_public_key, generate_keypair
from services.cli import app
from tests.ledger.conftest import ORIGIN, PRIVATE_KEY, Raw, fill


@pytest.fixture
def cli(ledger_url):
    runner = CliRunner()
    env = {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": PRIVATE_KEY,
           "XLEDGER_LEDGER_ORIGIN": ORIGIN, "XLEDGER_CHECKPOINT_INTERVAL": "10"}
    return lambda *args: runner.invoke(app, list(args), env=env)


def test_nothing_to_verify_is_exit_3(cli, ledger, public_key):
    r = cli("verify", "--public-key", public_key)
    assert r.exit_code == 3, r.output
    assert r.stdout.startswith("NOT VERIFIED: nothing to verify: the ledger has no entries")


def test_entries_not_yet_integrated_are_exit_3_not_ok(cli, ledger, public_key):
    fill(ledger, 0, 12)
    assert cli("ledger", "integrate").exit_code == 0
    fill(ledger, 12, 2)  # 5 more entries, not in the tree
    r = cli("verify", "--public-key", public_key)
    assert r.exit_code == 3, r.output
    assert "5 entries after the last integrated one are not yet in the tree" in r.stdout
    assert cli("ledger", "integrate").exit_code == 0
    assert cli("verify", "--public-key", public_key).exit_code == 0


def test_wrong_key_or_origin_is_exit_3_not_tampered(cli, ledger, public_key):
    fill(ledger, 0, 12)
    assert cli("ledger", "integrate").exit_code == 0
    for args in (["--public-key", encode_public_key(generate_keypair()[1])],
                 ["--public-key", public_key, "--origin", "exchange-ledger/prod"]):
        r = cli("verify", *args)
        assert r.exit_code == 3, r.output
        assert "none of the 3 stored checkpoints is signed by the given key" in r.stdout
        assert "TAMPERED" not in r.stdout


def test_a_tampered_entry_wins_over_could_not_check(cli, ledger, public_key):
    fill(ledger, 0, 12)
    assert cli("ledger", "integrate").exit_code == 0
    raw = Raw(ledger)
    nid = raw.nids()[3]
    raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (bytes(raw.event(nid)[4]) + b" ", nid))
    r = cli("verify", "--public-key", encode_public_key(generate_keypair()[1]))
    assert r.exit_code == 1 and r.stdout.startswith("TAMPERED: ") and "leaf 3" in r.stdout


def test_a_deleted_checkpoint_fails_verify(cli, ledger, public_key):
    fill(ledger, 0, 22)  # 47 entries: checkpoints 10, 20, 30, 40, 47
    assert cli("ledger", "integrate").exit_code == 0
    Raw(ledger).run("DELETE FROM xl_checkpoints WHERE tree_size = 20")
    r = cli("verify", "--public-key", public_key)
    assert r.exit_code == 1, r.output
    assert "no signed checkpoint between sizes 10 and 30, although one is signed every 10 entries" in r.stdout
    Raw(ledger).run("DELETE FROM xl_checkpoints")
    r = cli("verify", "--public-key", public_key)
    assert r.exit_code == 1, r.output
    assert "entries 0..46 have no signed checkpoint" in r.stdout


def test_proof_consistency_from_any_old_size(cli, ledger, public_key, tmp_path):
    fill(ledger, 0, 12)  # checkpoints 10, 20, 26
    assert cli("ledger", "integrate").exit_code == 0
    r = cli("proof", "consistency", "13", "26", "--out", str(tmp_path / "p"))
    assert r.exit_code == 0, r.output
    bundle = json.loads(r.stdout)
    assert bundle["old_checkpoint"] is None and bundle["proof"]["old_size"] == 13
    assert "no checkpoint of size 13 is stored" in r.stderr
    from ledger.merkle import verify_consistency
    import base64

    new_root = ledger.integrity.root(26)
    path = [base64.b64decode(h) for h in bundle["proof"]["path"]]
    assert verify_consistency(13, 26, base64.b64decode(bundle["old_root"]), new_root, path)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["new.note", "proof.json"]


def test_proof_consistency_says_when_the_tree_is_not_the_trusted_one(cli, ledger, public_key, tmp_path):
    fill(ledger, 0, 12)
    assert cli("ledger", "integrate").exit_code == 0
    trusted = tmp_path / "trusted.note"
    trusted.write_text(ledger.integrity.checkpoint(20).stored())
    r = cli("proof", "consistency", "--trusted", str(trusted))
    assert r.exit_code == 0, r.output
    assert "the tree at size 20 is the one your trusted checkpoint committed to" in r.stderr
    raw = Raw(ledger)  # an insider rewrites entry 5 and rebuilds the tree and checkpoints
    nid = raw.nids()[5]
    raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?", (bytes(raw.event(nid)[4]) + b" ", nid))
    for table in ("xl_merkle_nodes", "xl_merkle_leaves", "xl_checkpoints"):
        raw.run(f"DELETE FROM {table}")
    assert cli("ledger", "integrate").exit_code == 0
    assert cli("verify", "--public-key", public_key).exit_code == 0  # without the trusted checkpoint, fooled
    r = cli("proof", "consistency", "--trusted", str(trusted))
    assert r.exit_code == 1
    assert "NOT CONSISTENT: the tree this proof starts from is NOT the tree your trusted checkpoint committed to" \
        in r.stderr
    r = cli("verify", "--public-key", public_key, "--trusted", str(trusted))
    assert r.exit_code == 1 and "trusted checkpoint of size 20" in r.stdout
