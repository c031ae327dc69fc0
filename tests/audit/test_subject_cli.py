"""`xledger subject report` in Danish and English (names, labels, erasure) and `xledger subject find`,
over real recorded exchanges on both ledger back-ends; both are access-logged in the ledger."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

from services.cli.audit import cli_user
from tests.audit.history import CPR_A, History, build_history

runner = CliRunner()
# A code a person should never have to read: reason, purpose, context and category codes, and authority ids.
RAW_CODE = re.compile(r"\b(?:DENY|ALLOW|ESCALATE|WARN)_[A-Z_0-9]+|\b[A-Z]+_[A-Z_]{3,}\b|\b[a-z]+:[0-9a-z_-]+\b")


@pytest.fixture
def history(ledger_url) -> History:
    h = build_history(ledger_url)
    yield h
    h.rt.close()


def cli(h: History, *args: str, input: str | None = None):
    from services.cli import app

    return runner.invoke(app, list(args), env={"XLEDGER_LEDGER_URL": h.settings.ledger_url}, input=input)


def access_log(h: History) -> list:
    to_event = h.ledger.mapper.to_domain_event
    return [to_event(n) for n in h.ledger.all_notifications(topics=["ledger.access:AccessRecord.AccessLogged"])]


def gate_subject(h: History, label: str) -> str:
    """The pseudonym the gate itself recorded for the exchange sent under ``label``."""
    to_event = h.ledger.mapper.to_domain_event
    for n in h.ledger.all_notifications():
        if n.topic.endswith("Exchange.RequestDecided"):
            e = to_event(n)
            if e.message_id == h.sent[label]:
                return e.subject
    raise AssertionError(f"no request {label}")


def test_subject_find_gives_the_gate_s_pseudonym_and_logs_the_lookup(history):
    expected = gate_subject(history, "p5-21")  # CPR_A's exchange, pseudonymised by the real gate
    before = len(access_log(history))
    found = cli(history, "subject", "find", "120391-1234")
    assert found.exit_code == 0, found.output
    assert found.stdout.strip() == expected
    assert "1203911234" not in found.output and "120391-1234" not in found.output
    assert "access log" in found.stderr
    logged = access_log(history)[before:]
    assert [(e.action, e.target_kind, e.target, e.via, e.who, e.roles) for e in logged] == [
        ("subject_find", "subject", expected, "cli", cli_user(), ["cli"])]

    piped = cli(history, "subject", "find", "-", input=CPR_A + "\n")
    assert piped.exit_code == 0 and piped.stdout.strip() == expected
    assert len(access_log(history)) == before + 2

    # Bad input: one clear line, exit 2, the number never echoed, nothing logged.
    for bad, why in (("3213991234", "real date"), ("12039", "10 digits"), (expected, "already a pseudonym")):
        r = cli(history, "subject", "find", bad)
        assert r.exit_code == 2 and why in r.output, r.output
        assert bad not in r.output or bad == expected
    assert cli(history, "subject", "find", "-", input="").exit_code == 2
    assert len(access_log(history)) == before + 2


def test_subject_report_in_danish_and_english_with_names_and_labels(history):
    p = history.pseudonym(CPR_A)
    before = len(access_log(history))

    da = list(csv.DictReader(io.StringIO(cli(history, "subject", "report", CPR_A, "--format", "csv").stdout)))
    assert list(da[0]) == ["Pseudonym", "Tidspunkt", "Afsender", "Modtager", "Udfald", "Regel", "Begrundelse",
                           "Hjemmel", "Samarbejde", "Formål", "Datakategorier", "Besked-id"]
    assert {r["Modtager"] for r in da} == {"Kalundborg Kommune"}
    assert {r["Udfald"] for r in da} == {"Tilladt"}
    assert {r["Formål"] for r in da} == {"Planlægning af løsladelse"}
    assert da[0]["Regel"].startswith("P5: KSP litra a")
    for r in da:
        visible = " ".join(v for k, v in r.items() if k not in ("Pseudonym", "Besked-id", "Tidspunkt"))
        assert not RAW_CODE.search(visible), visible

    en = list(csv.DictReader(io.StringIO(
        cli(history, "subject", "report", CPR_A, "--format", "csv", "--lang", "en").stdout)))
    assert list(en[0])[:5] == ["pseudonym", "Time", "Sender", "Recipient", "Outcome"]
    assert {r["Outcome"] for r in en} == {"Allowed"} and {r["Purpose"] for r in en} == {"Release planning"}

    table = cli(history, "subject", "report", CPR_A)
    assert table.exit_code == 0, table.output
    assert "Registerindsigt" in table.stdout and "Tidspunkt" in table.stdout and "2 videregivet" in table.stdout
    assert "Kalundborg Kommune" in table.stdout and "kommune:326" not in table.stdout
    table_en = cli(history, "subject", "report", CPR_A, "--lang", "en")
    assert "Subject access report" in table_en.stdout and "2 disclosed" in table_en.stdout

    # JSON keeps the codes for machines and adds the labels.
    data = json.loads(cli(history, "subject", "report", p, "--format", "json", "--lang", "en").stdout)
    assert data["lang"] == "en" and data["erasures"] == []
    assert data["entries"][0]["recipient"] == "kommune:326"
    assert data["entries"][0]["labels"]["recipient"] == "Kalundborg Kommune"

    denied = list(csv.DictReader(io.StringIO(
        cli(history, "subject", "report", "0101801234", "--format", "csv").stdout)))
    assert [r["Udfald"] for r in denied] == ["Afvist"]
    assert denied[0]["Begrundelse"] == "Personen er ikke omfattet"

    bad = cli(history, "subject", "report", CPR_A, "--lang", "de")
    assert bad.exit_code == 2 and "--lang must be one of da, en" in bad.output

    # Every report above (six of them; not the refused one) is in the access log, as in the review app.
    logged = access_log(history)[before:]
    assert len(logged) == 6 and {(e.action, e.via, e.who) for e in logged} == {("subject_report", "cli", cli_user())}


def test_subject_report_says_when_the_subject_was_erased(history):
    p = history.pseudonym(CPR_A)
    history.ledger.erase_subject(p, "retten til sletning, sag 2026-17")
    table = cli(history, "subject", "report", p)
    assert table.exit_code == 0, table.output
    assert "Personen blev slettet" in table.stdout and "sag 2026-17" in table.stdout
    assert "2 videregivet" in table.stdout  # the register of disclosures remains
    en = cli(history, "subject", "report", p, "--lang", "en")
    assert "The subject was erased on" in en.stdout
    data = json.loads(cli(history, "subject", "report", p, "--format", "json").stdout)
    assert [e["reason"] for e in data["erasures"]] == ["retten til sletning, sag 2026-17"]
    as_csv = cli(history, "subject", "report", p, "--format", "csv")
    assert "Personen blev slettet" in as_csv.stderr and "slettet" not in as_csv.stdout
    other = json.loads(cli(history, "subject", "report", "0101801234", "--format", "json").stdout)
    assert other["erasures"] == []


def test_erasures_are_a_read_model_filled_in_for_read_models_from_before(history):
    """The subject report finds erasures in a read model (its cost does not grow with the ledger); read
    models projected by a release without that table get it filled from the log, and equal a replay."""
    from ledger.readmodels import ReadModels
    from services.audit import replay

    p = history.pseudonym(CPR_A)
    history.ledger.erase_subject(p, "sag 2026-18")
    models = ReadModels(history.ledger)
    models.catch_up()
    assert [r["reason"] for r in models.subject_erasures(p)] == ["sag 2026-18"]
    with history.ledger.tables.cursor() as c:
        c.execute(f"DROP TABLE {models.t('erasures')}")  # as an earlier release left them
    again = ReadModels(history.ledger)  # the new release starting
    rows = again.subject_erasures(p)
    assert [(r["subject"], r["reason"]) for r in rows] == [(p, "sag 2026-18")]
    assert ReadModels(history.ledger).subject_erasures(p) == rows  # once only
    assert replay(history.ledger).equal
