"""An integrator's path: publish with `xledger agency publish`, read with `xledger agency inbox` and `receipts`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import yaml

from services.agencies import AgencyError, KINDS
from services.runtime import Runtime
from tests.harness import running, wait_for


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env["XLEDGER_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["XLEDGER_ENV"] = "development"  # --dev-key works only there
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def request_file(tmp_path, release: date) -> str:
    doc = {
        "payload_type": "ReleaseNotice",
        "payload": {"cpr": "1203911234", "full_name": "CLI Person", "institution": "Horserød Fængsel",
                    "release_date": release.isoformat(), "release_type": "END_OF_SENTENCE"},
        # Horserød Fængsel lies in Helsingør Kommune: a member of Helsingør's KSP (the directory)
        "recipients": [{"org": "kommune:217", "role": "MUNI_SOCIAL_ADULT"}],
        "context": "KSP", "cooperation_id": "ksp:helsingor", "purpose": "RELEASE_PLANNING",
        "subject": {"age": 30, "convicted": True, "custody_status": "IN_KIF_INSTITUTION",
                    "release_date": release.isoformat()},
        "data_categories": ["IDENTITY", "CRIMINAL"],
        "necessity": "Kommunen skal have en bolig klar på løsladelsesdagen.",
    }
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return str(path)


def test_publish_inbox_and_receipts_from_the_command_line(settings, tmp_path):
    rt = Runtime(settings)
    rt.create_topics(["kriminalforsorgen:horserod", "kommune:217"])
    path = request_file(tmp_path, date.today() + timedelta(days=14))
    sent = cli(settings, "agency", "publish", path, "--org", "kriminalforsorgen:horserod",
               "--role", "KRIMINALFORSORGEN", "--dev-key")
    assert sent.returncode == 0, sent.stderr
    message_id = json.loads(sent.stdout)["message_id"]
    relay = rt.relay()
    with running(rt.gate_worker(), relay):
        assert wait_for(lambda: relay.stats["inbox"] == 1)
    inbox = cli(settings, "agency", "inbox", "--org", "kommune:217", "--wait", "1")
    lines = [json.loads(line) for line in inbox.stdout.splitlines()]
    assert [(d["message_id"], d["rule"]) for d in lines] == [(message_id, "P5")]
    assert "payload" not in lines[0]  # personal data only with --show-payload
    shown = cli(settings, "agency", "inbox", "--org", "kommune:217", "--wait", "1", "--show-payload")
    assert json.loads(shown.stdout.splitlines()[0])["payload"]["full_name"] == "CLI Person"
    receipts = cli(settings, "agency", "receipts", "--org", "kriminalforsorgen:horserod", "--wait", "1")
    assert [json.loads(r)["outcome"] for r in receipts.stdout.splitlines()] == ["ALLOW"]
    rt.close()


def test_publish_refuses_what_the_authority_cannot_send(settings, tmp_path):
    path = request_file(tmp_path, date.today())
    wrong_kind = cli(settings, "agency", "publish", path, "--org", "kommune:326", "--role", "MUNI_SOCIAL_ADULT",
                     "--dev-key")
    assert wrong_kind.returncode == 2
    assert "does not send" in wrong_kind.stderr and "ReleaseNotice" in wrong_kind.stderr
    wrong_role = cli(settings, "agency", "publish", path, "--org", "kommune:326", "--role", "POLICE", "--dev-key")
    assert wrong_role.returncode == 2 and "does not act as POLICE" in wrong_role.stderr
    no_key = cli(settings, "agency", "publish", path, "--org", "kommune:326", "--role", "MUNI_SOCIAL_ADULT")
    assert no_key.returncode == 2 and "--key-file" in no_key.stderr


def test_every_kind_sends_only_payload_types_that_exist():
    from schemas.registry import default_registry

    names = set(default_registry().names())
    for kind in KINDS.values():
        assert set(kind.sends) <= names, kind.name
    assert issubclass(AgencyError, ValueError)
