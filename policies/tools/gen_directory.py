"""Generate policies/directory/{organisations,cooperations}.yaml.

Run:  .venv/bin/python -m policies.tools.gen_directory
The generated YAML is committed; this script is only the way it was made.
Municipality codes are the official three-digit kommunekoder (98 municipalities);
police district and region membership as of 2026, with Region Hovedstaden and
Region Sjælland merging into Region Østdanmark on 2027-01-01.
"""
from __future__ import annotations

from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent.parent / "directory"

MERGE_DAY = "2027-01-01"
LAST_DAY_OLD = "2026-12-31"

# code, name, police district slug, region slug
MUNICIPALITIES = [
    # Region Hovedstaden
    (101, "København", "kobenhavn", "hovedstaden"),
    (147, "Frederiksberg", "kobenhavn", "hovedstaden"),
    (151, "Ballerup", "kobenhavns-vestegn", "hovedstaden"),
    (153, "Brøndby", "kobenhavns-vestegn", "hovedstaden"),
    (155, "Dragør", "kobenhavn", "hovedstaden"),
    (157, "Gentofte", "nordsjaelland", "hovedstaden"),
    (159, "Gladsaxe", "nordsjaelland", "hovedstaden"),
    (161, "Glostrup", "kobenhavns-vestegn", "hovedstaden"),
    (163, "Herlev", "kobenhavns-vestegn", "hovedstaden"),
    (165, "Albertslund", "kobenhavns-vestegn", "hovedstaden"),
    (167, "Hvidovre", "kobenhavns-vestegn", "hovedstaden"),
    (169, "Høje-Taastrup", "kobenhavns-vestegn", "hovedstaden"),
    (173, "Lyngby-Taarbæk", "nordsjaelland", "hovedstaden"),
    (175, "Rødovre", "kobenhavns-vestegn", "hovedstaden"),
    (183, "Ishøj", "kobenhavns-vestegn", "hovedstaden"),
    (185, "Tårnby", "kobenhavn", "hovedstaden"),
    (187, "Vallensbæk", "kobenhavns-vestegn", "hovedstaden"),
    (190, "Furesø", "nordsjaelland", "hovedstaden"),
    (201, "Allerød", "nordsjaelland", "hovedstaden"),
    (210, "Fredensborg", "nordsjaelland", "hovedstaden"),
    (217, "Helsingør", "nordsjaelland", "hovedstaden"),
    (219, "Hillerød", "nordsjaelland", "hovedstaden"),
    (223, "Hørsholm", "nordsjaelland", "hovedstaden"),
    (230, "Rudersdal", "nordsjaelland", "hovedstaden"),
    (240, "Egedal", "nordsjaelland", "hovedstaden"),
    (250, "Frederikssund", "nordsjaelland", "hovedstaden"),
    (260, "Halsnæs", "nordsjaelland", "hovedstaden"),
    (270, "Gribskov", "nordsjaelland", "hovedstaden"),
    (400, "Bornholm", "bornholm", "hovedstaden"),
    # Region Sjælland
    (253, "Greve", "sydsjaelland-lolland-falster", "sjaelland"),
    (259, "Køge", "sydsjaelland-lolland-falster", "sjaelland"),
    (265, "Roskilde", "midt-vestsjaelland", "sjaelland"),
    (269, "Solrød", "sydsjaelland-lolland-falster", "sjaelland"),
    (306, "Odsherred", "midt-vestsjaelland", "sjaelland"),
    (316, "Holbæk", "midt-vestsjaelland", "sjaelland"),
    (320, "Faxe", "sydsjaelland-lolland-falster", "sjaelland"),
    (326, "Kalundborg", "midt-vestsjaelland", "sjaelland"),
    (329, "Ringsted", "midt-vestsjaelland", "sjaelland"),
    (330, "Slagelse", "midt-vestsjaelland", "sjaelland"),
    (336, "Stevns", "sydsjaelland-lolland-falster", "sjaelland"),
    (340, "Sorø", "midt-vestsjaelland", "sjaelland"),
    (350, "Lejre", "midt-vestsjaelland", "sjaelland"),
    (360, "Lolland", "sydsjaelland-lolland-falster", "sjaelland"),
    (370, "Næstved", "sydsjaelland-lolland-falster", "sjaelland"),
    (376, "Guldborgsund", "sydsjaelland-lolland-falster", "sjaelland"),
    (390, "Vordingborg", "sydsjaelland-lolland-falster", "sjaelland"),
    # Region Syddanmark
    (410, "Middelfart", "fyn", "syddanmark"),
    (420, "Assens", "fyn", "syddanmark"),
    (430, "Faaborg-Midtfyn", "fyn", "syddanmark"),
    (440, "Kerteminde", "fyn", "syddanmark"),
    (450, "Nyborg", "fyn", "syddanmark"),
    (461, "Odense", "fyn", "syddanmark"),
    (479, "Svendborg", "fyn", "syddanmark"),
    (480, "Nordfyns", "fyn", "syddanmark"),
    (482, "Langeland", "fyn", "syddanmark"),
    (492, "Ærø", "fyn", "syddanmark"),
    (510, "Haderslev", "syd-sonderjylland", "syddanmark"),
    (530, "Billund", "sydostjylland", "syddanmark"),
    (540, "Sønderborg", "syd-sonderjylland", "syddanmark"),
    (550, "Tønder", "syd-sonderjylland", "syddanmark"),
    (561, "Esbjerg", "syd-sonderjylland", "syddanmark"),
    (563, "Fanø", "syd-sonderjylland", "syddanmark"),
    (573, "Varde", "syd-sonderjylland", "syddanmark"),
    (575, "Vejen", "syd-sonderjylland", "syddanmark"),
    (580, "Aabenraa", "syd-sonderjylland", "syddanmark"),
    (607, "Fredericia", "sydostjylland", "syddanmark"),
    (621, "Kolding", "sydostjylland", "syddanmark"),
    (630, "Vejle", "sydostjylland", "syddanmark"),
    # Region Midtjylland
    (615, "Horsens", "sydostjylland", "midtjylland"),
    (657, "Herning", "midt-vestjylland", "midtjylland"),
    (661, "Holstebro", "midt-vestjylland", "midtjylland"),
    (665, "Lemvig", "midt-vestjylland", "midtjylland"),
    (671, "Struer", "midt-vestjylland", "midtjylland"),
    (706, "Syddjurs", "ostjylland", "midtjylland"),
    (707, "Norddjurs", "ostjylland", "midtjylland"),
    (710, "Favrskov", "ostjylland", "midtjylland"),
    (727, "Odder", "ostjylland", "midtjylland"),
    (730, "Randers", "ostjylland", "midtjylland"),
    (740, "Silkeborg", "midt-vestjylland", "midtjylland"),
    (741, "Samsø", "ostjylland", "midtjylland"),
    (746, "Skanderborg", "ostjylland", "midtjylland"),
    (751, "Aarhus", "ostjylland", "midtjylland"),
    (756, "Ikast-Brande", "midt-vestjylland", "midtjylland"),
    (760, "Ringkøbing-Skjern", "midt-vestjylland", "midtjylland"),
    (766, "Hedensted", "sydostjylland", "midtjylland"),
    (779, "Skive", "midt-vestjylland", "midtjylland"),
    (791, "Viborg", "midt-vestjylland", "midtjylland"),
    # Region Nordjylland
    (773, "Morsø", "nordjylland", "nordjylland"),
    (787, "Thisted", "nordjylland", "nordjylland"),
    (810, "Brønderslev", "nordjylland", "nordjylland"),
    (813, "Frederikshavn", "nordjylland", "nordjylland"),
    (820, "Vesthimmerlands", "nordjylland", "nordjylland"),
    (825, "Læsø", "nordjylland", "nordjylland"),
    (840, "Rebild", "nordjylland", "nordjylland"),
    (846, "Mariagerfjord", "nordjylland", "nordjylland"),
    (849, "Jammerbugt", "nordjylland", "nordjylland"),
    (851, "Aalborg", "nordjylland", "nordjylland"),
    (860, "Hjørring", "nordjylland", "nordjylland"),
]

POLICE_DISTRICTS = {
    "nordjylland": "Nordjyllands Politi",
    "ostjylland": "Østjyllands Politi",
    "midt-vestjylland": "Midt- og Vestjyllands Politi",
    "sydostjylland": "Sydøstjyllands Politi",
    "syd-sonderjylland": "Syd- og Sønderjyllands Politi",
    "fyn": "Fyns Politi",
    "sydsjaelland-lolland-falster": "Sydsjællands og Lolland-Falsters Politi",
    "midt-vestsjaelland": "Midt- og Vestsjællands Politi",
    "nordsjaelland": "Nordsjællands Politi",
    "kobenhavns-vestegn": "Københavns Vestegns Politi",
    "kobenhavn": "Københavns Politi",
    "bornholm": "Bornholms Politi",
}

REGIONS = {
    "hovedstaden": ("Region Hovedstaden", None, LAST_DAY_OLD),
    "sjaelland": ("Region Sjælland", None, LAST_DAY_OLD),
    "ostdanmark": ("Region Østdanmark", MERGE_DAY, None),
    "syddanmark": ("Region Syddanmark", None, None),
    "midtjylland": ("Region Midtjylland", None, None),
    "nordjylland": ("Region Nordjylland", None, None),
}
MERGED_REGIONS = {"hovedstaden", "sjaelland"}

# Kriminalforsorgen: areas (regional) and institutions.
KIF_AREAS = {
    "omraade-hovedstaden": "Kriminalforsorgen Område Hovedstaden",
    "omraade-sjaelland": "Kriminalforsorgen Område Sjælland",
    "omraade-syddanmark": "Kriminalforsorgen Område Syddanmark",
    "omraade-midt-nord": "Kriminalforsorgen Område Midt- og Nordjylland",
}
KIF_INSTITUTIONS = {
    "horserod": "Statsfængslet Horserød",
    "jyderup": "Statsfængslet Jyderup",
    "kobenhavns-faengsler": "Københavns Fængsler",
    "storstrom": "Storstrøm Fængsel",
    "sobysogard": "Statsfængslet Søbysøgård",
    "renbaek": "Statsfængslet Renbæk",
    "ostjylland": "Statsfængslet Østjylland",
    "norre-snede": "Statsfængslet Nørre Snede",
    "kragskovhede": "Statsfængslet Kragskovhede",
    "bornholm": "Arresthuset i Rønne",
}
# Kriminalforsorgen area and liaison institution for each police district's KSP.
DISTRICT_KIF = {
    "kobenhavn": ("omraade-hovedstaden", "kobenhavns-faengsler"),
    "kobenhavns-vestegn": ("omraade-hovedstaden", "kobenhavns-faengsler"),
    "nordsjaelland": ("omraade-hovedstaden", "horserod"),
    "bornholm": ("omraade-hovedstaden", "bornholm"),
    "midt-vestsjaelland": ("omraade-sjaelland", "horserod"),
    "sydsjaelland-lolland-falster": ("omraade-sjaelland", "storstrom"),
    "fyn": ("omraade-syddanmark", "sobysogard"),
    "syd-sonderjylland": ("omraade-syddanmark", "renbaek"),
    "sydostjylland": ("omraade-midt-nord", "ostjylland"),
    "ostjylland": ("omraade-midt-nord", "ostjylland"),
    "midt-vestjylland": ("omraade-midt-nord", "norre-snede"),
    "nordjylland": ("omraade-midt-nord", "kragskovhede"),
}

MUNI_ROLES = ["MUNI_SOCIAL_CHILD", "MUNI_SOCIAL_ADULT", "MUNI_SCHOOL", "MUNI_SSP_UNIT",
              "MUNI_JOBCENTER", "MUNI_OTHER"]

NATIONAL = {
    "pet:national": ("Politiets Efterretningstjeneste (PET)", ["PET"]),
    "rigspolitiet:national": ("Rigspolitiet", ["POLICE"]),
    "cdie:national": ("Center for Dokumentation og Indsats mod Ekstremisme", ["OTHER_AUTHORITY"]),
    "stuk:national": ("Styrelsen for Undervisning og Kvalitet (STUK)", ["OTHER_AUTHORITY"]),
    "viso:national": ("VISO, Social- og Boligstyrelsen", ["OTHER_AUTHORITY"]),
    "hotline-radikalisering:national": ("Hotline mod radikalisering", ["OTHER_AUTHORITY"]),
    "udlaendingestyrelsen:national": ("Udlændingestyrelsen", ["IMMIGRATION_AUTH"]),
    # test / example entities
    "selvejende:ungehuset-kalundborg": ("Ungehuset Kalundborg (selvejende, socialt opholdssted)",
                                         ["SELF_GOV_SOCIAL"]),
    "selvejende:produktionsskolen-aalborg": ("Produktionsskolen Aalborg (selvejende)",
                                             ["SELF_GOV_EDU"]),
    "privat:mentorhuset-test": ("Mentorhuset ApS (privat virksomhed, testdata)",
                                ["PRIVATE_ENTITY"]),
}

# SSP instances that set a maximum age (inclusive); the others have none.
SSP_MAX_AGE = {"kobenhavn": 24, "aarhus": 17, "aalborg": 24}


def slug(name: str) -> str:
    s = name.lower()
    for a, b in (("æ", "ae"), ("ø", "o"), ("å", "aa"), ("é", "e"), (" ", "-")):
        s = s.replace(a, b)
    return s


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def build() -> tuple[dict, dict]:
    orgs: dict[str, dict] = {}
    for code, name, district, region in MUNICIPALITIES:
        orgs[f"kommune:{code}"] = {
            "name": f"{name} Kommune", "kind": "municipality", "code": f"{code:03d}",
            "slug": slug(name), "police_district": f"politikreds:{district}",
            "region": f"region:{region}", "roles": MUNI_ROLES,
        }
    for s, name in POLICE_DISTRICTS.items():
        orgs[f"politikreds:{s}"] = {"name": name, "kind": "police_district", "roles": ["POLICE"]}
    for s, (name, vf, vt) in REGIONS.items():
        orgs[f"region:{s}"] = _clean({"name": name, "kind": "region",
                                      "roles": ["SOCIAL_PSYCH", "TREATMENT_PSYCH"],
                                      "valid_from": vf, "valid_to": vt})
    for s, name in KIF_AREAS.items():
        orgs[f"kriminalforsorgen:{s}"] = {"name": name, "kind": "kriminalforsorgen_area",
                                          "roles": ["KRIMINALFORSORGEN"]}
    for s, name in KIF_INSTITUTIONS.items():
        orgs[f"kriminalforsorgen:{s}"] = {"name": name, "kind": "kriminalforsorgen_institution",
                                          "roles": ["KRIMINALFORSORGEN"]}
    for oid, (name, roles) in NATIONAL.items():
        orgs[oid] = {"name": name, "kind": "national" if not oid.startswith(("selvejende", "privat"))
                     else oid.split(":")[0], "roles": roles}

    coops: dict[str, dict] = {}
    by_district: dict[str, list[str]] = {}
    for code, name, district, region in MUNICIPALITIES:
        k = f"kommune:{code}"
        ms = slug(name)
        by_district.setdefault(district, []).append(k)
        police = f"politikreds:{district}"
        area, inst = DISTRICT_KIF[district]
        ssp = {"type": "SSP", "name": f"SSP {name}", "members": [k, police]}
        if ms in SSP_MAX_AGE:
            ssp["max_age"] = SSP_MAX_AGE[ms]
        coops[f"ssp:{ms}"] = ssp
        if region in MERGED_REGIONS:
            regions = [{"org": f"region:{region}", "valid_to": LAST_DAY_OLD},
                       {"org": "region:ostdanmark", "valid_from": MERGE_DAY}]
        else:
            regions = [f"region:{region}"]
        coops[f"psp:{ms}"] = {"type": "PSP", "name": f"PSP {name}",
                              "members": [k, police] + regions}
        coops[f"ksp:{ms}"] = {"type": "KSP", "name": f"KSP {name}",
                              "members": [k, police, f"kriminalforsorgen:{area}",
                                          f"kriminalforsorgen:{inst}"]}
    # the example self-governing institutions take part in their local cooperations
    coops["ssp:kalundborg"]["members"].append("selvejende:ungehuset-kalundborg")
    coops["ksp:kalundborg"]["members"].append("selvejende:ungehuset-kalundborg")
    coops["ssp:aalborg"]["members"].append("selvejende:produktionsskolen-aalborg")
    for district, munis in by_district.items():
        area, inst = DISTRICT_KIF[district]
        regs = sorted({orgs[m]["region"] for m in munis})
        members: list = [f"politikreds:{district}"] + munis
        for r in regs:
            if r.split(":")[1] in MERGED_REGIONS:
                members.append({"org": r, "valid_to": LAST_DAY_OLD})
                if {"org": "region:ostdanmark", "valid_from": MERGE_DAY} not in members:
                    members.append({"org": "region:ostdanmark", "valid_from": MERGE_DAY})
            else:
                members.append(r)
        members += [f"kriminalforsorgen:{area}", f"kriminalforsorgen:{inst}"]
        coops[f"infohus:{district}"] = {"type": "INFOHUS", "name": f"Infohus {POLICE_DISTRICTS[district]}",
                                        "members": members}
    return orgs, coops


def main() -> None:
    orgs, coops = build()
    hdr = "# GENERATED by policies/tools/gen_directory.py -- edit the script, then re-run it.\n"
    (OUT / "organisations.yaml").write_text(
        hdr + yaml.safe_dump({"organisations": orgs}, allow_unicode=True, sort_keys=False,
                             width=100), encoding="utf-8")
    (OUT / "cooperations.yaml").write_text(
        hdr + yaml.safe_dump({"cooperations": coops}, allow_unicode=True, sort_keys=False,
                             width=100), encoding="utf-8")
    print(f"{len(orgs)} organisations, {len(coops)} cooperation instances -> {OUT}")


if __name__ == "__main__":
    main()
