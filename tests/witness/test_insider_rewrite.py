"""An insider with database write access and the operator's checkpoint key rewrites history
(issue #15). Every variant is refused by both witnesses, caught by `verify --trusted` and by
`verify --witness … --quorum 2`, and by a running `xledger monitor`, on SQLite and PostgreSQL.
Honest growth is cosigned by both witnesses over real HTTP sockets."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
from typer.testing import CliRunner

from ledger.checkpoint import encode_public_key, load_private_key
from ledger.note import verifier_from_vkey
from services.cli import app
from services.monitor import read_trusted
from tests.harness import wait_for
from tests.ledger.conftest import Raw, fill
from tests.witness.conftest import ORIGIN, PRIVATE_KEY, stop, xledger_process

PUBLIC_KEY = encode_public_key(load_private_key(PRIVATE_KEY).public_key())


@pytest.fixture
def env(ledger_url, witnesses) -> dict[str, str]:
    return {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": PRIVATE_KEY, "XLEDGER_LEDGER_ORIGIN": ORIGIN,
            "XLEDGER_CHECKPOINT_INTERVAL": "10", "XLEDGER_WITNESSES": " ".join(w.entry for w in witnesses),
            "XLEDGER_WITNESS_TIMEOUT_MS": "5000"}


@pytest.fixture
def cli(env):
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), env=env)


def witness_args(witnesses) -> list[str]:
    return [arg for w in witnesses for arg in ("--witness", w.vkey)]


def grow_honestly(ledger, cli, witnesses) -> None:
    fill(ledger, 0, 12)   # 26 entries
    r = cli("ledger", "integrate")
    assert r.exit_code == 0, r.output
    fill(ledger, 12, 10)  # 47 entries
    r = cli("ledger", "integrate")
    assert r.exit_code == 0, r.output
    assert ledger.integrity.checkpoint_sizes() == [10, 20, 26, 30, 40, 47]


def test_honest_growth_is_cosigned_by_two_witnesses_over_http(ledger, cli, witnesses, tmp_path):
    fill(ledger, 0, 12)
    r = cli("ledger", "integrate")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("cosigned checkpoint 26") == 0  # cosigned is good news: stdout
    assert r.stdout.count("cosigned checkpoint 26") == 2
    fill(ledger, 12, 10)
    r = cli("ledger", "integrate")
    assert r.stdout.count("cosigned checkpoint 47") == 2, r.output  # with a consistency proof 26 → 47
    for w in witnesses:
        assert w.store.latest(ORIGIN).tree_size == 47
        assert w.store.refusals() == []
    cosigned = ledger.integrity.checkpoint(47)
    assert {s.name for s in cosigned.signatures} == {ORIGIN, "witness.test/tilsyn", "witness.test/revision"}
    r = cli("verify", "--public-key", PUBLIC_KEY, "--origin", ORIGIN, *witness_args(witnesses), "--quorum", "2")
    assert r.exit_code == 0, r.output
    assert "latest checkpoint cosigned by 2 witness(es)" in r.stdout
    # Asking again changes nothing: both already cosigned the newest checkpoint.
    r = cli("ledger", "cosign")
    assert r.exit_code == 0 and r.stdout.count("already checkpoint 47") == 2


def test_a_quorum_needs_the_cosignatures(ledger, cli, witnesses, env):
    fill(ledger, 0, 12)
    env["XLEDGER_WITNESSES"] = witnesses[0].entry  # only one witness asked
    assert cli("ledger", "integrate").exit_code == 0
    r = cli("verify", "--public-key", PUBLIC_KEY, *witness_args(witnesses), "--quorum", "2")
    assert r.exit_code == 1
    assert "carries 1 of the 2 witness cosignatures required (valid: witness.test/tilsyn)" in r.stdout
    r = cli("verify", "--public-key", PUBLIC_KEY, *witness_args(witnesses), "--quorum", "1")
    assert r.exit_code == 0, r.output


def flip_a_deny(raw: Raw) -> int:
    """Turn one recorded DENY into an ALLOW in the stored event; returns its notification id."""
    for nid in raw.nids():
        state = bytes(raw.event(nid)[4])
        if b'"outcome":"DENY"' in state:
            raw.run("UPDATE {events} SET state = ? WHERE {nid} = ?",
                    (state.replace(b'"outcome":"DENY"', b'"outcome":"ALLOW"', 1), nid))
            return nid
    raise AssertionError("no DENY recorded")


def rewrite(variant: str, ledger, raw: Raw, cli) -> None:
    flip_a_deny(raw)
    raw.run("DELETE FROM xl_merkle_nodes")
    raw.run("DELETE FROM xl_merkle_leaves")
    if variant == "flip+rebuild":
        r = cli("ledger", "integrate")  # the old checkpoints stay; the rebuilt tree no longer fits them
    elif variant == "flip+rebuild+delete-checkpoints":
        raw.run("DELETE FROM xl_checkpoints")
        raw.run("DELETE FROM xl_cosignatures")
        ledger.integrate()  # the tree only, nothing signed
        return
    else:  # + re-signing every checkpoint with the operator's own key
        raw.run("DELETE FROM xl_checkpoints")
        raw.run("DELETE FROM xl_cosignatures")
        r = cli("ledger", "integrate")
        assert r.stderr.count("refused checkpoint 47") == 2, r.output  # the witnesses refuse it at once
        assert cli("verify", "--public-key", PUBLIC_KEY, "--origin", ORIGIN).exit_code == 0  # a naive verify is fooled
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("variant", ["flip+rebuild", "flip+rebuild+delete-checkpoints", "flip+rebuild+re-sign"])
def test_every_insider_rewrite_is_caught(variant, ledger, cli, witnesses, log_endpoint, tmp_path):
    grow_honestly(ledger, cli, witnesses)
    state = tmp_path / "monitor.json"
    monitor = xledger_process(
        "monitor", "--log-url", log_endpoint.url, "--log-key", PUBLIC_KEY, "--origin", ORIGIN, "--state", str(state),
        *witness_args(witnesses), "--quorum", "2", "--interval", "0.2")
    try:
        assert wait_for(lambda: state.exists() and json.loads(state.read_text())["tree_size"] == 47, 30), \
            stop(monitor)
        trusted = tmp_path / "trusted.json"  # what an auditor kept
        shutil.copy(state, trusted)

        rewrite(variant, ledger, Raw(ledger), cli)
        fill(ledger, 22, 5)  # the log goes on: 58 entries
        r = cli("ledger", "integrate")
        assert r.exit_code == 0, r.output

        # 1. Both witnesses refuse to cosign the rewritten log, and keep the evidence.
        r = cli("ledger", "cosign")
        assert r.exit_code == 1, r.output
        assert r.stderr.count("refused checkpoint 58") == 2, r.output
        for w in witnesses:
            assert w.store.latest(ORIGIN).tree_size == 47
            assert "bad-proof" in [reason for _, _, reason, _ in w.store.refusals(ORIGIN)]

        # 2. verify --trusted: the tree is not the one the saved checkpoint committed to.
        r = cli("verify", "--public-key", PUBLIC_KEY, "--origin", ORIGIN, "--trusted", str(trusted))
        assert r.exit_code == 1, r.output
        assert r.stdout.startswith("TAMPERED: ")
        report = ledger.verify(PUBLIC_KEY, origin=ORIGIN, trusted=[read_trusted(trusted.read_text())])
        [finding] = [f for f in report.findings if f.kind == "trusted"]
        assert "do not hash to the root" in finding.message and "trusted checkpoint of size 47" in finding.message

        # 3. verify --witness … --quorum 2: the newest checkpoint is not witnessed.
        r = cli("verify", "--public-key", PUBLIC_KEY, "--origin", ORIGIN, *witness_args(witnesses), "--quorum", "2")
        assert r.exit_code == 1, r.output
        report = ledger.verify(PUBLIC_KEY, origin=ORIGIN, witnesses=[verifier_from_vkey(w.vkey) for w in witnesses],
                               quorum=2)
        [finding] = [f for f in report.findings if f.kind == "witness-quorum"]
        assert "the latest checkpoint (size 58) carries 0 of the 2 witness cosignatures required" in finding.message

        # 4. The running monitor stops with exit 1 and says what happened.
        assert wait_for(lambda: monitor.poll() is not None, 30), "the monitor did not notice"
        out, err = stop(monitor)
        assert monitor.returncode == 1, err
        assert "FORK:" in err or "ROLLBACK:" in err, err
        assert json.loads(state.read_text())["tree_size"] == 47  # it never adopted the rewritten tree
    finally:
        if monitor.poll() is None:
            stop(monitor, signal.SIGTERM)
