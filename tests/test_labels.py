"""Every code a person can meet in the review app or `xledger subject report` has a Danish and an English
label (services/labels.py): the vocabulary's enums, and every reason, warning, rule and step of the bundles."""

from __future__ import annotations

import re

import pytest

from policies import model
from policies.bundle import BUNDLE_DIR, load_bundle
from services import labels


def _bundle_codes() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"reason": set(), "rule": set()}
    for path in sorted(BUNDLE_DIR.glob("*.yaml")):
        m = load_bundle(path).model
        dump = m.model_dump(mode="json")
        text = repr(dump)
        found["reason"] |= set(re.findall(r"\b(?:DENY|ESCALATE|WARN)_[A-Z0-9_]+", text))
        found["rule"] |= {spec.step for spec in m.checks.values() if spec.step != "P"}
        # version 1 keys citations by rule and by reason code: the rules are the letter-digit keys
        rules = {c for c in m.citations if re.fullmatch(r"[A-Z][0-9]", c)}
        found["rule"] |= set(re.findall(r"'rule': '([A-Z][0-9])'", text)) | rules
    return found


@pytest.mark.parametrize("kind, enum", [
    ("outcome", model.Outcome), ("purpose", model.Purpose), ("context", model.Context), ("category", model.Category)])
def test_every_vocabulary_code_has_both_labels(kind, enum):
    for member in enum:
        assert member.value in labels.KINDS[kind], f"{kind} {member.value} has no label"


def test_every_bundle_reason_rule_and_step_has_both_labels():
    codes = _bundle_codes()
    assert "DENY_SUBJECT_OUT_OF_SCOPE" in codes["reason"] and "P5" in codes["rule"] and "C3" in codes["rule"]
    for kind, found in codes.items():
        missing = sorted(found - set(labels.KINDS[kind]))
        assert not missing, f"{kind} codes without a label: {missing}"


def test_labels_are_distinct_and_not_codes():
    for kind, table in labels.KINDS.items():
        for i, lang in enumerate(labels.LANGS):
            texts = [pair[i] for pair in table.values()]
            assert len(set(texts)) == len(texts), f"two {kind} codes share a {lang} label"
            assert not [t for t in texts if re.fullmatch(r"[A-Z0-9_]{4,}", t)], f"a {kind} label is a code"


def test_label_lookup():
    assert labels.label("reason", "DENY_SUBJECT_OUT_OF_SCOPE") == "Personen er uden for samarbejdets personkreds"
    assert labels.label("purpose", "RELEASE_PLANNING", "en") == "Release planning"
    assert labels.labels("category", "HEALTH,CRIMINAL") == "Helbredsoplysninger, Strafbare forhold"
    assert labels.label("role", "agency:kommune:326") == "Myndighedsbruger: Kalundborg Kommune"
    assert labels.authority("kommune:326") == "Kalundborg Kommune"
    assert labels.authority("kommune:999") == "kommune:999"  # unknown: shown as it is, not hidden
    assert labels.label("reason", "DENY_SOMETHING_NEW") == "DENY_SOMETHING_NEW"
    with pytest.raises(ValueError, match="language must be one of da, en"):
        labels.label("outcome", "ALLOW", "de")
