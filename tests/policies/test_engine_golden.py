"""The engine's shortcuts change nothing a reader sees.

* every shipped case decides exactly as pinned (request digest, outcomes and the
  full trace text), see ``golden/cases.json``;
* the request digest is the documented formula over ``model_dump_json()``;
* recipients decided together (peers share one evaluation) get what each would
  get alone;
* the bounded memo tables give the same answers when they are cleared;
* trace items cached per resolved party carry the check names of the bundle in force.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings

from policies import engine as engine_mod
from policies.bundle import BUNDLE_DIR, BundleSet, load_bundle
from policies.directory import Directory
from policies.engine import PolicyEngine
from policies.model import ExchangeRequest, Role, canonical_json
from policies.scenarios import load_scenarios

from test_properties import requests  # same directory (tests/policies has no __init__.py)

HERE = Path(__file__).resolve().parent
CASES = HERE.parents[1] / "policies" / "cases"
GOLDEN = HERE / "golden" / "cases.json"
ENGINE = PolicyEngine.load_default()
ALL = [(f"{f.name}::{sc.id}", sc) for f in sorted(CASES.glob("*.yaml")) for sc in load_scenarios(f)]
SET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _results_hash(dec) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(dec.to_dict()["results"]).encode("utf-8")).hexdigest()


def test_shipped_cases_match_golden():
    now = {}
    for key, sc in ALL:
        dec = ENGINE.decide(sc.request, sc.present_categories)
        now[key] = {"bundle": ENGINE.bundles.by_version(dec.policy_version).name,
                    "request_digest": dec.request_digest, "results": _results_hash(dec)}
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    if os.environ.get("XLEDGER_REGEN_GOLDEN"):
        doc["cases"] = now
        GOLDEN.write_text(json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                          encoding="utf-8")
    assert set(now) == set(doc["cases"])
    changed = [k for k in now if now[k] != doc["cases"][k]]
    assert not changed, f"{len(changed)} case(s) decide differently, e.g. {changed[:5]}"


@SET
@given(requests())
def test_digest_is_sha256_of_model_dump_json(req):
    assert req.canonical_json() == req.model_dump_json().encode("utf-8")
    assert req.digest() == "sha256:" + hashlib.sha256(req.model_dump_json().encode("utf-8")).hexdigest()
    assert ENGINE.decide(req).request_digest == req.digest()


def test_digest_pinned_for_every_party_form():
    # directory id, inline party, inline memberships as id and as {id, valid_from}; UTC and
    # offset date-times.  The digest was recorded before the serialisation shortcuts.
    req = ExchangeRequest.model_validate({
        "id": "m", "occurred_at": "2026-03-10T10:00:00Z",
        "sender": {"org": "test:x", "role": "POLICE",
                   "memberships": ["ssp:a", {"id": "ssp:b", "valid_from": "2026-01-01"}]},
        "recipients": ["kommune:326", {"org": "kommune:306", "role": "MUNI_SSP_UNIT",
                                       "memberships": [{"id": "ssp:c"}]}],
        "context": "SSP", "cooperation_id": "ssp:a", "purpose": "PREVENTIVE_COORDINATION",
        "data_categories": ["IDENTITY"],
        "consent": {"categories": ["IDENTITY"], "explicit": True, "given_by": "SUBJECT",
                    "purposes": ["STATISTICS"], "recipients": ["x"],
                    "withdrawn_at": "2026-02-01T00:00:00+01:00"}})
    assert req.digest() == "sha256:177a26cbd5016b6324434c8f7dc5de321fc30cf6251d76038aa89a5532b55934"
    assert req.model_dump()["sender"]["memberships"][1] == {
        "id": "ssp:b", "valid_from": date(2026, 1, 1), "valid_to": None}


def test_vocabulary_value_is_the_plain_string():
    v = Role.POLICE.value
    assert v == "POLICE" and type(v) is str
    assert Role("POLICE") is Role.POLICE


@SET
@given(requests())
def test_each_recipient_decided_as_if_alone(req):
    together = ENGINE.decide(req).results
    data = req.model_dump()
    for i, r in enumerate(together):
        alone = ExchangeRequest.model_validate(dict(data, recipients=[data["recipients"][i]]))
        assert ENGINE.decide(alone).results[0].to_dict() == r.to_dict()


def test_peers_share_the_evaluation_but_not_their_identity():
    orgs = ["kommune:326", "kommune:306", "kommune:316", "kommune:329"]
    req = ExchangeRequest.model_validate({
        "id": "peers", "occurred_at": "2026-03-10T10:00:00+01:00",
        "sender": {"org": "politikreds:midt-vestsjaelland", "role": "POLICE"},
        "recipients": [{"org": o, "role": "MUNI_SSP_UNIT"} for o in orgs] + ["kommune:999"],
        "context": "INFOHUS_KOMMUNE", "underlying_basis": "SSP",
        "cooperation_id": "infohus:midt-vestsjaelland", "purpose": "PREVENTIVE_COORDINATION",
        "subject": {"age": 15}, "data_categories": ["IDENTITY", "CRIMINAL"], "mandatory": True,
        "necessity": "Repeated shoplifting; SSP needs it to plan an early preventive talk.",
    })
    res = ENGINE.decide(req).results
    assert [r.recipient for r in res] == orgs + ["kommune:999"]
    assert res[-1].rule == "C7"
    first = res[0]
    for r in res[1:-1]:
        assert (r.outcome, r.rule, r.via, r.warnings) == (first.outcome, first.rule, first.via, first.warnings)
        assert r.trace is not first.trace and r.warnings is not first.warnings
        differ = [i for i, (a, b) in enumerate(zip(first.trace, r.trace)) if a != b]
        assert [r.trace[i].step for i in differ] == ["C7", "C1"]
        assert all(r.recipient in r.trace[i].detail for i in differ)


def test_cleared_memo_tables_decide_the_same(monkeypatch):
    monkeypatch.setattr(engine_mod, "_CACHE_MAX", 3)
    small = PolicyEngine.load_default()
    for _, sc in ALL:
        a = small.decide(sc.request, sc.present_categories).to_dict()
        assert a == ENGINE.decide(sc.request, sc.present_categories).to_dict()


def test_party_trace_items_follow_the_bundle_in_force(tmp_path):
    data = yaml.safe_load((BUNDLE_DIR / "dk-115-2026.yaml").read_text(encoding="utf-8"))
    data["effective_from"] = date(2027, 1, 1)
    data["checks"]["C7_SENDER"]["name"] = "Afsender kendt (2027)"
    p = tmp_path / "b27.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    eng = PolicyEngine(BundleSet([load_bundle(BUNDLE_DIR / "dk-115-2026.yaml"), load_bundle(p)]),
                       Directory.load())
    base = dict(id="x", sender="politikreds:fyn", recipients=[{"org": "kommune:461", "role": "MUNI_SSP_UNIT"}],
                context="SSP", cooperation_id="ssp:odense", purpose="PREVENTIVE_COORDINATION",
                subject={"age": 15}, data_categories=["IDENTITY"])
    names = []
    for day in ("2026-12-31", "2027-01-01", "2026-12-31"):
        dec = eng.decide(ExchangeRequest(occurred_at=f"{day}T12:00:00+01:00", **base))
        names.append(dec.results[0].trace[0].name)
    assert names[1] == "Afsender kendt (2027)"
    assert names[0] == names[2] != names[1]

