"""The README's main job, run as a user runs it: `xledger demo` in a subprocess."""

from __future__ import annotations

import subprocess
import sys


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
    assert ledger.exists()
