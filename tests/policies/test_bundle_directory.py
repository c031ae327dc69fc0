from __future__ import annotations

import ast
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from policies.bundle import BUNDLE_DIR, BundleError, BundleSet, bundle_from_data, load_bundle
from policies.directory import Directory

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = BUNDLE_DIR / "dk-115-2026.yaml"


def _data():
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def _write(tmp_path, data, name="b.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def test_shipped_bundle_loads():
    b = load_bundle(SHIPPED)
    assert b.effective_from == date(2026, 1, 1)
    assert b.version.startswith("sha256:") and len(b.version) == 71
    assert b.necessity_min == 20 and b.consent_min_age == 15 and b.custody_age_below == 18
    assert b.coops["KSP"].window_before == 90 and b.coops["KSP"].window_after == 90


@pytest.mark.parametrize("mutate,path,what", [
    (lambda d: d["cooperations"]["SSP"]["roles"].__setitem__(3, "MAYOR"),
     "cooperations.SSP.roles[3]", "Input should be"),
    (lambda d: d.__setitem__("surprise", 1), "surprise", "Extra inputs are not permitted"),
    (lambda d: d["cooperations"]["KSP"]["release_window"].__setitem__("before_days", -1),
     "cooperations.KSP.release_window.before_days", "greater than or equal"),
    (lambda d: d["citations"].pop("P5"), "citations", "'P5' has no citation"),
    (lambda d: d["checks"].pop("C3"), "checks.C3", "missing check"),
    (lambda d: d["cooperations"]["KSP"]["rules"][0].__setitem__("scope", "litra z"),
     "cooperations.KSP.rules[0].scope", "unknown subject scope"),
    (lambda d: d.__setitem__("effective_from", "someday"), "effective_from", "date"),
])
def test_bundle_error_names_file_path_and_problem(tmp_path, mutate, path, what):
    d = _data()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(BundleError) as ei:
        load_bundle(p)
    msg = str(ei.value)
    assert str(p) in msg and f": {path}: " in msg and what in msg, msg
    assert ei.value.path == path


def test_bundle_not_yaml(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: [1,\n", encoding="utf-8")
    with pytest.raises(BundleError) as ei:
        load_bundle(p)
    assert str(p) in str(ei.value)


def test_policy_version_stable_and_sensitive(tmp_path):
    v1 = load_bundle(SHIPPED).version
    assert load_bundle(SHIPPED).version == v1
    # comments / key order / formatting do not change the version
    assert load_bundle(_write(tmp_path, _data(), "same.yaml")).version == v1
    d = _data()
    d["necessity"]["min_length"] = 21
    assert load_bundle(_write(tmp_path, d, "changed.yaml")).version != v1
    d = _data()
    d["cooperations"]["SSP"]["roles"].remove("MUNI_JOBCENTER")
    assert bundle_from_data(d).version != v1


def test_bundle_set_in_force(tmp_path):
    d = _data()
    d["effective_from"] = date(2027, 1, 1)
    d["name"] = "dk-115-2027"
    d["necessity"]["min_length"] = 30
    b26 = load_bundle(SHIPPED)
    b27 = load_bundle(_write(tmp_path, d))
    bs = BundleSet([b27, b26])
    cet = timezone(timedelta(hours=1))
    assert bs.in_force(datetime(2026, 12, 31, 23, 59, tzinfo=cet)) is b26
    assert bs.in_force(datetime(2027, 1, 1, 0, 0, tzinfo=cet)) is b27
    # exchange date is the date in the timestamp's own offset
    assert bs.in_force(datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) is b26
    assert bs.in_force(datetime(2025, 12, 31, 12, tzinfo=cet)) is None
    assert bs.in_force(date(2030, 1, 1)) is b27
    with pytest.raises(BundleError):
        BundleSet([b26, load_bundle(SHIPPED)])


def test_engine_picks_bundle_by_exchange_date(tmp_path):
    from policies.engine import PolicyEngine
    from policies.model import ExchangeRequest
    d = _data()
    d["effective_from"] = date(2027, 1, 1)
    d["necessity"]["min_length"] = 200
    eng = PolicyEngine(BundleSet([load_bundle(SHIPPED), load_bundle(_write(tmp_path, d))]),
                       Directory.load())
    base = dict(sender="politikreds:fyn", recipients=[{"org": "kommune:461", "role": "MUNI_SSP_UNIT"}],
                context="SSP", cooperation_id="ssp:odense", purpose="PREVENTIVE_COORDINATION",
                subject={"age": 15}, data_categories=["IDENTITY"],
                necessity="A sufficiently long justification text.")
    r26 = eng.decide(ExchangeRequest(id="a", occurred_at="2026-12-31T12:00:00+01:00", **base))
    r27 = eng.decide(ExchangeRequest(id="b", occurred_at="2027-01-01T12:00:00+01:00", **base))
    assert r26.results[0].rule == "P1"
    assert r27.results[0].reason == "DENY_NECESSITY_NOT_DOCUMENTED"
    assert r26.policy_version != r27.policy_version


# ------------------------------------------------------------------ directory

DIR = Directory.load()


def test_98_municipalities_with_unique_codes():
    m = DIR.municipalities()
    assert len(m) == 98
    codes = [o.code for o in m.values()]
    assert len(set(codes)) == 98 and all(len(c) == 3 and c.isdigit() for c in codes)
    for oid, o in m.items():
        assert oid == f"kommune:{o.code}"
        assert o.police_district in DIR.orgs and o.region in DIR.orgs
        assert {"MUNI_SOCIAL_CHILD", "MUNI_SOCIAL_ADULT", "MUNI_SCHOOL", "MUNI_SSP_UNIT",
                "MUNI_JOBCENTER", "MUNI_OTHER"} <= set(o.roles)
    names = {oid: o.name for oid, o in m.items()}
    assert names["kommune:101"].startswith("København")
    assert names["kommune:326"].startswith("Kalundborg")
    assert names["kommune:751"].startswith("Aarhus")
    assert names["kommune:851"].startswith("Aalborg")


def test_12_police_districts():
    pk = {k for k in DIR.orgs if k.startswith("politikreds:")}
    assert pk == {f"politikreds:{s}" for s in (
        "nordjylland", "ostjylland", "midt-vestjylland", "sydostjylland", "syd-sonderjylland",
        "fyn", "sydsjaelland-lolland-falster", "midt-vestsjaelland", "nordsjaelland",
        "kobenhavns-vestegn", "kobenhavn", "bornholm")}
    used = {o.police_district for o in DIR.municipalities().values()}
    assert used == pk
    assert DIR.org("kommune:326").police_district == "politikreds:midt-vestsjaelland"
    assert DIR.org("kommune:751").police_district == "politikreds:ostjylland"
    assert DIR.org("kommune:851").police_district == "politikreds:nordjylland"
    assert DIR.org("kommune:400").police_district == "politikreds:bornholm"


def test_regions_and_merger():
    regions = {k: v for k, v in DIR.orgs.items() if k.startswith("region:")}
    for r in regions.values():
        assert set(r.roles) == {"SOCIAL_PSYCH", "TREATMENT_PSYCH"}
    on26 = {k for k, v in regions.items() if v.valid_on(date(2026, 12, 31))}
    on27 = {k for k, v in regions.items() if v.valid_on(date(2027, 1, 1))}
    assert len(on26) == 5 and len(on27) == 4
    assert regions["region:hovedstaden"].valid_to == date(2026, 12, 31)
    assert regions["region:sjaelland"].valid_to == date(2026, 12, 31)
    assert regions["region:ostdanmark"].valid_from == date(2027, 1, 1)
    # PSP membership follows the merger
    assert DIR.is_member("region:hovedstaden", "psp:kobenhavn", date(2026, 12, 31))
    assert not DIR.is_member("region:hovedstaden", "psp:kobenhavn", date(2027, 1, 1))
    assert DIR.is_member("region:ostdanmark", "psp:kobenhavn", date(2027, 1, 1))
    assert not DIR.is_member("region:ostdanmark", "psp:kobenhavn", date(2026, 12, 31))


def test_cooperation_instances():
    for o in DIR.municipalities().values():
        for t in ("ssp", "psp", "ksp"):
            c = DIR.cooperation(f"{t}:{o.slug}")
            assert c is not None and c.type == t.upper()
    ksp = set(DIR.members("ksp:kalundborg"))
    # KSP: the district's police, the municipality, and Kriminalforsorgen incl. KiF of the district
    assert {"kommune:326", "politikreds:midt-vestsjaelland", "kriminalforsorgen:kif-midt-vestsjaelland",
            "kriminalforsorgen:jyderup"} <= ksp
    # Horserød Fængsel lies in Helsingør (Nordsjællands Politi): not Kalundborg's KSP partner
    assert "kriminalforsorgen:horserod" not in ksp
    assert "kriminalforsorgen:horserod" in DIR.members("ksp:helsingor")
    for d in {o.police_district for o in DIR.municipalities().values()}:
        assert DIR.cooperation("infohus:" + d.split(":")[1]) is not None
    assert DIR.max_age("ssp:aarhus") == 17 and DIR.max_age("ssp:kalundborg") is None
    for oid in ("pet:national", "udlaendingestyrelsen:national", "privat:mentorhuset-test",
                "rigspolitiet:national", "cde:national", "stuk:national", "viso:national"):
        assert oid in DIR


def test_policies_imports_only_allowed_modules():
    allowed_top = {"pydantic", "yaml", "policies", "__future__"}
    import sys
    std = set(sys.stdlib_module_names)
    for py in (ROOT / "policies").rglob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                assert top in allowed_top or top in std, f"{py}: imports {n}"


def test_engine_has_no_policy_literals():
    src = (ROOT / "policies" / "engine.py").read_text(encoding="utf-8")
    for lit in ('"POLICE"', '"MUNI_', '"SSP"', '"PSP"', '"KSP"', '"PREVENTIVE', '"THIRD_PARTY"',
                '"AGGREGATE', "90", '"P1"', '"P5"', '"DENY_'):
        assert lit not in src, lit


# ------------------------------------------------------------------ version 2 and bundle data

SHIPPED_V2 = BUNDLE_DIR / "dk-115-2026-12-15.yaml"
V1_VERSION = "sha256:013461e458a1cba49c905b1b8c16468b444c1850117ccbabb1a620d5814be243"


def _data_v2():
    return yaml.safe_load(SHIPPED_V2.read_text(encoding="utf-8"))


def test_version_1_keeps_the_policy_version_it_was_recorded_under():
    # Ledgers hold this version in every version-1 decision; re-evaluation looks the bundle up
    # by it. Fields added for version 2 are left out of the canonical JSON while absent.
    assert load_bundle(SHIPPED).version == V1_VERSION


def test_both_versions_ship_and_decide_by_exchange_date():
    bs = BundleSet.load()
    assert [(b.name, b.effective_from) for b in bs.bundles] == [
        ("dk-115-2026", date(2026, 1, 1)), ("dk-115-2026-12-15", date(2026, 12, 15))]
    v1, v2 = bs.bundles
    cet = timezone(timedelta(hours=1))
    assert bs.in_force(datetime(2026, 12, 14, 23, 59, 59, tzinfo=cet)) is v1
    assert bs.in_force(datetime(2026, 12, 15, 0, 0, tzinfo=cet)) is v2
    assert bs.in_force(datetime(2026, 12, 15, 0, 30, tzinfo=timezone(timedelta(hours=14)))) is v2
    assert bs.in_force(datetime(2026, 12, 14, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) is v1
    assert v2.steps[:4] == ("H2", "E1", "E2", "H1")
    assert (v2.coops["KSP"].window_before, v2.coops["KSP"].window_after) == (90, 365)
    assert v2.outcome["H3"] == v2.outcome["D0"] == "ESCALATE" and v1.outcome["H3"] == "DENY"
    assert v2.review.four_eyes_categories and not v1.review.four_eyes_categories


def test_version_1_stated_explicitly_decides_the_same(tmp_path):
    """The defaults of the new fields are exactly version 1's former hard-coded behaviour."""
    from policies.engine import PolicyEngine
    from policies.scenarios import load_scenarios

    d = _data()
    d["steps"] = ["H1", "H2", "E1", "E2", "A3", "A2", "H3", "SECTION_115", "D0"]
    d["checks"]["H3"]["invalid_consent"] = "STEP"
    d["checks"]["D0"]["invalid_consent"] = "A1"
    d["checks"]["E1"]["outcome"] = d["checks"]["E2"]["outcome"] = "ESCALATE"
    d["checks"]["H1"]["outcome"] = "DENY"
    d["cooperations"]["KSP"]["release_window"] = {"days_after_release": 90, "days_before_release": 90}
    explicit = load_bundle(_write(tmp_path, d))
    assert explicit.version != V1_VERSION
    a = PolicyEngine(BundleSet([load_bundle(SHIPPED)]), Directory.load())
    b = PolicyEngine(BundleSet([explicit]), Directory.load())
    n = 0
    for f in sorted((ROOT / "policies" / "cases").glob("*.yaml")):
        for sc in load_scenarios(f):
            if sc.request.occurred_at.date() >= date(2026, 12, 15):
                continue
            x = a.decide(sc.request, sc.present_categories).to_dict()
            y = b.decide(sc.request, sc.present_categories).to_dict()
            assert x["results"] == y["results"], sc.id
            n += 1
    assert n > 150


def test_a_third_version_is_data_only(tmp_path):
    """Step order, failure outcomes and the invalid-consent handling come from the bundle."""
    from policies.engine import PolicyEngine
    from policies.model import ExchangeRequest

    d = _data_v2()
    d["name"] = "dk-115-2028"
    d["effective_from"] = date(2028, 1, 1)
    d["steps"] = ["H1", "E1", "E2", "H2", "A3", "A2", "H3", "SECTION_115", "D0"]   # H1 absolute again
    d["checks"]["D0"].update(outcome="DENY", invalid_consent="A1")                  # D0 denies again
    d["checks"]["H2"]["outcome"] = "ESCALATE"                                       # network forum escalates
    d["cooperations"]["KSP"]["release_window"] = {"days_after_release": 30, "days_before_release": 180}
    eng = PolicyEngine(BundleSet(list(BundleSet.load().bundles) + [load_bundle(_write(tmp_path, d))]),
                       Directory.load())
    pet = dict(sender="politikreds:fyn", recipients=["pet:national"], context="SSP", cooperation_id="ssp:odense",
               purpose="CRIMINAL_INVESTIGATION", subject={"age": 20}, data_categories=["IDENTITY"],
               necessity="PET asks for the SSP's knowledge of contacts.")
    none = dict(sender={"org": "kommune:461", "role": "MUNI_SCHOOL"},
                recipients=[{"org": "politikreds:fyn", "role": "POLICE"}], context="NONE",
                purpose="OTHER_ADMIN", subject={"age": 15}, data_categories=["RENT_PRIVATE"], consent={})
    net = dict(sender="politikreds:fyn", recipients=[{"org": "kommune:461", "role": "MUNI_SSP_UNIT"}],
               context="INFOHUS_NETVAERK", cooperation_id="infohus:fyn", purpose="STATISTICS",
               data_categories=["IDENTITY"])
    ksp = dict(sender="kriminalforsorgen:kif-midt-vestsjaelland", recipients=[{"org": "kommune:326", "role": "MUNI_SOCIAL_ADULT"}],
               context="KSP", cooperation_id="ksp:kalundborg", purpose="RELEASE_PLANNING",
               data_categories=["IDENTITY", "CRIMINAL"], necessity="Housing must be ready at release.")

    def first(at, **kw):
        return eng.decide(ExchangeRequest(id="x", occurred_at=at, **kw)).results[0]

    assert (first("2027-06-01T10:00:00+02:00", **pet).rule, first("2028-06-01T10:00:00+02:00", **pet).rule) == ("E1", "H1")
    r2, r3 = first("2027-06-01T10:00:00+02:00", **none), first("2028-06-01T10:00:00+02:00", **none)
    assert (r2.outcome, r2.rule, r2.warnings) == ("ESCALATE", "D0", ["WARN_CONSENT_INVALID"])
    assert (r3.outcome, r3.rule, r3.reason) == ("DENY", "A1", "DENY_CONSENT_INVALID")
    r3 = first("2028-06-01T10:00:00+02:00", **net)
    assert (r3.outcome, r3.rule, r3.reason) == ("ESCALATE", "H2", "DENY_PERSONAL_DATA_IN_NETWORK_FORUM")
    subject = {"age": 40, "convicted": True, "custody_status": "IN_KIF_INSTITUTION"}
    assert first("2028-01-10T10:00:00+01:00", subject={**subject, "release_date": "2028-07-08"}, **ksp).rule == "P5"
    assert first("2028-01-10T10:00:00+01:00", subject={**subject, "release_date": "2028-07-09"}, **ksp).rule == "C3"


@pytest.mark.parametrize("mutate,path,what", [
    (lambda d: d["steps"].remove("H3"), "steps", "missing H3"),
    (lambda d: d["steps"].__setitem__(0, "H1"), "steps", "twice H1"),
    (lambda d: d.__setitem__("steps", ["D0", "H2", "E1", "E2", "H1", "A3", "A2", "H3", "SECTION_115"]),
     "steps", "D0 (no basis found) must be the last step"),
    (lambda d: d["checks"]["C3"].__setitem__("invalid_consent", "STEP"), "checks.C3.invalid_consent",
     "only H3 and D0"),
    (lambda d: d.pop("warning_consent_invalid"), "warning_consent_invalid", "STEP_WITH_WARNING"),
    (lambda d: d["step_citations"].pop("E2"), "step_citations", "step 'E2' (check E2) has no citation"),
    (lambda d: d["step_citations"].pop("C6"), "step_citations", "warning step 'C6'"),
    (lambda d: d["cooperations"]["KSP"]["release_window"].__setitem__("before_days", 90),
     "cooperations.KSP.release_window", "not a mix"),
    (lambda d: d["checks"]["H3"].__setitem__("outcome", "MAYBE"), "checks.H3.outcome", "Input should be"),
    (lambda d: d["review"]["four_eyes_categories"].append("SECRETS"),
     "review.four_eyes_categories[2]", "Input should be"),
])
def test_version_2_bundle_errors_name_the_path(tmp_path, mutate, path, what):
    d = _data_v2()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(BundleError) as ei:
        load_bundle(p)
    msg = str(ei.value)
    assert f": {path}: " in msg and what in msg, msg
