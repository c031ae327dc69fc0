"""Read models, replay, re-evaluation, policy impact and subject reports over real recorded exchanges, on both backends."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ledger.application import IntegrityError
from ledger.domain import Exchange
from ledger.readmodels import ReadModels
from policies.bundle import BUNDLE_DIR, load_bundle
from services.audit import (
    Redecider, impact, load_bundles, reevaluate, replay, resolve_subject, subject_report,
)
from tests.audit.history import CPR_A, CPR_B, KSP_SENDER, NOW, History, build_history

runner = CliRunner()


@pytest.fixture
def history(ledger_url) -> History:
    h = build_history(ledger_url)
    yield h
    h.rt.close()


def redecider(h: History) -> Redecider:
    return Redecider(h.ledger, h.settings.master_key, h.rt.pseudonym_secret, h.rt.keyset)


def cli(h: History, *args: str):
    from services.cli import app

    return runner.invoke(app, list(args), env={"XLEDGER_LEDGER_URL": h.settings.ledger_url})


def review(h: History, label: str, action: str, **extra) -> None:
    from ledger.domain import exchange_id

    ex = h.ledger.get_exchange(exchange_id(KSP_SENDER[0], h.sent[label]))
    ex.review({"action": action, "reviewer": "lo1", "recipient": None, "reason": "", "note": "", **extra})
    h.ledger.record([ex])


# -- read models ---------------------------------------------------------------------------------


def test_read_models_project_every_decision_once(history):
    models = ReadModels(history.ledger)
    consumed = models.catch_up()
    assert consumed == history.ledger.max_notification_id()
    assert models.position() == history.ledger.max_notification_id()
    assert models.catch_up() == 0  # nothing twice
    decisions = {r["message_id"]: r for r in models.query("decisions")}
    assert len(decisions) == 5
    assert (decisions["msg-p5-21"]["outcome"], decisions["msg-p5-21"]["rule"]) == ("ALLOW", "P5")
    assert decisions["msg-deny-4y"]["reason"] == "DENY_SUBJECT_OUT_OF_SCOPE"
    assert decisions["msg-p5-21"]["policy_version"].startswith("sha256:")
    assert decisions["msg-p5-21"]["review_status"] == "PENDING"
    assert decisions["msg-p5-21"]["context"] == "KSP" and decisions["msg-p5-21"]["cooperation_id"] == "ksp:kalundborg"
    stats = {(r[1], r[2], r[3], r[4]): r[5] for r in models.rows("stats")}
    assert stats == {("KSP", "ALLOW", "P5", ""): 4, ("KSP", "DENY", "C3", "DENY_SUBJECT_OUT_OF_SCOPE"): 1}
    assert [r[1:] for r in models.rows("rejections")] == [("BAD_MARKER", 1)]
    assert len(models.subject_register(history.pseudonym(CPR_A))) == 2

    review(history, "p5-21", "OVERTURN", reason="necessity not shown")
    review(history, "p5-60", "NOTE", note="see file")
    assert models.catch_up() == 2
    decisions = {r["message_id"]: r for r in models.query("decisions")}
    assert (decisions["msg-p5-21"]["review_status"], decisions["msg-p5-21"]["review_count"]) == ("OVERTURNED", 1)
    assert (decisions["msg-p5-60"]["review_status"], decisions["msg-p5-60"]["review_count"]) == ("PENDING", 1)


def test_a_page_is_projected_in_one_transaction_with_its_tracking_record(history):
    models = ReadModels(history.ledger)
    models.catch_up()
    before = {t: models.rows(t) for t in ("decisions", "stats", "disclosures")}
    page = history.ledger.notifications(1, 1000)
    with pytest.raises(IntegrityError):
        models._apply_page(page)  # a second process projecting the same page
    assert {t: models.rows(t) for t in before} == before  # rolled back: no duplicate rows, no double counts
    # A second instance (another process) catching up concurrently finds nothing left to do.
    assert ReadModels(history.ledger).catch_up() == 0


# -- replay --------------------------------------------------------------------------------------


def test_replay_equals_live_and_detects_a_tampered_read_model(history):
    review(history, "p5-85", "FLAG", reason="check release date")
    ReadModels(history.ledger).catch_up()
    report = replay(history.ledger)
    assert report.compared and report.equal, report.diffs
    assert {d.table: d.replayed for d in report.diffs}["decisions"] == 5
    # The rebuilt tables are dropped again.
    assert not history.ledger.tables.fetchall(
        "SELECT 1 FROM xl_rm_decisions WHERE message_id = 'nope'")  # live still there
    with history.ledger.tables.cursor() as c:
        c.execute("UPDATE xl_rm_decisions SET outcome = 'ALLOW' WHERE message_id = 'msg-deny-4y'")
    report = replay(history.ledger)
    diff = {d.table: d for d in report.diffs}["decisions"]
    assert not report.equal and len(diff.only_live) == 1 and len(diff.only_replayed) == 1


def test_replay_until_a_time_rebuilds_the_past_only(history):
    # An exchange that says it occurred long after it was recorded.
    later = datetime.now(timezone.utc) + timedelta(days=400)
    history.add("late", CPR_B, 10, 37, at=later)
    all_entries = history.ledger.max_notification_id()
    # every event so far carries the recording time (now); a cut before the first sees nothing
    first_ts = history.ledger.mapper.to_domain_event(history.ledger.notifications(1, 1)[0]).timestamp
    report = replay(history.ledger, until=first_ts - timedelta(seconds=1))
    assert report.consumed == 0 and not report.compared
    report = replay(history.ledger, until=datetime.now(timezone.utc) + timedelta(days=1))
    assert report.consumed == all_entries
    assert {d.table: d.replayed for d in report.diffs}["decisions"] == 6
    # The cut is on recording time, not on the exchange's own date: a cut before the day the
    # late exchange claims still holds it, because it was recorded before the cut.
    before_its_date = replay(history.ledger, until=later - timedelta(days=1), keep=True)
    assert before_its_date.consumed == all_entries
    with history.ledger.tables.cursor(commit=False) as c:
        c.execute(f"SELECT occurred_at FROM {before_its_date.prefix}decisions WHERE message_id = 'msg-late'")
        [(occurred_at,)] = c.fetchall()
    assert datetime.fromisoformat(occurred_at) > later - timedelta(days=1)


def test_replay_cli_reports_equal(history):
    result = cli(history, "replay", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["equal"] is True and data["entries"] == history.ledger.max_notification_id()
    table = cli(history, "replay")
    assert table.exit_code == 0 and "replay equals the live read models" in table.stdout
    assert cli(history, "replay", "--until", "yesterday").exit_code == 2


# -- re-evaluation -------------------------------------------------------------------------------


def test_reevaluate_finds_nothing_in_a_healthy_ledger(history):
    report = reevaluate(history.ledger, redecider(history), load_bundles())
    assert report.ok and report.checked == 5 and report.agreeing == 5
    result = cli(history, "audit", "reevaluate")
    assert result.exit_code == 0, result.output
    assert "5 agree, 0 differ" in " ".join(result.stdout.split())


def test_reevaluate_finds_a_planted_divergence_and_skips_erased_subjects(history):
    from schemas.cpr import pseudonym

    # A genuine request recorded with a wrong outcome, as the Requested and Decided events of an older ledger.
    from services.demo import release_notice

    value = history.signed(release_notice(NOW.date(), cpr=CPR_B, name="X", release_in_days=2000, age=37),
                           message_id="msg-planted")
    from services.gate import Inbound

    real = history.rt.pipeline().process(Inbound("exchange.requests", 0, 99, value))
    assert real.decision["results"][0]["outcome"] == "DENY"
    forged = copy.deepcopy(real.decision)
    forged["results"][0].update(outcome="ALLOW", rule="P5", reason=None, citation="rpl § 115, stk. 1, nr. 3, litra a")
    planted = Exchange(sender=real.sender, message_id=real.message_id, source=real.source, summary=real.summary,
                       subject=real.subject, message_digest=real.message_digest, sealed_message=real.sealed_message)
    planted.decide(forged)
    history.ledger.record([planted])

    # One subject exercised the right to erasure.
    erased = pseudonym("0101801234", history.rt.pseudonym_secret)
    history.rt.sealer.erase(erased)

    report = reevaluate(history.ledger, redecider(history), load_bundles())
    assert not report.ok
    assert {d.message_id for d in report.divergent} == {"msg-planted"}
    fields = {d.field for d in report.divergent}
    assert {"outcome", "rule", "reason"} <= fields
    assert [e["message_id"] for e in report.not_reevaluable] == ["msg-deny-4y"]
    assert report.errors == []

    result = cli(history, "audit", "reevaluate", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert {d["message_id"] for d in data["divergent"]} == {"msg-planted"}
    assert data["not_reevaluable"][0]["reason"] == "SUBJECT_ERASED"


def test_reevaluate_reports_an_unknown_policy_version_as_an_error(history):
    from policies.bundle import BundleSet

    other = load_bundle(_shrunk_bundle(Path(history.settings.ledger_url.split("///")[-1]).parent
                                       if history.settings.ledger_url.startswith("sqlite") else Path("/tmp")))

    class Only:
        def by_version(self, v):
            return other if v == other.version else None

    report = reevaluate(history.ledger, redecider(history), Only())
    assert len(report.errors) == 5 and report.errors[0]["error"] == "UNKNOWN_POLICY_VERSION"
    assert BundleSet.load().by_version(other.version) is None


# -- policy impact -------------------------------------------------------------------------------


def _shrunk_bundle(where: Path, before: int = 30, after: int = 30) -> Path:
    data = yaml.safe_load((BUNDLE_DIR / "dk-115-2026.yaml").read_text(encoding="utf-8"))
    data["cooperations"]["KSP"]["release_window"] = {"before_days": before, "after_days": after}
    data["name"] = "dk-115-2026-short-window"
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"short-window-{before}-{after}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_impact_of_a_shorter_ksp_release_window_flips_p5_near_the_edge(history, tmp_path):
    proposed = load_bundle(_shrunk_bundle(tmp_path))
    report = impact(history.ledger, redecider(history), proposed)
    assert report.requests == 5 and report.decisions == 5
    groups = report.groups("flips")
    assert len(groups) == 1
    g = groups[0]
    assert g["from"] == {"outcome": "ALLOW", "rule": "P5", "reason": ""}
    assert g["to"]["outcome"] == "DENY" and g["to"]["reason"] == "DENY_SUBJECT_OUT_OF_SCOPE"
    assert sorted(g["examples"]) == ["msg-p5-60", "msg-p5-85"]
    assert report.unchanged == 3

    # The shipped bundle changes nothing.
    same = impact(history.ledger, redecider(history), load_bundles().bundles[0])
    assert same.flipped == 0 and same.changed == 0

    result = cli(history, "policy", "impact", "--bundle", str(_shrunk_bundle(tmp_path)), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["flipped"] == 2 and sorted(data["flips"][0]["examples"]) == ["msg-p5-60", "msg-p5-85"]
    assert "1203911234" not in result.stdout and "Test Person" not in result.stdout
    text = cli(history, "policy", "impact", "--bundle", str(_shrunk_bundle(tmp_path)))
    assert text.exit_code == 0 and "2 would flip outcome" in text.stdout
    later = cli(history, "policy", "impact", "--bundle", str(_shrunk_bundle(tmp_path)), "--since", "2026-03-11", "--json")
    assert json.loads(later.stdout)["requests"] == 0
    assert cli(history, "policy", "impact", "--bundle", str(tmp_path / "missing.yaml")).exit_code == 2
    assert cli(history, "policy", "impact", "--bundle", str(_shrunk_bundle(tmp_path)), "--since", "x").exit_code == 2


# -- subject report ------------------------------------------------------------------------------


def test_subject_report_by_cpr_or_pseudonym_never_prints_the_cpr(history):
    p = history.pseudonym(CPR_A)
    assert resolve_subject(CPR_A, history.rt.pseudonym_secret) == p
    assert resolve_subject(p.upper(), history.rt.pseudonym_secret) == p
    report = subject_report(history.ledger, p)
    assert sorted(e["message_id"] for e in report["entries"]) == ["msg-p5-21", "msg-p5-85"]
    assert report["disclosed"] == 2 and report["recipients"] == ["kommune:326"]
    assert report["entries"][1]["citation"] == "rpl § 115, stk. 1, nr. 3, litra a"

    for fmt in ("table", "csv", "json"):
        result = cli(history, "subject", "report", CPR_A, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert CPR_A not in result.output and "120391" not in result.output
        assert "msg-p5-21" in result.output
    data = json.loads(cli(history, "subject", "report", p, "--format", "json").stdout)
    assert data["subject"] == p and len(data["entries"]) == 2
    rows = list(csv.DictReader(io.StringIO(cli(history, "subject", "report", p, "--format", "csv").stdout)))
    assert {r["Udfald"] for r in rows} == {"Tilladt"} and rows[0]["Pseudonym"] == p

    denied = json.loads(cli(history, "subject", "report", "0101801234", "--format", "json").stdout)
    assert denied["denied"] == 1 and denied["disclosed"] == 0

    bad = cli(history, "subject", "report", "3213991234")
    assert bad.exit_code == 2 and "3213991234" not in bad.output
    assert cli(history, "subject", "report", CPR_A, "--format", "xml").exit_code == 2
