"""docker-compose.yml and the Dockerfile stay true to the code: every service command is a real xledger
command, every Kafka client authenticates as its own SCRAM user, the broker enforces ACLs, and every
secret comes from .env.

No Docker engine runs here, so the compose file is checked by parsing it, by Debian's docker-compose
(`config` needs no engine) where it is installed, and the broker's start script by running it with
stand-ins for Kafka's own tools.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def xledger_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if svc.get("build")}


def test_compose_has_kafka_kraft_postgres_and_the_gate():
    doc = compose()
    kafka = doc["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["entrypoint"][-2:] == ["/xledger/kafka.sh", "serve"]  # KRaft: see the script's test below
    assert "zookeeper" not in doc["services"]
    assert doc["services"]["postgres"]["image"].startswith("postgres:")
    assert xledger_services(doc)["gate"]["command"][:2] == ["gate", "run"]


def test_every_service_command_is_a_real_xledger_command():
    runner = CliRunner()
    services = xledger_services(compose())
    assert services, "compose builds no exchange-ledger service"
    for name, svc in services.items():
        command = svc["command"]
        # `--help` after the full argument list: typer rejects unknown commands and options first.
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, f"service {name!r}: `xledger {' '.join(command)}` is not valid: {result.output}"


def test_services_get_their_configuration_from_xledger_variables():
    services = xledger_services(compose())
    for name in ("gate", "relay", "review"):
        assert services[name]["environment"]["XLEDGER_LEDGER_URL"].startswith("postgresql://"), name
    for name in ("gate", "relay", "topics", "acls"):
        assert services[name]["environment"]["XLEDGER_BOOTSTRAP_SERVERS"] == "kafka:9092", name


# -- Kafka: SASL/SCRAM for every client, ACLs on the broker -----------------------------------------------

SECRET_REF = re.compile(r"^\$\{(?P<name>XLEDGER_[A-Z_]+):\?[^}]+\}$")
KAFKA_USERS = {"gate": "xledger-gate", "relay": "xledger-relay", "topics": "xledger-admin", "acls": "xledger-admin"}


def test_every_kafka_client_authenticates_as_its_own_user():
    services = xledger_services(compose())
    kafka_clients = {name for name, svc in services.items() if "XLEDGER_BOOTSTRAP_SERVERS" in svc["environment"]}
    assert kafka_clients == set(KAFKA_USERS)
    passwords = {}
    for name, user in KAFKA_USERS.items():
        env = services[name]["environment"]
        assert (env["XLEDGER_SECURITY_PROTOCOL"], env["XLEDGER_SASL_MECHANISM"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
        assert env["XLEDGER_SASL_USERNAME"] == user, name
        passwords[user] = SECRET_REF.match(env["XLEDGER_SASL_PASSWORD"])["name"]
    assert len(set(passwords.values())) == 3  # admin, gate and relay each have their own password


def test_the_review_app_gets_no_kafka_credentials():
    env = xledger_services(compose())["review"]["environment"]
    assert not [k for k in env if "SASL" in k or "KAFKA" in k or k == "XLEDGER_BOOTSTRAP_SERVERS"]


def test_topics_and_acls_are_set_up_before_the_services_start():
    services = compose()["services"]
    assert services["acls"]["command"] == ["topics", "acls", "--apply"]
    assert services["acls"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"][:2] == ["topics", "create"]
    for name in ("gate", "relay"):
        needs = services[name]["depends_on"]
        for step in ("acls", "kafka-users"):
            assert needs[step]["condition"] == "service_completed_successfully", (name, step)


def test_the_broker_and_the_user_step_run_the_deploy_script():
    services = compose()["services"]
    for name, mode in (("kafka", "serve"), ("kafka-users", "users")):
        svc = services[name]
        assert svc["image"] == services["kafka"]["image"]
        assert svc["entrypoint"] == ["/bin/bash", "/xledger/kafka.sh", mode]
        assert "./deploy/kafka:/xledger:ro" in svc["volumes"]
    assert services["kafka"]["healthcheck"]["test"] == ["CMD", "/bin/bash", "/xledger/kafka.sh", "health"]


# -- secrets: only from .env ----------------------------------------------------------------------------

def environments(doc: dict):
    for name, svc in doc["services"].items():
        yield name, svc.get("environment", {})


def test_no_secret_is_written_in_the_compose_file():
    secretish = re.compile(r"PASSWORD|SECRET|_KEY$")
    for name, env in environments(compose()):
        for key, value in env.items():
            if secretish.search(key):
                assert SECRET_REF.match(str(value)), f"{name}: {key} must be ${{VAR:?message}} from .env, not {value!r}"
        url = env.get("XLEDGER_LEDGER_URL")
        if url:
            assert re.fullmatch(r"postgresql://xledger:\$\{XLEDGER_DB_PASSWORD:\?[^}]+\}@postgres:5432/xledger", url)
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"password=(?!\$\{)", text, re.IGNORECASE)


def referenced_secrets() -> set[str]:
    return set(re.findall(r"\$\{(XLEDGER_[A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


def test_env_example_names_every_secret_and_holds_none():
    example = env_example()
    assert referenced_secrets() <= set(example), referenced_secrets() - set(example)
    assert {k: v for k, v in example.items() if v} == {}, "placeholders must stay empty so compose refuses them"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _compose_env(values: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    return {**env, **values}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_docker_compose_accepts_the_file_and_refuses_a_missing_secret(tmp_path):
    # Debian's docker-compose 1.29 predates the top-level `name:`; everything else it validates as written.
    (tmp_path / "docker-compose.yml").write_text(re.sub(r"(?m)^name: .*\n", "", (ROOT / "docker-compose.yml").read_text()))
    filled = {name: f"value-of-{name.lower().replace('_', '-')}" for name in env_example()}
    ok = subprocess.run(["docker-compose", "config"], cwd=tmp_path, env=_compose_env(filled),
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)["services"]
    assert resolved["gate"]["environment"]["XLEDGER_SASL_PASSWORD"] == filled["XLEDGER_GATE_KAFKA_PASSWORD"]
    assert resolved["relay"]["environment"]["XLEDGER_SASL_USERNAME"] == "xledger-relay"
    for missing in sorted(referenced_secrets()):
        refused = subprocess.run(["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                 env=_compose_env({k: v for k, v in filled.items() if k != missing}))
        assert refused.returncode != 0 and f"set {missing} in .env" in refused.stderr, missing


# -- the broker's start script, run with stand-ins for Kafka's tools --------------------------------------

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
ADMIN_PW = "admin-pw-0123456789abcdef"


@pytest.fixture
def kafka_home(tmp_path):
    """A KAFKA_HOME whose tools record their arguments (and the config file they were given)."""
    bin_dir = tmp_path / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("kafka-storage.sh", "kafka-server-start.sh", "kafka-configs.sh"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{tmp_path}/{tool}.calls"\n')
        script.chmod(0o755)
    return tmp_path


def run_kafka_sh(mode: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "KAFKA_HOME": str(home / "kafka"), "XLEDGER_KAFKA_WORK": str(home / "work")}
    return subprocess.run(["bash", str(KAFKA_SH), mode], env={**base, **env}, capture_output=True, text=True, timeout=30)


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_broker_takes_scram_only_and_denies_what_no_acl_allows(kafka_home):
    result = run_kafka_sh("serve", kafka_home, XLEDGER_KAFKA_ADMIN_PASSWORD=ADMIN_PW)
    assert result.returncode == 0, result.stderr
    conf = properties(kafka_home / "work" / "server.properties")
    assert conf["process.roles"] == "broker,controller" and not [k for k in conf if "zookeeper" in k]  # KRaft
    assert conf["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    assert conf["super.users"] == "User:xledger-admin;User:ANONYMOUS"
    # Clients reach SASL only; the plaintext (ANONYMOUS) controller listener is on loopback.
    assert conf["listeners"] == "SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093"
    assert conf["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512" and conf["auto.create.topics.enable"] == "false"
    assert f'username="xledger-admin" password="{ADMIN_PW}"' in conf[
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    (storage_call,) = (kafka_home / "kafka-storage.sh.calls").read_text().splitlines()
    assert f"--add-scram SCRAM-SHA-512=[name=xledger-admin,password={ADMIN_PW}]" in storage_call
    assert "--ignore-formatted" in storage_call
    assert (kafka_home / "kafka-server-start.sh.calls").read_text().strip().endswith("server.properties")
    for name in ("server.properties", "admin.properties"):
        assert (kafka_home / "work" / name).stat().st_mode & 0o077 == 0, name


def test_the_user_step_sets_the_gate_and_relay_passwords_as_the_admin(kafka_home):
    result = run_kafka_sh("users", kafka_home, XLEDGER_KAFKA_ADMIN_PASSWORD=ADMIN_PW,
                          XLEDGER_GATE_KAFKA_PASSWORD="gate-pw-0123456789abcdef",
                          XLEDGER_RELAY_KAFKA_PASSWORD="relay-pw-0123456789abcdef")
    assert result.returncode == 0, result.stderr
    calls = (kafka_home / "kafka-configs.sh.calls").read_text().splitlines()
    assert [re.search(r"--entity-name (\S+) --add-config (\S+)", c).groups() for c in calls] == [
        ("xledger-gate", "SCRAM-SHA-512=[password=gate-pw-0123456789abcdef]"),
        ("xledger-relay", "SCRAM-SHA-512=[password=relay-pw-0123456789abcdef]"),
    ]
    admin = properties(kafka_home / "work" / "admin.properties")
    assert admin["security.protocol"] == "SASL_PLAINTEXT" and admin["sasl.mechanism"] == "SCRAM-SHA-512"
    assert f'username="xledger-admin" password="{ADMIN_PW}"' in admin["sasl.jaas.config"]


@pytest.mark.parametrize("env, message", [
    ({}, "XLEDGER_KAFKA_ADMIN_PASSWORD is not set"),
    ({"XLEDGER_KAFKA_ADMIN_PASSWORD": "short"}, "XLEDGER_KAFKA_ADMIN_PASSWORD must be at least 16 characters"),
    ({"XLEDGER_KAFKA_ADMIN_PASSWORD": 'quote"breaks]jaas-0123456789'}, "must be at least 16 characters of A-Z"),
])
def test_the_broker_refuses_to_start_without_a_usable_admin_password(kafka_home, env, message):
    result = run_kafka_sh("serve", kafka_home, **env)
    assert result.returncode == 2 and message in result.stderr
    assert not (kafka_home / "kafka-storage.sh.calls").exists()


def test_the_user_step_stops_at_a_missing_password(kafka_home):
    result = run_kafka_sh("users", kafka_home, XLEDGER_KAFKA_ADMIN_PASSWORD=ADMIN_PW,
                          XLEDGER_GATE_KAFKA_PASSWORD="gate-pw-0123456789abcdef")
    assert result.returncode == 2 and "XLEDGER_RELAY_KAFKA_PASSWORD is not set" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="Debian's shellcheck is not installed")
def test_the_deploy_script_passes_shellcheck():
    result = subprocess.run(["shellcheck", str(KAFKA_SH)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_dockerfile_installs_the_project_and_runs_xledger():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text and 'ENTRYPOINT ["xledger"]' in text
    for package in ("services", "schemas", "ledger", "policies"):
        assert f"COPY {package} " in text
