"""The README's main job, run as a user runs it: `xledger demo` in a subprocess, then the auditor commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timezone

from typer.testing import CliRunner

from ledger.application import Ledger
from services.demo import DemoReport


def xledger(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env["XLEDGER_ENV"] = "development"
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=env)


def test_demo_runs_the_week_verifies_and_the_auditor_commands_find_its_ledger(tmp_path):
    result = xledger("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every decision is the one the rules call for" in out
    for context in ("SSP", "PSP", "KSP", "INFOHUS_KOMMUNE", "INFOHUS_NETVAERK", "UNDERRETNING", "PET_REQUEST"):
        assert context in out
    assert "rejected (dead-lettered)" in out
    # the legal officer resolves one escalation each way; the approved one is delivered
    assert "approved by jurist → ALLOW L1 (Juridisk kontrol: PET-loven § 4, stk. 1); delivered to pet:national" in out
    assert "refused by jurist → DENY L1 DENY_REFUSED_ON_REVIEW (Juridisk kontrol:" in out
    # what version 2 of the rules would change in this week, by rule and reason
    if datetime.now(timezone.utc).date() < date(2026, 12, 15):  # the week is version 1's
        assert "policy impact of dk-115-2026-12-15" in out
        assert "DENY H3 DENY_ONWARD_PURPOSE_CHANGE  →  ESCALATE H3 ESCALATE_ONWARD_COMPATIBILITY" in out
        assert "DENY C3 DENY_SUBJECT_OUT_OF_SCOPE  →  ALLOW P5" in out
    # The verification line says the whole ledger is in the verified tree.
    entries = int(re.search(r"ledger entries\s*│\s*(\d+)", out).group(1))
    verified = re.search(r"ledger verification: ok: (\d+) entries in the Merkle tree, (\d+) signed checkpoints", out)
    assert verified, out
    assert int(verified.group(1)) == entries > 0 and int(verified.group(2)) >= 1

    # No ledger URL configured: the auditor commands read the ledger the demo wrote, in development
    # mode as the demo says, since its keys are the public development ones.
    ledger_file = tmp_path / "var" / "ledger.sqlite"
    assert ledger_file.is_file()
    assert "audit it with: XLEDGER_ENV=development xledger verify  " in out
    check = xledger("verify", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    ledger = Ledger(f"sqlite:///{ledger_file}")
    try:
        subject = next(ledger.mapper.to_domain_event(n).subject for n in ledger.all_notifications()
                       if n.topic.endswith("Exchange.RequestDecided"))
    finally:
        ledger.close()
    report = xledger("subject", "report", subject, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0 and '"entries": [' in report.stdout and '"entries": []' not in report.stdout

    # A second demo replaces its own ledger ...
    assert xledger("demo", cwd=tmp_path).returncode == 0


def test_demo_leaves_a_ledger_it_did_not_write_alone(tmp_path):
    ledger_file = tmp_path / "var" / "ledger.sqlite"
    ledger_file.parent.mkdir()
    Ledger(f"sqlite:///{ledger_file}").close()  # e.g. a gate's ledger at the default place
    before = ledger_file.read_bytes()
    result = xledger("demo", cwd=tmp_path)
    assert result.returncode == 2 and "the demo leaves it alone" in result.stderr
    assert ledger_file.read_bytes() == before


def test_the_demo_command_exits_1_when_the_ledger_does_not_verify(monkeypatch, tmp_path):
    """Unit test of the exit status: a report whose verification failed (what run_demo returns then)."""
    import services.demo

    report = DemoReport(requests=2, recorded=2, verification="FAILED: leaf 1 does not match its entry", verified=False)
    monkeypatch.setattr(services.demo, "run_demo", lambda **_: report)
    from services.cli import app

    result = CliRunner().invoke(app, ["demo", "--ledger", str(tmp_path / "l.sqlite")])
    assert result.exit_code == 1
    assert "the ledger did not verify: FAILED: leaf 1" in result.output
    assert DemoReport(requests=2, recorded=2, verified=True).problems() == []
    assert DemoReport(requests=2, recorded=2, verified=True, unexpected=["x"]).problems() != []
