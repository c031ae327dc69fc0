"""Every shipped scenario case through the engine (one test per case) and the CLI."""
from __future__ import annotations

import json
from datetime import date, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policies.engine import PolicyEngine
from policies.scenarios import load_scenarios
from services.cli.policy import app

CASES = Path(__file__).resolve().parents[2] / "policies" / "cases"
FILES = sorted(CASES.glob("*.yaml"))
ENGINE = PolicyEngine.load_default()
ALL = [(f.name, sc) for f in FILES for sc in load_scenarios(f)]


V2_EFFECTIVE = date(2026, 12, 15)


def test_at_least_100_cases_and_15_worked_examples():
    assert len(ALL) >= 100
    assert len(load_scenarios(CASES / "worked-examples.yaml")) == 15


def test_at_least_60_version_2_cases_and_both_sides_of_the_date_boundary():
    v2 = [sc for f, sc in ALL if f.startswith("v2-")]
    assert len(v2) >= 60
    dates = {sc.request.occurred_at.date() for sc in v2}
    assert {date(2026, 12, 14), date(2026, 12, 15)} <= dates
    # the offset cases: the local date and the UTC date lie on different sides of the boundary
    split = {sc.id for sc in v2 if (sc.request.occurred_at.date() >= V2_EFFECTIVE)
             != (sc.request.occurred_at.astimezone(timezone.utc).date() >= V2_EFFECTIVE)}
    assert len(split) >= 2, split
    for f, sc in ALL:
        version = ENGINE.decide(sc.request, sc.present_categories).policy_version
        name = ENGINE.bundles.by_version(version).name
        assert (name == "dk-115-2026-12-15") == (sc.request.occurred_at.date() >= V2_EFFECTIVE), sc.id


def _always_carried(payload_type: str) -> set[str]:
    """Categories every payload of this record holds: its required, non-null, non-list fields."""
    from schemas.registry import default_registry

    def walk(rec: dict) -> set[str]:
        out: set[str] = set()
        for f in rec.get("fields", []):
            t = f["type"]
            if "default" in f or isinstance(t, list) or (isinstance(t, dict) and t.get("type") in ("array", "map")):
                continue
            if f.get("x-category"):
                out.add(f["x-category"])
            if isinstance(t, dict) and t.get("type") == "record":
                out |= walk(t)
        return out

    return walk(default_registry().latest(payload_type).raw)


def test_worked_examples_declare_what_a_real_payload_carries():
    worked = load_scenarios(CASES / "worked-examples.yaml")
    assert all(sc.payload_type for sc in worked)
    typed = [sc for _, sc in ALL if sc.payload_type]
    assert _always_carried("dk.xledger.payload.ReleaseNotice") >= {"IDENTITY", "CRIMINAL"}
    for sc in typed:
        missing = _always_carried(sc.payload_type) - set(sc.request.data_categories)
        assert not missing, f"{sc.id}: a {sc.payload_type} always carries {sorted(missing)}"


@pytest.mark.parametrize("fname,sc", ALL, ids=[f"{f}::{sc.id}" for f, sc in ALL])
def test_case(fname, sc):
    dec = ENGINE.decide(sc.request, sc.present_categories)
    assert sc.expected is not None, "every shipped case has an expectation"
    for r in dec.results:
        exp = sc.expected.for_recipient(r.recipient)
        assert exp is not None, f"no expectation for {r.recipient}"
        assert exp.mismatches(r) == []
        if r.outcome == "ALLOW":
            assert r.reason is None
        else:
            assert r.reason is not None
        assert r.citation
        assert r.trace and r.trace[0].step == "C7"


@pytest.mark.parametrize("bundle", [b.name for b in ENGINE.bundles.bundles])
def test_every_reason_code_and_rule_is_covered(bundle):
    reasons, rules, warnings = set(), set(), set()
    b = next(x for x in ENGINE.bundles.bundles if x.name == bundle)
    for _, sc in ALL:
        dec = ENGINE.decide(sc.request, sc.present_categories)
        if dec.policy_version != b.version:
            continue
        for r in dec.results:
            reasons.add(r.reason)
            rules.add(r.rule)
            warnings.update(r.warnings)
            if r.via:
                rules.add(r.via)
    codes = {s.reason for s in b.checks.values() if s.reason}
    assert codes <= reasons, codes - reasons
    for rule in ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "A1", "A2", "A3",
                 "E1", "E2", "H1", "H2", "H3", "C1", "C2", "C3", "C4", "C5", "C7", "C8", "D0"]:
        assert rule in rules, rule
    assert b.warning.code in warnings
    if b.warning_consent is not None:
        assert b.warning_consent.code in warnings


runner = CliRunner()


@pytest.mark.parametrize("f", FILES, ids=[f.name for f in FILES])
def test_cli_check_shipped_files_exit_0(f):
    res = runner.invoke(app, ["check", str(f), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert lines
    assert set(lines[0]) == {"case", "recipient", "outcome", "rule", "via", "reason",
                             "citation", "warnings", "policy_version"}


def test_cli_table_output():
    res = runner.invoke(app, ["check", str(CASES / "worked-examples.yaml")])
    assert res.exit_code == 0
    assert "we-07-ksp-litra-a-release-3-weeks" in res.stdout


def test_cli_wrong_expectation_exits_1(tmp_path):
    text = (CASES / "worked-examples.yaml").read_text(encoding="utf-8")
    text = text.replace("expected: {outcome: ALLOW, rule: P5}", "expected: {outcome: ALLOW, rule: P6}")
    f = tmp_path / "wrong.yaml"
    f.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["check", str(f), "--json"])
    assert res.exit_code == 1
    assert "we-07-ksp-litra-a-release-3-weeks" in res.stderr
    assert "rule P5 != expected P6" in res.stderr


def test_cli_multi_recipient_wrong_expectation_exits_1(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text((CASES / "orgs-multi.yaml").read_text(encoding="utf-8").replace(
        "kommune:751: {outcome: DENY, rule: C1", "kommune:751: {outcome: DENY, rule: C2"),
        encoding="utf-8")
    res = runner.invoke(app, ["check", str(f)])
    assert res.exit_code == 1
    assert "og-11-multi-recipient-mixed → kommune:751" in res.stderr


BAD = """
- id: bad-one
  occurred_at: 2026-06-10T10:00:00+02:00
  sender: politikreds:fyn
  recipients: [{org: kommune:461, role: MUNI_SSP_UNIT}]
  context: SSP
  cooperation_id: ssp:odense
  purpose: PREVENTIVE_COORDINATION
  subject: {age: 15, custody_status: IN_PRISON}
  data_categories: [IDENTITY]
  expected: {outcome: ALLOW, rule: P1}
"""


@pytest.mark.parametrize("text,field", [
    (BAD, "subject.custody_status"),
    (BAD.replace("  cooperation_id: ssp:odense\n", "").replace("IN_PRISON", "NONE"), "cooperation_id"),
    (BAD.replace("custody_status: IN_PRISON", "custody_status: NONE")
        .replace("role: MUNI_SSP_UNIT", "role: MAYOR"), "recipients[0].role"),
    (BAD.replace("custody_status: IN_PRISON", "custody_status: NONE")
        .replace("data_categories: [IDENTITY]", "data_categories: []"), "data_categories"),
    (BAD.replace("custody_status: IN_PRISON", "custody_status: NONE")
        .replace("{org: kommune:461, role: MUNI_SSP_UNIT}", "kommune:461"), "recipients[0]"),
    (BAD.replace("custody_status: IN_PRISON", "custody_status: NONE")
        .replace("T10:00:00+02:00", "T10:00:00"), "occurred_at"),
    (BAD.replace("custody_status: IN_PRISON", "custody_status: NONE")
        .replace("outcome: ALLOW", "outcome: MAYBE"), "expected.outcome"),
])
def test_cli_invalid_input_exits_2(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["check", str(f)])
    assert res.exit_code == 2, res.output
    msg = res.stderr.strip()
    assert len(msg.splitlines()) == 1
    assert "bad-one" in msg and repr(field) in msg, msg
    assert res.stdout == ""


def test_cli_explain_danish_trace():
    res = runner.invoke(app, ["explain", str(CASES / "worked-examples.yaml")])
    assert res.exit_code == 0
    out = res.stdout
    assert "C2 Afsenders rolle er omfattet af samarbejdet (rpl § 115, stk. 1-3): opfyldt" in out
    assert "P5 Hjemmel for videregivelsen (rpl § 115, stk. 1, nr. 3, litra a): opfyldt" in out
    assert "AFVIST" in out and "TILLADT" in out


def test_cli_help():
    for args in (["--help"], ["check", "--help"], ["explain", "--help"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.stdout


def test_cli_bundle_option(tmp_path):
    src = (Path(__file__).resolve().parents[2] / "policies" / "bundles" / "dk-115-2026.yaml")
    f = tmp_path / "b.yaml"
    f.write_text(src.read_text(encoding="utf-8").replace("min_length: 20", "min_length: 200"),
                 encoding="utf-8")
    res = runner.invoke(app, ["check", str(CASES / "worked-examples.yaml"), "--bundle", str(f)])
    assert res.exit_code == 1  # necessity now too short everywhere
    bad = tmp_path / "broken.yaml"
    bad.write_text(src.read_text(encoding="utf-8").replace("min_length: 20", "min_length: -1"),
                   encoding="utf-8")
    res = runner.invoke(app, ["check", str(CASES / "worked-examples.yaml"), "--bundle", str(bad)])
    assert res.exit_code == 2 and "necessity.min_length" in res.stderr


def test_rules_document_is_generated_from_the_bundles_and_current():
    """docs/rules.md is what `xledger policy docs` writes from the shipped bundles."""
    from policies.bundle import BundleSet
    from policies.rulesdoc import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
    bundles = BundleSet.load().bundles
    assert doc.read_text(encoding="utf-8") == render(bundles), \
        "docs/rules.md is stale: run `xledger policy docs` and commit it"
    text = doc.read_text(encoding="utf-8")
    for b in bundles:
        assert f"## Version `{b.name}`" in text and b.version in text
        for slot, spec in b.checks.items():
            assert spec.name in text, (b.name, slot)
            if spec.reason:
                assert f"`{spec.reason}`" in text and b.check_citation(slot) in text, (b.name, slot)
        for rule, citation in b.citations.items():
            assert citation in text, (b.name, rule)
    res = runner.invoke(app, ["docs", "--check", "--output", str(doc)])
    assert res.exit_code == 0, res.output


def test_policy_docs_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "rules.md"
    stale.write_text("# old rules\n", encoding="utf-8")
    res = runner.invoke(app, ["docs", "--check", "--output", str(stale)])
    assert res.exit_code == 1 and "stale" in res.stderr
    res = runner.invoke(app, ["docs", "--output", str(stale)])
    assert res.exit_code == 0
    res = runner.invoke(app, ["docs", "--check", "--output", str(stale)])
    assert res.exit_code == 0


def test_cli_explain_shows_both_versions():
    res = runner.invoke(app, ["explain", str(CASES / "v2-date-boundary.yaml")])
    assert res.exit_code == 0
    out = res.stdout
    assert "Regelsæt dk-115-2026 (gælder fra 2026-01-01)" in out
    assert "Regelsæt dk-115-2026-12-15 (gælder fra 2026-12-15)" in out
    assert "TIL MANUEL VURDERING (H3; databeskyttelsesforordningen art. 5, stk. 1, litra b" in out
    assert "Afventer juridisk kontrol" in out
    res = runner.invoke(app, ["check", str(CASES / "v2-date-boundary.yaml")])
    assert res.exit_code == 0
    assert "(dk-115-2026, from 2026-01-01)" in res.stdout and "(dk-115-2026-12-15, from 2026-12-15)" in res.stdout
