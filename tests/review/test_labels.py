"""Every code the policy bundles and the policy vocabulary use has a Danish and an English label,
and what the labels module makes of recorded text (details, citations, authorities)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies.bundle import BUNDLE_DIR
from services.review.labels import Labels, bundle_codes, vocabulary_codes

BUNDLES = sorted(Path(BUNDLE_DIR).glob("*.yaml"))


@pytest.fixture(scope="module")
def labels() -> Labels:
    return Labels()


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_every_code_of_a_bundle_has_danish_and_english_labels(labels, path):
    codes = bundle_codes(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert sum(len(v) for v in codes.values()) > 60  # the collector found the bundle's codes
    missing = sorted(f"{kind}:{code}" for kind, found in codes.items() for code in found
                     if not labels.has(kind, code))
    assert missing == [], f"{path.name}: codes without a Danish and an English label: {missing}"


def test_every_vocabulary_code_has_danish_and_english_labels(labels):
    missing = sorted(f"{kind}:{code}" for kind, found in vocabulary_codes().items() for code in found
                     if not labels.has(kind, code))
    assert missing == []


def test_danish_and_english_labels_differ_where_the_words_do(labels):
    # A label copied into both columns would pass the test above; real translations differ.
    same = [f"{kind}:{code}" for kind in ("reason", "purpose", "role", "category", "rule")
            for code, pair in labels.data[kind].items() if pair[0] == pair[1]]
    assert same == []


def test_recorded_text_is_shown_in_danish_with_names():
    da = Labels().for_lang("da")
    assert da.detail("socially_vulnerable er ikke sand, crime_risk er ikke sand") == \
        "ikke socialt udsat, ikke i risiko for kriminalitet"
    assert da.detail("kommune:326 er ikke medlem af ksp:kalundborg 2026-03-10").startswith("Kalundborg Kommune er ikke")
    assert "PREVENTIVE_COORDINATION" not in da.detail("formål PREVENTIVE_COORDINATION er ikke tilladt i SSP")
    assert da.citation("PET-loven § 4 / no § 115 basis for immigration authorities") == \
        "PET-loven § 4 / ingen hjemmel i rpl § 115 for udlændingemyndigheder"
    assert "GDPR" not in da.citation("rpl § 115, stk. 1; GDPR art. 5(1)(c)")
    en = Labels().for_lang("en")
    assert en.context("NONE") == "No cooperation" and da.context("NONE") == "Intet samarbejde"
    assert da.user_role("agency:kommune:326") == "Myndighed: Kalundborg Kommune"
    assert en.user_role("legal_officer") == "Legal officer" and da.user_role("legal_officer") == "Jurist"
    assert en.check("Personen er omfattet af samarbejdets personkreds") == "The person is covered by the cooperation"
