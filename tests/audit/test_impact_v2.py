"""Version 2 over a ledger of version-1 decisions: what would change, by rule and reason; and
re-evaluation reproduces every recorded decision under its own version, on both back-ends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from policies.bundle import BundleSet
from services.audit import Redecider, impact, impact_summary, load_bundles, reevaluate
from services.demo import KSP_SENDER
from services.simulation import CASE_NOTE, CONCERN, POLICE, RELEASE, _case_note, _concern, _release
from tests.audit.history import History, build_history

CET = timezone(timedelta(hours=1))
V1_DAY = datetime(2026, 11, 25, 10, 0, tzinfo=CET)
V2_DAY = datetime(2027, 1, 12, 10, 0, tzinfo=CET)
SOCIAL_ADULT = ("kommune:326", "MUNI_SOCIAL_ADULT")
SCHOOL = ("kommune:326", "MUNI_SCHOOL")
YOUTH_CLUB = ("kommune:326", "MUNI_OTHER")
MENTOR = ("privat:mentorhuset-test", "PRIVATE_ENTITY")
NECESSARY = "Nødvendigt for at koordinere en tidlig forebyggende indsats."


def onward(cpr: str, day: datetime) -> dict:
    return dict(payload_type=CASE_NOTE, payload=_case_note(cpr, "Syntetisk", day.date(), "Socialforvaltningen", health=True),
                recipients=[("kommune:326", "MUNI_JOBCENTER")], context="NONE", purpose="OTHER_ADMIN",
                subject={"age": 41}, data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE", "HEALTH"],
                provenance={"exchange_id": None, "context": "PSP", "purpose": "PREVENTIVE_COORDINATION"})


def plan(day: datetime):
    """(label, sender, request, v1 outcome/rule, v2 outcome/rule)"""
    release_far = day.date() + timedelta(days=200)
    release_near = day.date() + timedelta(days=21)
    ksp = lambda cpr, rel: dict(  # noqa: E731
        payload_type=RELEASE, payload=_release(cpr, "Syntetisk", rel), recipients=[("kommune:326", "MUNI_SOCIAL_ADULT")],
        context="KSP", cooperation_id="ksp:kalundborg", purpose="RELEASE_PLANNING",
        subject={"age": 38, "convicted": True, "custody_status": "IN_KIF_INSTITUTION", "release_date": rel},
        data_categories=["IDENTITY", "CRIMINAL", "RENT_PRIVATE", "HEALTH"], necessity=NECESSARY)
    return [
        ("onward-a", SOCIAL_ADULT, onward("1203911234", day)),
        ("onward-b", SOCIAL_ADULT, onward("0508882345", day)),
        ("no-basis", SCHOOL, dict(payload_type=CASE_NOTE, payload=_case_note("0101801234", "Syntetisk", day.date(), "Skolen"),
                                  recipients=[POLICE], context="NONE", purpose="OTHER_ADMIN", subject={"age": 15},
                                  data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE"])),
        ("ksp-200-days", KSP_SENDER, ksp("1203911234", release_far)),
        ("ksp-21-days", KSP_SENDER, ksp("0508882345", release_near)),
        ("private-notifies", MENTOR, dict(
            payload_type=CONCERN, payload=_concern("0101101234", "Syntetisk", "OTHER", "Bekymring for barnet."),
            recipients=[("kommune:326", "MUNI_SOCIAL_CHILD")], context="UNDERRETNING",
            purpose="CHILD_WELFARE_NOTIFICATION", subject={"age": 12},
            data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE"])),
        ("youth-club-in-ssp", YOUTH_CLUB, dict(
            payload_type=CASE_NOTE, payload=_case_note("0101101234", "Syntetisk", day.date(), "Ungdomsklubben"),
            recipients=[POLICE], context="SSP", cooperation_id="ssp:kalundborg", purpose="PREVENTIVE_COORDINATION",
            subject={"age": 14}, data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE"], necessity=NECESSARY)),
    ]


@pytest.fixture
def history(ledger_url) -> History:
    h = build_history(ledger_url, plan=[])
    for label, sender, request in plan(V1_DAY):
        got = h.record(h.signed(request, message_id=f"v1-{label}", org_role=sender, at=V1_DAY))
        assert got.decision is not None, (label, getattr(got, "reason", None), getattr(got, "detail", None))
    yield h
    h.rt.close()


def test_version_2_impact_over_version_1_decisions(history):
    v1, v2 = BundleSet.load().bundles
    report = impact(history.ledger, redecider(history), v2, known=load_bundles())
    assert (report.requests, report.decisions, report.recorded_under) == (7, 7, {"dk-115-2026": 7})
    flips = {(_t(g["from"]), _t(g["to"])): (g["count"], sorted(g["examples"])) for g in report.groups("flips")}
    assert flips == {
        ("DENY H3 DENY_ONWARD_PURPOSE_CHANGE", "ESCALATE H3 ESCALATE_ONWARD_COMPATIBILITY"):
            (2, ["v1-onward-a", "v1-onward-b"]),
        ("DENY D0 DENY_NO_LEGAL_BASIS", "ESCALATE D0 ESCALATE_NO_BASIS_FOUND"): (1, ["v1-no-basis"]),
        ("DENY C3 DENY_SUBJECT_OUT_OF_SCOPE", "ALLOW P5"): (1, ["v1-ksp-200-days"]),
        ("DENY A2 DENY_NO_LEGAL_BASIS", "ALLOW A2"): (1, ["v1-private-notifies"]),
        ("DENY C2 DENY_ROLE_NOT_IN_COOPERATION", "ALLOW P2"): (1, ["v1-youth-club-in-ssp"]),
    }
    assert report.groups("flips")[0]["count"] == 2  # largest group first
    assert report.unchanged == 1 and report.changed == 0
    first = report.groups("flips")[0]["example_decisions"][0]
    assert first["recipient"] == "kommune:326" and first["occurred_on"] == "2026-11-25"
    lines = impact_summary(report)
    assert lines[0].startswith("policy impact of dk-115-2026-12-15 (effective 2026-12-15")
    assert "recorded 7 under dk-115-2026" in lines[0] and "exchanges of 2026-11-25 – 2026-11-25" in lines[0]
    assert "     2  DENY H3 DENY_ONWARD_PURPOSE_CHANGE  →  ESCALATE H3 ESCALATE_ONWARD_COMPATIBILITY" in lines

    # the same from the command line, naming the shipped bundle
    from services.cli import app

    env = {"XLEDGER_LEDGER_URL": history.settings.ledger_url}
    res = CliRunner().invoke(app, ["policy", "impact", "--bundle", "dk-115-2026-12-15"], env=env)
    assert res.exit_code == 0, res.output
    assert "6 would flip outcome" in res.stdout and "v1-onward-a → kommune:326 (2026-11-25)" in res.stdout
    res = CliRunner().invoke(app, ["policy", "impact", "--bundle", "dk-115-2026-12-15", "--json"], env=env)
    data = json.loads(res.stdout)
    assert data["flipped"] == 6 and data["recorded_under"] == {"dk-115-2026": 7}
    assert "1203911234" not in res.stdout and "Syntetisk" not in res.stdout
    res = CliRunner().invoke(app, ["policy", "impact", "--bundle", "dk-115-2099"], env=env)
    assert res.exit_code == 2 and "dk-115-2026-12-15" in res.stderr


def test_each_recorded_decision_is_reproduced_under_its_own_version(history):
    # the same requests again, dated in version 2's time: a ledger of both versions
    for label, sender, request in plan(V2_DAY):
        history.record(history.signed(request, message_id=f"v2-{label}", org_role=sender, at=V2_DAY))
    v1, v2 = BundleSet.load().bundles
    versions = {}
    for n in history.ledger.notifications(1, 10_000):
        if n.topic.endswith("Exchange.RequestDecided"):
            versions[n.originator_id] = history.ledger.mapper.to_domain_event(n).decision["policy_version"]
    assert sorted(set(versions.values())) == sorted({v1.version, v2.version})
    report = reevaluate(history.ledger, redecider(history), load_bundles())
    assert report.ok and report.checked == report.agreeing == 14
    assert report.reviewed["OPEN"] == 3  # version 2 escalated the two onward cases and the one without a basis


def redecider(h: History) -> Redecider:
    return Redecider(h.ledger, h.settings.master_key, h.rt.pseudonym_secret, h.rt.keyset)


def _t(g: dict) -> str:
    return " ".join(x for x in (g["outcome"], g["rule"], g["reason"]) if x)
