"""The README's main job, run as a user runs it: `xledger demo` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timezone


def test_demo_runs_the_week_and_every_decision_is_the_expected_one(tmp_path):
    ledger = tmp_path / "demo.sqlite"
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--ledger", str(ledger)],
        capture_output=True, text=True, timeout=180,
    )
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
    assert ledger.exists()
