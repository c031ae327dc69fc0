"""A directory version on every decision (issue #14), on both ledger back-ends.

* the gate records the directory's content hash beside the policy version, and the directory
  snapshot once, content-addressed, in the same transaction as the first decisions naming it;
* re-evaluation and policy impact decide each recorded decision under its recorded directory
  (from the ledger when it is no longer shipped); ``--directory current`` is the what-if;
* a decision naming a directory the ledger does not hold is an error, never "divergent";
* ``xledger directory diff OLD NEW --decisions`` on a real correction (Gladsaxe moved to
  Københavns Vestegns Politi) names the recorded decisions that change outcome.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ledger.application import Tracking
from ledger.domain import DirectorySnapshot, directory_snapshot_id
from policies.bundle import BundleSet
from policies.directory import Directory
from policies.engine import PolicyEngine
from services.audit import Redecider, impact, load_bundles, reevaluate
from services.directories import DirectoryResolver
from services.gate import GatePipeline, Inbound
from services.agencies import CONCERN
from services.simulation import _concern
from tests.audit.history import NOW, TOPIC, build_history

import pytest

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "directory-gladsaxe"
KIF = "kriminalforsorgen:kif-midt-vestsjaelland"


@pytest.fixture
def history(ledger_url):
    h = build_history(ledger_url)
    yield h
    h.rt.close()


def _without_kif(directory: Directory) -> Directory:
    """The shipped directory as it would be if KiF were not in Kalundborg's KSP (an older version)."""
    snap = directory.snapshot()
    snap["cooperations"]["ksp:kalundborg"]["members"].remove(KIF)
    return Directory.from_snapshot(snap)


def _record_under(h, directory: Directory, label: str, *, snapshot: bool) -> dict:
    """One release notice decided by a gate running ``directory`` (and, if asked, that directory's
    snapshot stored as the gate worker stores it: with the decision, in one transaction)."""
    from services.demo import release_notice

    pipeline = GatePipeline(PolicyEngine(BundleSet.load(), directory), h.rt.sealer, h.rt.pseudonym_secret,
                            h.rt.keyset, h.rt.codec)
    req = release_notice(NOW.date(), cpr="1203911234", name=f"Test Person {label}", release_in_days=21, age=34)
    result = pipeline.process(Inbound(TOPIC, 0, h.offset, h.signed(req, message_id=f"msg-{label}")))
    h.offset += 1
    extra = [DirectorySnapshot(directory_version=directory.version, content=directory.snapshot())] if snapshot else []
    h.ledger.record(extra + [result], Tracking(f"kafka:{TOPIC}:0", h.offset))
    return result.decision


def _redecider(h, **kw) -> Redecider:
    return Redecider(h.ledger, h.settings.master_key, h.rt.pseudonym_secret, h.rt.keyset, **kw)


def test_every_decision_names_its_directory(history):
    current = Directory.load()
    decisions = [r.decision for r in __import__("services.audit", fromlist=["x"]).recorded_decisions(history.ledger)]
    assert decisions and {d["directory_version"] for d in decisions} == {current.version}
    assert all(d["policy_version"].startswith("sha256:") for d in decisions)
    assert current.version == Directory.from_snapshot(current.snapshot()).version  # content address


def test_reevaluation_uses_the_recorded_directory_and_what_if_the_current(history):
    old = _without_kif(Directory.load())
    decision = _record_under(history, old, "old-dir", snapshot=True)
    assert decision["directory_version"] == old.version != Directory.load().version
    assert decision["results"][0]["outcome"] == "DENY" and decision["results"][0]["rule"] == "C1"
    # the snapshot is in the ledger, content-addressed, and hashes to its address
    snap = history.ledger.repository.get(directory_snapshot_id(old.version))
    assert Directory.from_snapshot(snap.content).version == old.version

    report = reevaluate(history.ledger, _redecider(history), load_bundles())
    assert report.ok and report.agreeing == report.checked == 6, report.errors
    assert report.directories == {"recorded": 6}

    what_if = reevaluate(history.ledger, _redecider(history, directories=DirectoryResolver(
        history.ledger, override=Directory.load())), load_bundles())
    assert what_if.directories == {"what-if": 6}
    assert {(d.message_id, d.field, d.recorded, d.recomputed) for d in what_if.divergent
            if d.field == "outcome"} == {("msg-old-dir", "outcome", "DENY", "ALLOW")}

    # policy impact of the newest bundle: under the recorded directory by default
    newest = max(BundleSet.load().bundles, key=lambda b: b.effective_from)
    rep = impact(history.ledger, _redecider(history), newest, known=load_bundles())
    assert rep.directories == {"recorded": 6}
    assert not any(d["message_id"] == "msg-old-dir" for g in rep.groups("flips") for d in g["example_decisions"])


def test_a_directory_the_ledger_does_not_hold_is_an_error_not_a_divergence(history):
    stranger = _without_kif(Directory.load())
    _record_under(history, stranger, "unknown-dir", snapshot=False)
    report = reevaluate(history.ledger, _redecider(history), load_bundles())
    assert not report.divergent
    assert [(e["message_id"], e["error"], e["detail"]) for e in report.errors] == [
        ("msg-unknown-dir", "UNKNOWN_DIRECTORY_VERSION", stranger.version)]


def test_cli_reevaluate_directory_option(history):
    from services.cli import app

    _record_under(history, _without_kif(Directory.load()), "old-dir", snapshot=True)
    env = {"XLEDGER_LEDGER_URL": history.settings.ledger_url, "XLEDGER_ENV": "development"}
    res = runner.invoke(app, ["audit", "reevaluate", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["directories"] == {"recorded": 6}
    res = runner.invoke(app, ["audit", "reevaluate", "--directory", "current"], env=env)
    assert res.exit_code == 1 and "msg-old-dir" in res.stdout and "6 under the directory given" in res.stdout
    res = runner.invoke(app, ["audit", "reevaluate", "--directory", "/no/such/dir"], env=env)
    assert res.exit_code == 2 and "--directory" in res.output and "/no/such/dir" in res.output


def test_directory_diff_on_a_real_correction_names_the_decisions_that_flip(history):
    from services.cli import app

    from schemas.categories import present_categories

    police = ("politikreds:kobenhavns-vestegn", "POLICE")
    payload = _concern("0205104321", "Test Person Gladsaxe", "POLICE", "Anholdt for butikstyveri.", crime=True)
    categories = sorted(present_categories(history.rt.codec.registry.latest(CONCERN).raw, payload))
    req = dict(payload_type=CONCERN, payload=payload, data_categories=categories,
               recipients=[("kommune:159", "MUNI_SSP_UNIT")], context="SSP", cooperation_id="ssp:gladsaxe",
               purpose="PREVENTIVE_COORDINATION", subject={"age": 16, "crime_risk": True},
               necessity="Nødvendigt for at koordinere en tidlig forebyggende indsats over for den unge.")
    recorded = history.record(history.signed(req, message_id="msg-gladsaxe", org_role=police))
    assert recorded.decision["results"][0]["outcome"] == "ALLOW"  # today's directory has it right

    env = {"XLEDGER_LEDGER_URL": history.settings.ledger_url, "XLEDGER_ENV": "development"}
    old, new = str(FIXTURES / "old"), str(FIXTURES / "new")
    res = runner.invoke(app, ["directory", "diff", old, new, "--decisions", "--json"], env=env)
    assert res.exit_code == 1, res.output  # a decision would change outcome
    doc = json.loads(res.stdout)
    assert doc["organisations"]["changed"] == {
        "kommune:159": {"police_district": ["politikreds:nordsjaelland", "politikreds:kobenhavns-vestegn"]}}
    assert doc["cooperations"]["members"]["ssp:gladsaxe"] == {
        "added": ["politikreds:kobenhavns-vestegn"], "removed": ["politikreds:nordsjaelland"]}
    assert doc["cooperations"]["members"]["infohus:kobenhavns-vestegn"]["added"] == ["kommune:159"]
    flips = doc["decisions"]["flips"]
    assert [(g["from"]["outcome"], g["from"]["rule"], g["to"]["outcome"], g["to"]["rule"], g["count"])
            for g in flips] == [("DENY", "C1", "ALLOW", "P1", 1)]
    assert flips[0]["example_decisions"][0]["message_id"] == "msg-gladsaxe"
    # the KSP notices name organisations the small fixture directories do not hold: unknown there
    # (C7) under both, so they do not flip
    assert doc["decisions"]["requests"] == 6

    text = runner.invoke(app, ["directory", "diff", old, new], env=env)
    assert text.exit_code == 0 and "kommune:159" in text.stdout and "police_district" in text.stdout


def test_directory_show_and_its_errors():
    from services.cli import app

    env = {"XLEDGER_ENV": "development"}
    res = runner.invoke(app, ["directory", "show", "Kalundborg Kommune", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["id"] == "kommune:326" and doc["police_district"] == "politikreds:midt-vestsjaelland"
    assert doc["source"].startswith("https://") and doc["checked"]
    assert {"ssp:kalundborg", "ksp:kalundborg", "infohus:midt-vestsjaelland"} <= {m["id"] for m in doc["memberships"]}
    assert [k["key_id"] for k in doc["keys"]] == ["dev-2026"]
    res = runner.invoke(app, ["directory", "show", "kommune:159"], env=env)
    assert res.exit_code == 0 and "Københavns Vestegns Politi" in res.stdout
    res = runner.invoke(app, ["directory", "show", "Atlantis Kommune"], env=env)
    assert res.exit_code == 2 and "unknown organisation 'Atlantis Kommune'" in res.output
    res = runner.invoke(app, ["directory", "show", "Fængsel"], env=env)
    assert res.exit_code == 2 and "matches 8 organisations" in res.output
    res = runner.invoke(app, ["directory", "diff", "legacy", "/no/such/dir"], env=env)
    assert res.exit_code == 2 and "no directory '/no/such/dir'" in res.output


def test_the_directory_option_names_the_same_directories_as_directory_show_and_diff():
    from policies.directory import LEGACY_DIRECTORY_DIR
    from services.directories import WHAT_IF, DirectoryResolver

    legacy = Directory.load(LEGACY_DIRECTORY_DIR)
    current = Directory.load()
    assert legacy.version != current.version
    for option, expected in (("legacy", legacy), ("current", current), (str(LEGACY_DIRECTORY_DIR), legacy)):
        directory, how = DirectoryResolver.for_option(None, option).resolve({"directory_version": current.version})
        assert (directory.version, how) == (expected.version, WHAT_IF), option
    directory, how = DirectoryResolver.for_option(None, None).resolve({"directory_version": current.version})
    assert (directory.version, how) == (current.version, "recorded")
