"""Attacks on production trust, as an attacker and as a careless operator would try them.

Each test is one way the promise broke ("only an authority itself can speak in its name; nothing
public is accepted outside development; a revocation takes effect"), and shows it holds now:
one public key listed twice, YAML that silently drops an entry, a key-set file that is not
UTF-8, another authority's development key, a revocation time without an offset, an empty key
set, a secret that reads differently from the environment than from a file, the development
checkpoint key given to `verify`, and a compose file that hands every secret to every service.
"""

from __future__ import annotations

import base64
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from schemas.cpr import pseudonym
from services.cli import app
from services.config import DEV_CHECKPOINT_KEY, ConfigError, Settings
from services.keyring import DEV_KEY_ID, dev_private_key
from services.keyset import KeySet, KeySetError, KeySetFile, LiveKeySet, Status, keyset_problems
from services.signing import public_bytes_b64

runner = CliRunner()
ORG, OTHER = "kommune:326", "kommune:101"
AT = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)


def production(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A complete production environment with the deployment's own secrets."""
    return {
        "XLEDGER_ENV": "production",
        "XLEDGER_PSEUDONYM_SECRET": secrets.token_hex(32),
        "XLEDGER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_CHECKPOINT_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_SESSION_SECRET": secrets.token_hex(32),
        "XLEDGER_LEDGER_URL": f"sqlite:///{tmp_path}/absent/ledger.sqlite",
        **extra,
    }


def new_key() -> str:
    return public_bytes_b64(Ed25519PrivateKey.generate())


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# -- one public key, one authority, one id ------------------------------------------------------


def test_one_public_key_listed_for_two_authorities_is_refused(tmp_path):
    # Whoever holds that private key would speak for both authorities.
    shared = new_key()
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({ORG: [{"key_id": "a", "public_key": shared}],
                                    OTHER: [{"key_id": "b", "public_key": shared}]}))
    with pytest.raises(KeySetError) as info:
        KeySet.load(path)
    assert f"{OTHER} b" in str(info.value) and f"{ORG} a" in str(info.value) and "same public key" in str(info.value)
    # Across the files of a directory key set too.
    folder = tmp_path / "keyset"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump({ORG: [{"key_id": "a", "public_key": shared}]}))
    (folder / "b.yaml").write_text(yaml.safe_dump({OTHER: [{"key_id": "b", "public_key": shared}]}))
    with pytest.raises(KeySetError, match="same public key"):
        KeySet.load(folder)


def test_a_revoked_key_listed_again_under_a_new_id_is_refused(tmp_path):
    # The key id is not signed: a thief replaying a message of the revoked key under the other id
    # would get it verified, so the revocation would protect nobody.
    stolen = new_key()
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({ORG: [
        {"key_id": "laptop", "public_key": stolen, "revoked_at": "2026-06-01T00:00:00+00:00"},
        {"key_id": "laptop-again", "public_key": stolen}]}))
    with pytest.raises(KeySetError, match=f"{ORG} laptop-again and {ORG} laptop have the same public key"):
        KeySet.load(path)


def test_the_running_gate_keeps_its_key_set_over_a_reload_that_lists_a_key_twice(tmp_path):
    path = tmp_path / "keys.yaml"
    stolen = new_key()
    path.write_text(yaml.safe_dump({ORG: [{"key_id": "laptop", "public_key": stolen,
                                           "revoked_at": "2026-06-01T00:00:00+00:00"}]}))
    live = LiveKeySet(path, every=0)
    path.write_text(yaml.safe_dump({ORG: [{"key_id": "laptop", "public_key": stolen,
                                           "revoked_at": "2026-06-01T00:00:00+00:00"},
                                          {"key_id": "laptop-again", "public_key": stolen}]}))
    os.utime(path, ns=(5, 5))
    assert [(s.key.key_id, s.status) for s in live.keys_for(ORG, AT)] == [("laptop", Status.REVOKED)]


def test_keys_add_and_rotate_refuse_a_public_key_the_key_set_already_holds(tmp_path):
    keyset = tmp_path / "keyset"
    keyset.mkdir()
    env = production(tmp_path, XLEDGER_KEYSET=str(keyset))
    key = new_key()
    assert runner.invoke(app, ["keys", "add", ORG, "k1", "--public-key", key], env=env).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", ORG, "k1"], env=env).exit_code == 0
    before = {p.name: p.read_text() for p in keyset.iterdir()}
    for args in (["keys", "add", ORG, "k2", "--public-key", key],
                 ["keys", "rotate", ORG, "k2", "--public-key", key],
                 ["keys", "add", OTHER, "x1", "--public-key", key]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert errors(result) == [f"error: {args[2]} {args[3]}: {ORG} k1 has the same public key already; "
                                  "a key signs for one authority under one id (revoked keys stay listed)"]
    assert {p.name: p.read_text() for p in keyset.iterdir()} == before


# -- what YAML would drop silently, and what is not text ----------------------------------------


def test_an_authority_or_a_field_written_twice_in_one_file_is_refused(tmp_path):
    # PyYAML keeps the last of two equal keys: the first block, with its keys, would vanish unsaid.
    path = tmp_path / "keys.yaml"
    path.write_text(f"{ORG}:\n- key_id: a\n  public_key: {new_key()}\n"
                    f"{OTHER}:\n- key_id: b\n  public_key: {new_key()}\n"
                    f"{ORG}:\n- key_id: c\n  public_key: {new_key()}\n")
    with pytest.raises(KeySetError, match=f"{path}: line 7: {ORG} appears twice"):
        KeySet.load(path)
    # A revocation written twice: which one counts would be a guess.
    path.write_text(f"{ORG}:\n- key_id: a\n  public_key: {new_key()}\n  revoked_at: 2026-06-01\n"
                    f"  revoked_at: 2027-06-01\n")
    with pytest.raises(KeySetError, match=f"{path}: line 5: revoked_at appears twice"):
        KeySet.load(path)


def test_a_key_set_file_that_is_not_utf8_is_refused_and_the_running_gate_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "keys.yaml"
    KeySetFile(path).add(ORG, "k1", new_key())
    live = LiveKeySet(path, every=0)
    path.write_bytes(b"\xff\xfe" + path.read_bytes())
    os.utime(path, ns=(7, 7))
    with pytest.raises(KeySetError, match=f"{path}: not UTF-8 text"):
        KeySet.load(path)
    assert [s.key.key_id for s in live.keys_for(ORG, AT)] == ["k1"]


# -- development keys, revocation times, an empty key set -----------------------------------------


def test_keys_add_refuses_any_authoritys_development_key_outside_development(tmp_path):
    # The documented example key is a development key of another authority (cde:national).
    path = tmp_path / "keyset.yaml"
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["keys", "add", ORG, "kalundborg-2026-1", "--public-key",
                                 public_bytes_b64(dev_private_key("cde:national"))], env=env)
    assert result.exit_code == 2 and "public development key" in result.stderr, result.output
    assert not path.exists()


def test_an_edit_that_a_gate_would_refuse_is_reported_not_passed_off_as_done(tmp_path):
    # A development key written into the file by hand: every later revocation is written to the
    # file, but the running gate refuses the file and keeps trusting the revoked key.
    path = tmp_path / "keyset.yaml"
    KeySetFile(path).add(ORG, "k1", new_key())
    KeySetFile(path).add(OTHER, DEV_KEY_ID, public_bytes_b64(dev_private_key(OTHER)))
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["keys", "revoke", ORG, "k1"], env=env)
    assert result.exit_code == 1, result.output
    assert errors(result) == [
        f"error: {path} is written, but a gate refuses it and keeps its last good key set (this change does not "
        f"take effect): XLEDGER_KEYSET holds 1 public development key(s) ({OTHER} {DEV_KEY_ID}); a production "
        "key set holds the authorities' own keys"]


@pytest.mark.parametrize("at, stored", [
    ("2026-11-30T10:00:00+01:00", "2026-11-30T09:00:00+00:00"),
    ("2026-11-30T10:00:00Z", "2026-11-30T10:00:00+00:00"),
    ("2026-11-30", "2026-11-30T00:00:00+00:00"),  # a date is its start, UTC, as in the file
])
def test_a_revocation_time_is_stored_in_utc(tmp_path, at, stored):
    path = tmp_path / "keyset.yaml"
    KeySetFile(path).add(ORG, "k1", new_key())
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["keys", "revoke", ORG, "k1", "--at", at], env=env)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(path.read_text())["keys"][ORG][0]["revoked_at"] == stored


def test_a_revocation_time_without_an_offset_is_refused(tmp_path):
    # An operator in Copenhagen typing local time would otherwise revoke an hour or two too late.
    path = tmp_path / "keyset.yaml"
    KeySetFile(path).add(ORG, "k1", new_key())
    before = path.read_text()
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["keys", "revoke", ORG, "k1", "--at", "2026-11-30T10:00:00"], env=env)
    assert result.exit_code == 2
    assert errors(result) == ["error: --at must carry a UTC offset, e.g. 2026-11-30T10:00:00+01:00 or "
                              "2026-11-30T09:00:00Z (got '2026-11-30T10:00:00')"]
    assert path.read_text() == before


@pytest.mark.parametrize("content", ["", "keys:\n", "format: xledger-keyset/v1\nkeys: {}\n", f"{ORG}:\n"],
                         ids=["empty", "no-keys", "empty-mapping", "authority-without-keys"])
def test_a_key_set_without_any_key_is_refused_in_production(tmp_path, content):
    # Every request would be rejected as UNKNOWN_SIGNER: an outage nobody is told about.
    path = tmp_path / "keyset.yaml"
    path.write_text(content)
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["gate", "run", "--bootstrap-servers", "127.0.0.1:9"], env=env)
    assert result.exit_code == 2
    assert errors(result) == [f"error: XLEDGER_KEYSET: {path} holds no keys; production needs the "
                              "authorities' public keys (docs/keyset.md)"]
    _, lines = keyset_problems(Settings.from_env(env={"XLEDGER_ENV": "development", "XLEDGER_KEYSET": str(path)}))
    assert lines == []  # development may start empty


# -- secrets from the environment and from files ------------------------------------------------


@pytest.mark.parametrize("variable", ["XLEDGER_PSEUDONYM_SECRET", "XLEDGER_MASTER_KEY", "XLEDGER_CHECKPOINT_KEY",
                                      "XLEDGER_SESSION_SECRET", "XLEDGER_SASL_PASSWORD"])
def test_a_secret_reads_the_same_from_the_environment_and_from_a_mounted_file(tmp_path, variable):
    # `kubectl create secret --from-file` keeps the file's newline; a gate given it in the
    # environment and a review app given it as a file must still make the same pseudonyms.
    value = base64.b64encode(os.urandom(32)).decode() + "\n"
    secret = tmp_path / "secret"
    secret.write_text(value)
    from_env = Settings.from_env(env={variable: value})
    from_file = Settings.from_env(env={f"{variable}_FILE": str(secret)})
    field = variable[len("XLEDGER_"):].lower()
    assert getattr(from_env, field) == getattr(from_file, field) == value.strip()
    if field == "pseudonym_secret":
        assert pseudonym("0101901234", from_env.pseudonym_secret.encode()) == pseudonym(
            "0101901234", from_file.pseudonym_secret.encode())


def test_an_empty_secret_file_is_named_not_reported_as_unset(tmp_path):
    empty = tmp_path / "pseudonym-secret"
    empty.write_text("\n")
    for mode in ("production", "development"):  # development must not fall back to the public value
        with pytest.raises(ConfigError, match=f"XLEDGER_PSEUDONYM_SECRET_FILE: {empty} is empty"):
            Settings.from_env(env={"XLEDGER_ENV": mode, "XLEDGER_PSEUDONYM_SECRET_FILE": str(empty)})


# -- the public checkpoint key as an auditor's anchor ---------------------------------------------


def test_verify_refuses_the_public_development_checkpoint_key_outside_development(tmp_path):
    # Anyone can sign checkpoints with it, so "OK" against it would prove nothing.
    from ledger.checkpoint import encode_public_key, load_private_key

    dev_public = encode_public_key(load_private_key(DEV_CHECKPOINT_KEY).public_key())
    result = runner.invoke(app, ["verify", "--public-key", dev_public], env=production(tmp_path))
    assert result.exit_code == 2
    assert errors(result) == ["error: --public-key is the public development checkpoint key; anyone can sign "
                              "with it, so outside development it proves nothing"]
    result = runner.invoke(app, ["verify", "--public-key", dev_public],
                           env={**production(tmp_path), "XLEDGER_ENV": "development"})
    assert "development checkpoint key" not in result.stderr


# -- the compose file: each service holds only the secrets it uses --------------------------------


def test_compose_gives_each_service_only_the_secrets_it_uses():
    # The review app listens on the network and never opens a sealed payload: it must not hold the
    # master key. The relay never makes a pseudonym; the gate never signs a checkpoint.
    from services.config import variable
    from services.trust import NEEDS

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    secret_variables = {variable(name) for name in ("pseudonym_secret", "master_key", "checkpoint_key",
                                                    "session_secret")}
    for name, svc in doc["services"].items():
        if not svc.get("build"):
            continue
        command = " ".join(svc["command"][:2])
        held = secret_variables & set(svc.get("environment") or {})
        needed = {variable(n) for n in NEEDS.get(command, ())} & secret_variables
        assert held == needed, f"{name} ({command}) holds {sorted(held - needed)} that it does not use"


# -- the documented commands, run as written ------------------------------------------------------


def _documented_block(doc: str, heading: str) -> str:
    """The first ```sh block after ``heading`` in docs/<doc>."""
    text = (Path(__file__).resolve().parents[2] / "docs" / doc).read_text()
    after = text[text.index(heading):]
    start = after.index("```sh\n") + len("```sh\n")
    return after[start:after.index("```", start)]


def test_rotating_away_from_the_development_master_key_as_documented_keeps_the_data_readable(ledger_url, tmp_path):
    # As first written, the command made the new key inline ($(openssl rand ...)) and stored it
    # nowhere: every subject key ended up wrapped under a key nobody had, and all data was lost.
    import subprocess
    import sys

    from ledger.application import Ledger
    from ledger.privacy import LedgerSealer
    from ledger.rotation import census
    from ledger.subject_crypto import load_master_keys
    from services.config import DEV_MASTER_KEY

    ledger = Ledger(ledger_url)
    try:
        subjects = [f"{i:064x}" for i in range(5)]
        with LedgerSealer.for_ledger(ledger, DEV_MASTER_KEY).batch(subjects) as sealer:
            sealed = {s: sealer.seal(s, f"payload {s[-1]}".encode()) for s in subjects}
    finally:
        ledger.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env.update(XLEDGER_LEDGER_URL=ledger_url, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    workdir = tmp_path / "operator"
    workdir.mkdir()
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", _documented_block(
        "production.md", "### A ledger that ran on the public development master key")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    stored = [p for p in workdir.iterdir() if p.is_file()]
    assert len(stored) == 1, "the new master key must be kept somewhere before the rotation uses it"
    new = stored[0].read_text().strip()
    ledger = Ledger(ledger_url)
    try:
        assert set(census(ledger.tables)) == set(load_master_keys(new).ids)
        sealer = LedgerSealer.for_ledger(ledger, new)  # the public key dropped, as the page says next
        assert {s: sealer.open(s, blob) for s, blob in sealed.items()} == {
            s: f"payload {s[-1]}".encode() for s in subjects}
    finally:
        ledger.close()


def test_a_missing_public_key_file_is_named_as_a_file(tmp_path):
    env = production(tmp_path, XLEDGER_KEYSET=str(tmp_path / "keyset.yaml"))
    result = runner.invoke(app, ["keys", "add", ORG, "kalundborg-2026-1", "--public-key", "kalundborg.pub"], env=env)
    assert result.exit_code == 2
    assert errors(result) == ["error: --public-key 'kalundborg.pub' is neither a readable file nor a key "
                              "(PEM or base64)"]


def test_a_rotation_that_cannot_end_a_key_writes_nothing(tmp_path):
    # A key provisioned to start later cannot end before it starts. The rotation used to add the
    # new key first and then fail, leaving it half done (and "already has a key" on a re-run).
    from datetime import date

    path = tmp_path / "keyset.yaml"
    f = KeySetFile(path)
    f.add(ORG, "k-now", new_key(), valid_from=date(2026, 1, 1))
    f.add(ORG, "k-2027", new_key(), valid_from=date(2027, 1, 1))
    before = path.read_text()
    env = production(tmp_path, XLEDGER_KEYSET=str(path))
    result = runner.invoke(app, ["keys", "rotate", ORG, "k-new", "--public-key", new_key(), "--valid-from",
                                 "2026-06-01", "--overlap-days", "7"], env=env)
    assert result.exit_code == 2
    assert errors(result) == [f"error: {ORG} k-2027 starts 2027-01-01, after the other keys would end "
                              "(2026-06-08); revoke it, or rotate from a later --valid-from"]
    assert path.read_text() == before


def _dev_checkpoint_public_key() -> str:
    from ledger.checkpoint import encode_public_key, load_private_key

    return encode_public_key(load_private_key(DEV_CHECKPOINT_KEY).public_key())


def test_a_key_history_may_not_let_the_development_checkpoint_key_sign_from_now_on(tmp_path):
    # A ledger of an earlier release ran on the public key and retired it. Sizes it signed up to
    # then are vouched for by the current key's later checkpoints; with no last size, anyone could
    # sign every future checkpoint.
    from ledger.checkpoint import LogKey, encode_public_key, generate_keypair, load_public_key

    history = tmp_path / "history"
    dev = load_public_key(_dev_checkpoint_public_key())
    current = encode_public_key(generate_keypair()[1])
    history.write_text(LogKey(dev, "exchange-ledger/production", 0, None).history_line() + "\n")
    result = runner.invoke(app, ["verify", "--public-key", current, "--key-history", str(history)],
                           env=production(tmp_path))
    assert result.exit_code == 2
    assert errors(result) == [f"error: key history {history} holds the public development checkpoint key with no "
                              "last size; anyone can sign with it, so outside development it may only cover sizes "
                              "that are past"]
    history.write_text(LogKey(dev, "exchange-ledger/production", 0, 222).history_line() + "\n")
    result = runner.invoke(app, ["verify", "--public-key", current, "--key-history", str(history)],
                           env=production(tmp_path))
    assert f"warning: key history {history}: the checkpoints of sizes 0..222 were signed with the public " \
           "development checkpoint key" in result.stderr
    assert errors(result) == [f"error: no ledger at {tmp_path}/absent/ledger.sqlite (check --ledger-url / "
                              "XLEDGER_LEDGER_URL; only `gate run`, `relay run`, `ledger init` and `demo` create a ledger)"]


def test_a_monitor_refuses_the_development_checkpoint_key_outside_development(tmp_path):
    result = runner.invoke(app, ["monitor", "--log-url", "http://127.0.0.1:9", "--log-key",
                                 _dev_checkpoint_public_key(), "--state", str(tmp_path / "state.json"), "--once"],
                           env=production(tmp_path))
    assert result.exit_code == 2
    assert errors(result) == ["error: --log-key is the public development checkpoint key; anyone can sign with it, "
                              "so outside development it proves nothing"]


def test_a_tree_vouched_for_only_by_the_retired_development_checkpoint_key_is_not_verified(ledger_url, tmp_path):
    # An earlier release's ledger, its checkpoints signed with the public key, the key retired into the
    # history. Until the new key has signed a checkpoint beyond the retired range, nothing but the public
    # key vouches for the tree: anyone could rewrite it and sign again.
    from ledger.application import Ledger
    from ledger.checkpoint import encode_private_key, encode_public_key, generate_keypair
    from ledger.integrity import signer_from_key
    from tests.ledger.conftest import fill

    ledger = Ledger(ledger_url)
    try:
        fill(ledger, 0, 20)
        ledger.integrate(signer=signer_from_key(DEV_CHECKPOINT_KEY), origin="exchange-ledger/dev", checkpoint=True)
    finally:
        ledger.close()
    history = tmp_path / "history"
    dev_env = {**production(tmp_path), "XLEDGER_ENV": "development", "XLEDGER_LEDGER_URL": ledger_url}
    dev_env.pop("XLEDGER_CHECKPOINT_KEY")
    retired = runner.invoke(app, ["ledger", "retire-checkpoint-key", "--history", str(history)], env=dev_env)
    assert retired.exit_code == 0, retired.output
    new_private, new_public = generate_keypair()
    env = {**production(tmp_path), "XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": encode_private_key(new_private)}
    verify = ["verify", "--public-key", encode_public_key(new_public), "--key-history", str(history),
              "--origin", "exchange-ledger/dev"]
    result = runner.invoke(app, verify, env=env)
    assert result.exit_code == 3, result.output
    assert "NOT VERIFIED: no checkpoint beyond size" in result.stdout and "public development" in result.stdout

    # More entries, and a checkpoint signed with the new key: it commits to every entry before it too.
    ledger = Ledger(ledger_url)
    try:
        fill(ledger, 100, 5)
    finally:
        ledger.close()
    integrated = runner.invoke(app, ["ledger", "integrate"], env={**env, "XLEDGER_LEDGER_ORIGIN": "exchange-ledger/dev"})
    assert integrated.exit_code == 0, integrated.output
    result = runner.invoke(app, verify, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK:") and "public development checkpoint key" in result.stderr
