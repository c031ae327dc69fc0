"""The directory matches Denmark: every entry names the public source it was checked against,
the generated YAML is exactly what the generator makes of its data file, and the corrections
of issue #14 hold (police districts, names, cooperations)."""
from __future__ import annotations

import re
from datetime import date

import pytest

from policies.directory import DIRECTORY_DIR, Directory
from policies.tools import gen_directory

DIR = Directory.load()
URL = re.compile(r"^https?://\S+( https?://\S+)*$")
TESTDATA = "urn:xledger:testdata"


def unsourced(directory: Directory, kind: str) -> list[str]:
    """Entries without a source URL (fictional test entities: the test-data URN) or a check date."""
    entries = directory.orgs if kind == "organisations" else directory.cooperations
    missing = []
    for oid, e in entries.items():
        fictional = getattr(e, "kind", None) in ("selvejende", "privat")
        ok_source = e.source is not None and (URL.match(e.source) or (fictional and e.source == TESTDATA))
        if not ok_source or not isinstance(e.checked, date):
            missing.append(oid)
    return missing


@pytest.mark.parametrize("kind", ["organisations", "cooperations"])
def test_every_entry_has_a_source_and_a_check_date(kind):
    missing = unsourced(DIR, kind)
    assert not missing, f"{kind} without source URL or checked date: {missing[:10]}"


def test_the_check_finds_an_entry_without_source_or_date(tmp_path):
    orgs, coops = gen_directory.build()
    orgs["kommune:101"].pop("source")
    orgs["politikreds:fyn"]["source"] = "trap.lex.dk/Fyns_Politi"  # not a URL
    coops["ssp:aarhus"].pop("checked")
    o, c = gen_directory.render(orgs, coops)
    (tmp_path / "organisations.yaml").write_text(o, encoding="utf-8")
    (tmp_path / "cooperations.yaml").write_text(c, encoding="utf-8")
    d = Directory.load(tmp_path)
    assert unsourced(d, "organisations") == ["kommune:101", "politikreds:fyn"]
    assert unsourced(d, "cooperations") == ["ssp:aarhus"]


def test_generated_files_are_what_the_generator_makes():
    o, c = gen_directory.render(*gen_directory.build())
    assert (DIRECTORY_DIR / "organisations.yaml").read_text(encoding="utf-8") == o, \
        "organisations.yaml is stale or hand-edited: run python -m policies.tools.gen_directory"
    assert (DIRECTORY_DIR / "cooperations.yaml").read_text(encoding="utf-8") == c


def test_generator_refuses_a_municipality_in_two_districts():
    import yaml
    data = yaml.safe_load(gen_directory.DATA.read_text(encoding="utf-8"))
    data["police_districts"]["nordsjaelland"]["municipalities"].append(159)
    with pytest.raises(ValueError, match="159 in two police districts"):
        gen_directory.build(data)


# Police district of each municipality the check found wrong, as the sources give it.
CORRECTED = {
    159: "kobenhavns-vestegn",            # Gladsaxe
    253: "midt-vestsjaelland",            # Greve
    269: "midt-vestsjaelland",            # Solrød
    259: "midt-vestsjaelland",            # Køge
    336: "midt-vestsjaelland",            # Stevns
    330: "sydsjaelland-lolland-falster",  # Slagelse
    340: "sydsjaelland-lolland-falster",  # Sorø
    773: "midt-vestjylland",              # Morsø
    787: "midt-vestjylland",              # Thisted
    746: "sydostjylland",                 # Skanderborg
}


@pytest.mark.parametrize("code,district", sorted(CORRECTED.items()))
def test_corrected_police_districts(code, district):
    assert DIR.org(f"kommune:{code}").police_district == f"politikreds:{district}"
    slug = DIR.org(f"kommune:{code}").slug
    assert DIR.is_member(f"politikreds:{district}", f"ssp:{slug}", date(2026, 6, 1))
    assert f"kommune:{code}" in DIR.members(f"infohus:{district}")


def test_district_sizes_and_one_infohus_each():
    sizes: dict[str, int] = {}
    for m in DIR.municipalities().values():
        sizes[m.police_district] = sizes.get(m.police_district, 0) + 1
    assert len(sizes) == 12 and sum(sizes.values()) == 98
    assert sizes["politikreds:nordjylland"] == 9 and sizes["politikreds:midt-vestjylland"] == 11
    assert sizes["politikreds:sydostjylland"] == 7 and sizes["politikreds:ostjylland"] == 7
    for district in sizes:
        slug = district.split(":")[1]
        munis = {k for k, m in DIR.municipalities().items() if m.police_district == district}
        assert munis == {m for m in DIR.members(f"infohus:{slug}") if m.startswith("kommune:")}


def test_official_names():
    assert DIR.org("kommune:101").name == "Københavns Kommune"
    assert DIR.org("kommune:400").name == "Bornholms Regionskommune"
    assert DIR.org("kriminalforsorgen:enner-mark").name == "Enner Mark Fængsel"
    assert not any(o.name.startswith(("Statsfængslet", "Arresthuset")) for o in DIR.orgs.values())
    assert DIR.org("cde:national").name.endswith("(CDE)")


def test_district_psp_and_ksp_members():
    d = date(2026, 6, 1)
    psp = set(DIR.members("psp:kreds-syd-sonderjylland", d))
    assert "politikreds:syd-sonderjylland" in psp and "region:syddanmark" in psp
    assert len({m for m in psp if m.startswith("kommune:")}) == 8
    ksp = set(DIR.members("ksp:kreds-midt-vestsjaelland", d))
    assert "kriminalforsorgen:kif-midt-vestsjaelland" in ksp and "kommune:326" in ksp
    # the regions merge into Region Østdanmark on 2027-01-01
    assert DIR.is_member("region:sjaelland", "psp:kalundborg", date(2026, 12, 31))
    assert DIR.is_member("region:ostdanmark", "psp:kalundborg", date(2027, 1, 1))
    assert not DIR.is_member("region:sjaelland", "psp:kalundborg", date(2027, 1, 1))


def test_municipalities_per_region_and_codes():
    """Region sizes as Danmarks Statistik and django-localflavor give them (29/17/22/19/11), and
    codes that are three digits, unique and each the id of its municipality (checked against a
    copy of DAWA's list, see municipality_note in directory_data.yaml)."""
    munis = DIR.municipalities()
    sizes: dict[str, int] = {}
    for m in munis.values():
        sizes[m.region] = sizes.get(m.region, 0) + 1
    assert sizes == {"region:hovedstaden": 29, "region:sjaelland": 17, "region:syddanmark": 22,
                     "region:midtjylland": 19, "region:nordjylland": 11}
    assert all(k == f"kommune:{int(m.code)}" and re.fullmatch(r"\d{3}", m.code) for k, m in munis.items())
    assert DIR.org("kommune:326").name == "Kalundborg Kommune"
    assert DIR.org("kommune:492").name == "Ærø Kommune"
    assert "kommune:411" not in munis  # Christiansø is no municipality
