"""docker-compose.yml and the Dockerfile stay true to the code: every service command is a real xledger command."""

from __future__ import annotations

from pathlib import Path

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
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
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
    for name, svc in xledger_services(compose()).items():
        env = svc["environment"]
        assert env["XLEDGER_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["XLEDGER_LEDGER_URL"].startswith("postgresql://"), name


def test_dockerfile_installs_the_project_and_runs_xledger():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text and 'ENTRYPOINT ["xledger"]' in text
    for package in ("services", "schemas", "ledger", "policies"):
        assert f"COPY {package} " in text
