"""Production is the default mode, and nothing public runs in it.

Every command that signs, seals or serves refuses to start when a secret it uses is missing
or is the public development value, or when its key set is missing or holds a development
key: one line on stderr per offending setting, exit code 2. One test per secret per
command. The refusal comes before any broker or database is touched.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from services.cli import app
from services.config import (
    DEV_CHECKPOINT_KEY,
    DEV_MASTER_KEY,
    DEV_PSEUDONYM_SECRET,
    DEV_SESSION_SECRET,
    ConfigError,
    Settings,
)
from services.keyring import dev_private_key
from services.keyset import DEV_KEYSET
from services.signing import public_bytes_b64

runner = CliRunner()
SUBJECT = "ab" * 32

PUBLIC = {
    "XLEDGER_PSEUDONYM_SECRET": DEV_PSEUDONYM_SECRET,
    "XLEDGER_MASTER_KEY": DEV_MASTER_KEY,
    "XLEDGER_CHECKPOINT_KEY": DEV_CHECKPOINT_KEY,
    "XLEDGER_SESSION_SECRET": DEV_SESSION_SECRET,
    "XLEDGER_KEYSET": str(DEV_KEYSET),
}

COMMANDS = {
    "gate run": ["gate", "run", "--bootstrap-servers", "127.0.0.1:9"],
    "relay run": ["relay", "run", "--bootstrap-servers", "127.0.0.1:9"],
    "review serve": ["review", "serve"],
    "ledger integrate": ["ledger", "integrate"],
    "ledger checkpoint-key": ["ledger", "checkpoint-key"],
    "verify": ["verify"],
    "proof inclusion": ["proof", "inclusion", "0"],
    "subject erase": ["subject", "erase", SUBJECT, "--reason", "court order 1"],
    "subject report": ["subject", "report", SUBJECT],
    "subject find": ["subject", "find", "1203911234"],
    "audit reevaluate": ["audit", "reevaluate"],
    "policy impact": ["policy", "impact", "--bundle", "policies/bundles/dk-115-2026.yaml"],
    "keys rotate-master": ["keys", "rotate-master"],
}

# (command, the setting it needs): every pair is refused when public and when missing.
NEEDED = [
    ("gate run", "XLEDGER_PSEUDONYM_SECRET"), ("gate run", "XLEDGER_MASTER_KEY"), ("gate run", "XLEDGER_KEYSET"),
    ("relay run", "XLEDGER_MASTER_KEY"), ("relay run", "XLEDGER_CHECKPOINT_KEY"),
    ("review serve", "XLEDGER_PSEUDONYM_SECRET"), ("review serve", "XLEDGER_SESSION_SECRET"),
    ("review serve", "XLEDGER_CHECKPOINT_KEY"),
    ("ledger integrate", "XLEDGER_CHECKPOINT_KEY"), ("ledger checkpoint-key", "XLEDGER_CHECKPOINT_KEY"),
    ("verify", "XLEDGER_CHECKPOINT_KEY"), ("proof inclusion", "XLEDGER_CHECKPOINT_KEY"),
    ("subject erase", "XLEDGER_MASTER_KEY"), ("subject report", "XLEDGER_PSEUDONYM_SECRET"),
    ("subject find", "XLEDGER_PSEUDONYM_SECRET"),
    ("audit reevaluate", "XLEDGER_MASTER_KEY"), ("audit reevaluate", "XLEDGER_PSEUDONYM_SECRET"),
    ("audit reevaluate", "XLEDGER_KEYSET"), ("policy impact", "XLEDGER_MASTER_KEY"),
    ("keys rotate-master", "XLEDGER_MASTER_KEY"),
]


@pytest.fixture
def deployment(tmp_path) -> dict[str, str]:
    """A complete production configuration with the deployment's own values, and a ledger path."""
    keyset = tmp_path / "keyset.yaml"
    keyset.write_text(yaml.safe_dump({"keys": {"kommune:326": [
        {"key_id": "kalundborg-2026-1", "public_key": public_bytes_b64(Ed25519PrivateKey.generate())}]}}))
    return {
        "XLEDGER_ENV": "production",
        "XLEDGER_PSEUDONYM_SECRET": secrets.token_hex(32),
        "XLEDGER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_CHECKPOINT_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_SESSION_SECRET": secrets.token_hex(32),
        "XLEDGER_KEYSET": str(keyset),
        "XLEDGER_LEDGER_URL": f"sqlite:///{tmp_path}/absent/ledger.sqlite",
    }


def run(args: list[str], env: dict[str, str | None]):
    return runner.invoke(app, args, env=env)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command, variable", NEEDED, ids=[f"{c}-{v[8:].lower()}" for c, v in NEEDED])
def test_a_public_development_value_is_refused(deployment, command, variable):
    result = run(COMMANDS[command], {**deployment, variable: PUBLIC[variable]})
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "development" in lines[0]
    assert not Path(deployment["XLEDGER_LEDGER_URL"][len("sqlite:///"):]).exists()  # refused before opening


@pytest.mark.parametrize("command, variable", NEEDED, ids=[f"{c}-{v[8:].lower()}" for c, v in NEEDED])
def test_a_missing_setting_is_refused(deployment, command, variable):
    result = run(COMMANDS[command], {**deployment, variable: None})
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and variable in lines[0] and "not set" in lines[0], result.stderr


def test_a_deployment_that_sets_nothing_is_production_and_names_every_missing_setting():
    env = {name: None for name in (*PUBLIC, "XLEDGER_ENV")}
    result = run(COMMANDS["gate run"], env)
    assert result.exit_code == 2
    assert [line.split()[1] for line in error_lines(result)] == [
        "XLEDGER_PSEUDONYM_SECRET", "XLEDGER_MASTER_KEY", "XLEDGER_KEYSET"]
    result = run(COMMANDS["review serve"], env)
    assert [line.split()[1] for line in error_lines(result)] == [
        "XLEDGER_PSEUDONYM_SECRET", "XLEDGER_SESSION_SECRET", "XLEDGER_CHECKPOINT_KEY"]


def test_a_key_set_holding_one_development_key_under_another_id_is_refused(deployment, tmp_path):
    keyset = tmp_path / "sneaky.yaml"
    keyset.write_text(yaml.safe_dump({"kriminalforsorgen:horserod": [
        {"key_id": "horserod-2026", "public_key": public_bytes_b64(dev_private_key("kriminalforsorgen:horserod"))}]}))
    result = run(COMMANDS["gate run"], {**deployment, "XLEDGER_KEYSET": str(keyset)})
    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: XLEDGER_KEYSET holds 1 public development key(s) (kriminalforsorgen:horserod horserod-2026); "
        "a production key set holds the authorities' own keys"]


def test_a_master_key_ring_holding_the_development_key_is_refused(deployment):
    ring = deployment["XLEDGER_MASTER_KEY"] + "," + DEV_MASTER_KEY
    result = run(COMMANDS["keys rotate-master"], {**deployment, "XLEDGER_MASTER_KEY": ring})
    assert result.exit_code == 2 and "XLEDGER_MASTER_KEY holds the public development key" in result.stderr


@pytest.mark.parametrize("variable, value, problem", [
    ("XLEDGER_MASTER_KEY", "AAAA", "malformed"),
    ("XLEDGER_CHECKPOINT_KEY", "not a key", "not an Ed25519 private key"),
    ("XLEDGER_PSEUDONYM_SECRET", "short", "shorter than 32 characters"),
])
def test_a_malformed_secret_is_refused_naming_it(deployment, variable, value, problem):
    command = {"XLEDGER_MASTER_KEY": "gate run", "XLEDGER_CHECKPOINT_KEY": "relay run",
               "XLEDGER_PSEUDONYM_SECRET": "gate run"}[variable]
    result = run(COMMANDS[command], {**deployment, variable: value})
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable} ") and problem in lines[0], result.stderr


def test_development_shortcuts_work_only_in_development(deployment, tmp_path):
    request = tmp_path / "request.yaml"
    request.write_text("payload_type: ReleaseNotice\npayload: {}\n")
    result = run(["agency", "publish", str(request), "--org", "kriminalforsorgen:horserod", "--role",
                  "KRIMINALFORSORGEN", "--dev-key", "--bootstrap-servers", "127.0.0.1:9"], deployment)
    assert result.exit_code == 2 and error_lines(result) == [
        "error: --dev-key works only in development (XLEDGER_ENV=development); XLEDGER_ENV is production"]
    # The development key in a key file is no way round it.
    key_file = tmp_path / "horserod.key"
    key_file.write_text(base64.b64encode(dev_private_key("kriminalforsorgen:horserod").private_bytes_raw()).decode())
    result = run(["agency", "publish", str(request), "--org", "kriminalforsorgen:horserod", "--role",
                  "KRIMINALFORSORGEN", "--key-file", str(key_file), "--key-id", "horserod-1",
                  "--bootstrap-servers", "127.0.0.1:9"], deployment)
    assert result.exit_code == 2 and "public development key works only in development" in result.stderr
    result = run(["keys", "dev-generate", "--output", str(tmp_path / "k.yaml")], deployment)
    assert result.exit_code == 2 and not (tmp_path / "k.yaml").exists()
    result = run(["keys", "add", "kommune:326", "dev-2027", "--public-key", public_bytes_b64(dev_private_key("kommune:326")),
                  "--keyset", deployment["XLEDGER_KEYSET"]], deployment)
    assert result.exit_code == 2 and "development key" in result.stderr


def test_settings_default_to_production_and_development_must_be_said():
    assert Settings().mode == "production" and Settings().master_key == ""
    assert Settings.from_env(env={}).mode == "production"
    dev = Settings.from_env(env={"XLEDGER_ENV": "Development"})
    assert dev.is_development and dev.master_key == DEV_MASTER_KEY and dev.session_secret == DEV_SESSION_SECRET
    with pytest.raises(ConfigError, match="XLEDGER_ENV must be development or production, got 'staging'"):
        Settings.from_env(env={"XLEDGER_ENV": "staging"})
    # A child process gets the mode with the rest of the settings.
    assert Settings.from_env(env=dev.to_env()) == dev


def test_a_secret_may_come_from_a_mounted_file_but_not_from_both(tmp_path):
    secret = tmp_path / "pseudonym-secret"
    secret.write_text(secrets.token_hex(32) + "\n")
    settings = Settings.from_env(env={"XLEDGER_PSEUDONYM_SECRET_FILE": str(secret)})
    assert settings.pseudonym_secret == secret.read_text().strip() and settings.problems("pseudonym_secret") == []
    with pytest.raises(ConfigError, match="XLEDGER_PSEUDONYM_SECRET and XLEDGER_PSEUDONYM_SECRET_FILE are both set"):
        Settings.from_env(env={"XLEDGER_PSEUDONYM_SECRET_FILE": str(secret), "XLEDGER_PSEUDONYM_SECRET": "x" * 40})
    with pytest.raises(ConfigError, match="XLEDGER_MASTER_KEY_FILE: cannot read"):
        Settings.from_env(env={"XLEDGER_MASTER_KEY_FILE": str(tmp_path / "absent")})
    # The public development value read from a file is just as public.
    secret.write_text(DEV_PSEUDONYM_SECRET)
    assert "public development value" in Settings.from_env(
        env={"XLEDGER_PSEUDONYM_SECRET_FILE": str(secret)}).problems("pseudonym_secret")[0]


def test_compose_gives_every_service_what_production_needs_and_nothing_public():
    from services.config import variable
    from services.trust import NEEDS

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    for name, svc in doc["services"].items():
        if not svc.get("build"):
            continue
        env = svc["environment"]
        assert env.get("XLEDGER_ENV", "production") == "production", name
        command = " ".join(svc["command"][:2])
        for needed in NEEDS.get(command, ()):
            assert variable(needed) in env, f"{name} ({command}) lacks {variable(needed)}"
            value = str(env[variable(needed)])
            assert value.startswith("${") or value.startswith("/"), f"{name}: {variable(needed)} is written in compose"
        if "keyset" in NEEDS.get(command, ()):
            assert {"type": "bind", "source": "${XLEDGER_KEYSET_DIR:?set XLEDGER_KEYSET_DIR in .env}",
                    "target": env["XLEDGER_KEYSET"], "read_only": True} in svc.get("volumes", []), name
