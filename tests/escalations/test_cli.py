"""`xledger escalation list|show|approve|refuse` over a ledger of real recorded escalations, on both back-ends."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ledger.domain import exchange_id
from services.review.users import UserStore
from services.simulation import POLICE
from tests.audit.history import History, build_history
from tests.escalations.test_workflow import SOCIAL, V1_DAY, V2_DAY, no_basis_request, pet_request

runner = CliRunner()


@pytest.fixture
def history(ledger_url) -> History:
    h = build_history(ledger_url, plan=[])
    users = UserStore(h.ledger.tables)
    for name, role in (("jurist-a", "legal_officer"), ("jurist-b", "legal_officer"), ("revisor", "auditor")):
        users.add(name, "et langt kodeord 123", [role])
    yield h
    h.rt.close()


def cli(h: History, *args: str, env: dict[str, str] | None = None):
    from services.cli import app

    return runner.invoke(app, ["escalation", *args], env={"XLEDGER_LEDGER_URL": h.settings.ledger_url, **(env or {})})


def test_escalation_commands_record_verdicts_with_the_officer(history):
    h = history
    h.record(h.signed(pet_request("1203911234"), message_id="pet-0001", org_role=POLICE, at=V1_DAY))
    h.record(h.signed(no_basis_request("0508882345"), message_id="jc-00001", org_role=SOCIAL, at=V2_DAY))
    pet = str(exchange_id(POLICE[0], "pet-0001"))
    jc = str(exchange_id(SOCIAL[0], "jc-00001"))

    res = cli(h, "list", "--json")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    rows, stats = lines[:-1], lines[-1]["statistics"]
    assert {(r["exchange_id"], r["approvals_required"], r["status"]) for r in rows} == {(pet, 1, "OPEN"), (jc, 2, "OPEN")}
    assert stats["open"] == 2 and stats["overdue"] == 0

    # who may give a verdict
    res = cli(h, "approve", pet, "--officer", "nobody", "--basis", "b", "--citation", "c")
    assert res.exit_code == 2 and "no user 'nobody'" in res.stderr
    res = cli(h, "approve", pet, "--officer", "revisor", "--basis", "b", "--citation", "c")
    assert res.exit_code == 2 and "not a legal officer" in res.stderr
    res = cli(h, "approve", pet, "--officer", "jurist-a", "--basis", "  ", "--citation", "PET-loven § 4")
    assert res.exit_code == 2 and "basis" in res.stderr
    res = cli(h, "approve", "not-an-id", "--officer", "jurist-a", "--basis", "b", "--citation", "c")
    assert res.exit_code == 2 and "not an exchange id" in res.stderr

    res = cli(h, "approve", pet, "--officer", "jurist-a", "--basis", "Trusselsvurdering", "--citation", "PET-loven § 4")
    assert res.exit_code == 0 and "approved: pet:national gets ALLOW L1 — Juridisk kontrol: PET-loven § 4" in res.stdout
    res = cli(h, "refuse", pet, "--officer", "jurist-b", "--reason", "for sent")
    assert res.exit_code == 1 and "already closed (APPROVED)" in res.stderr

    # four eyes from the command line
    res = cli(h, "approve", jc, "--officer", "jurist-a", "--basis", "Sagsbehandling", "--citation", "dbl § 8, stk. 2, nr. 2")
    assert res.exit_code == 0 and "1 of 2 approvals" in res.stdout
    res = cli(h, "approve", jc, "--officer", "JURIST-A", "--basis", "Igen", "--citation", "dbl § 8")
    assert res.exit_code == 1 and "another legal officer" in res.stderr
    res = cli(h, "refuse", jc, "--officer", "jurist-b", "--reason", "Ikke nødvendigt for jobcentret")
    assert res.exit_code == 0 and "refused: kommune:326 gets DENY L1 DENY_REFUSED_ON_REVIEW" in res.stdout

    res = cli(h, "show", jc)
    assert res.exit_code == 0
    assert "jurist-a APPROVE via cli: Sagsbehandling (dbl § 8, stk. 2, nr. 2) → OPEN" in res.stdout
    assert "jurist-b REFUSE via cli: Ikke nødvendigt for jobcentret → REFUSED" in res.stdout
    assert "decided under dk-115-2026-12-15" in res.stdout
    res = cli(h, "list")
    assert res.exit_code == 0 and "0 open" in res.stdout and "1 approved, 1 refused" in res.stdout
    res = cli(h, "list", "--all", "--json")
    assert {json.loads(x).get("status") for x in res.stdout.splitlines()[:-1]} == {"APPROVED", "REFUSED"}
    res = cli(h, "show", jc, "--json")
    chain = json.loads(res.stdout)
    assert [v["officer"] for v in chain["escalations"][0]["verdicts"]] == ["jurist-a", "jurist-b"]


def test_overdue_escalations_are_flagged(history):
    h = history
    h.record(h.signed(pet_request("1203911234"), message_id="pet-0002", org_role=POLICE, at=V1_DAY))
    res = cli(h, "list", "--overdue", "--json")
    assert [json.loads(x) for x in res.stdout.splitlines()][:-1] == []
    # recorded just now; with a limit of 0 hours it is overdue at once
    res = cli(h, "list", "--overdue", "--json", env={"XLEDGER_ESCALATION_MAX_OPEN_HOURS": "0"})
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["message_id"] for r in lines[:-1]] == ["pet-0002"] and lines[0]["overdue"] is True
    assert lines[-1]["statistics"]["overdue"] == 1
    res = cli(h, "list", env={"XLEDGER_ESCALATION_MAX_OPEN_HOURS": "0"})
    assert "OVERDUE" in res.stdout and "1 overdue" in res.stdout
