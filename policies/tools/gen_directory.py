"""Generate policies/directory/{organisations,cooperations}.yaml from directory_data.yaml.

Run:  .venv/bin/python -m policies.tools.gen_directory
Every fact comes from ``policies/tools/directory_data.yaml``, which names the public source
each was checked against and when; this script only shapes it.  The generated YAML is
committed and never edited by hand (a test regenerates it and compares).

Dates: every validity bound is an inclusive date.  Region Hovedstaden and Region Sjælland end
on 2026-12-31 and Region Østdanmark begins on 2027-01-01, in the organisations and in every
membership that names them, so one directory decides exchanges on both sides of the merger.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE / "directory_data.yaml"
OUT = HERE.parent / "directory"

MUNI_ROLES = ["MUNI_SOCIAL_CHILD", "MUNI_SOCIAL_ADULT", "MUNI_SCHOOL", "MUNI_SSP_UNIT",
              "MUNI_JOBCENTER", "MUNI_OTHER"]
REGION_ROLES = ["SOCIAL_PSYCH", "TREATMENT_PSYCH"]


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _day(v) -> str | None:
    return v.isoformat() if isinstance(v, date) else v


def _sourced(entry: dict, checked: str, source=None) -> dict:
    """The provenance fields every organisation and cooperation carries."""
    src = source if source is not None else entry.get("source")
    if isinstance(src, list):
        src = " ".join(src)
    return _clean({"source": src, "checked": _day(entry.get("checked")) or checked,
                   "note": entry.get("note")})


def build(data: dict | None = None) -> tuple[dict, dict]:
    d = data if data is not None else yaml.safe_load(DATA.read_text(encoding="utf-8"))
    checked = _day(d["checked"])
    src = d["sources"]
    merge = _day(d["merge_day"])
    merged = set(d["merged_regions"])
    last_old = min(_day(d["regions"][r]["valid_to"]) for r in merged)
    district_of: dict[int, str] = {}
    for dist, pd in d["police_districts"].items():
        for code in pd["municipalities"]:
            if code in district_of:
                raise ValueError(f"municipality {code} in two police districts: "
                                 f"{district_of[code]} and {dist}")
            district_of[code] = dist
    munis = d["municipalities"]
    missing = [m[0] for m in munis if m[0] not in district_of]
    if missing or len(district_of) != len(munis):
        raise ValueError(f"municipalities without a police district: {missing}")

    orgs: dict[str, dict] = {}
    for code, name, slug, region in munis:
        dist = district_of[code]
        orgs[f"kommune:{code}"] = {
            "name": name, "kind": "municipality", "code": f"{code:03d}", "slug": slug,
            "police_district": f"politikreds:{dist}", "region": f"region:{region}",
            "roles": MUNI_ROLES,
            **_sourced({"note": d.get("municipality_note")}, checked, list(d["municipality_sources"])
                       + [d["police_districts"][dist]["source"]]),
        }
    for s, pd in d["police_districts"].items():
        orgs[f"politikreds:{s}"] = {"name": pd["name"], "kind": "police_district",
                                    "roles": ["POLICE"], **_sourced(pd, checked)}
    for s, r in d["regions"].items():
        orgs[f"region:{s}"] = _clean({"name": r["name"], "kind": "region", "roles": REGION_ROLES,
                                      "valid_from": _day(r.get("valid_from")),
                                      "valid_to": _day(r.get("valid_to")),
                                      **_sourced(r, checked)})
    kf = d["kriminalforsorgen"]
    area_of: dict[str, str] = {}
    units_in: dict[str, list[str]] = {}
    for s, u in kf.items():
        oid = f"kriminalforsorgen:{s}"
        for dist in u.get("districts", []):
            area_of[dist] = oid
        if "district" in u:
            units_in.setdefault(u["district"], []).append(oid)
        orgs[oid] = _clean({"name": u["name"], "kind": u["kind"], "roles": ["KRIMINALFORSORGEN"],
                            "police_district": (f"politikreds:{u['district']}"
                                                if "district" in u else None),
                            "institution": u.get("institution"), **_sourced(u, checked)})
    kif_of: dict[str, str] = {}
    for s, pd in d["police_districts"].items():
        oid = f"kriminalforsorgen:kif-{s}"
        kif_of[s] = oid
        orgs[oid] = {"name": d["kif_name"].format(district=pd["name"]), "kind": "kriminalforsorgen_kif",
                     "roles": ["KRIMINALFORSORGEN"], "police_district": f"politikreds:{s}",
                     **_sourced({"note": "KiF office of the district, modelled; see kif_name in "
                                         "directory_data.yaml"}, checked, list(d["kif_sources"]))}
    for oid, n in d["national"].items():
        orgs[oid] = {"name": n["name"], "kind": "national", "roles": n["roles"],
                     **_sourced(n, checked)}
    for oid, n in d["test_entities"].items():
        orgs[oid] = {"name": n["name"], "kind": n["kind"], "roles": n["roles"],
                     **_sourced({"note": "fictional test entity"}, checked,
                                d["test_entity_source"])}

    def regions_of(regs: list[str]) -> list:
        out: list = []
        for r in regs:
            if r in merged:
                out.append({"org": f"region:{r}", "valid_to": last_old})
                if {"org": "region:ostdanmark", "valid_from": merge} not in out:
                    out.append({"org": "region:ostdanmark", "valid_from": merge})
            else:
                out.append(f"region:{r}")
        return out

    def ksp_side(dist: str) -> list[str]:
        return [area_of[dist], kif_of[dist]] + units_in.get(dist, [])

    coops: dict[str, dict] = {}
    by_district: dict[str, list[tuple[str, str]]] = {}
    ssp_src = _sourced({}, checked, src["ksp-kf"])
    psp_src = _sourced({}, checked, [src["psp-lov"], src["psp-syd"]])
    ksp_src = _sourced({}, checked, [src["ksp-kf"], src["kif"]])
    for code, name, slug, region in munis:
        k = f"kommune:{code}"
        dist = district_of[code]
        police = f"politikreds:{dist}"
        by_district.setdefault(dist, []).append((k, region))
        ssp = {"type": "SSP", "name": f"SSP {name}", "members": [k, police], **ssp_src}
        if slug in d["ssp_max_age"]:
            ssp["max_age"] = d["ssp_max_age"][slug]
        coops[f"ssp:{slug}"] = ssp
        coops[f"psp:{slug}"] = {"type": "PSP", "name": f"PSP {name} (lokal gruppe)",
                                "members": [k, police] + regions_of([region]), **psp_src}
        coops[f"ksp:{slug}"] = {"type": "KSP", "name": f"KSP {name} (lokal gruppe)",
                                "members": [k, police] + ksp_side(dist), **ksp_src}
    for oid, n in d["test_entities"].items():
        for t in ("ssp", "ksp"):
            if t in n:
                coops[f"{t}:{n[t]}"]["members"].append(oid)
    for dist, ms in by_district.items():
        pd = d["police_districts"][dist]
        police = f"politikreds:{dist}"
        muni_ids = [m for m, _ in ms]
        regs = regions_of(sorted({r for _, r in ms}))
        coops[f"psp:kreds-{dist}"] = {"type": "PSP", "name": f"PSP {pd['name']}",
                                      "members": [police] + muni_ids + regs, **psp_src}
        coops[f"ksp:kreds-{dist}"] = {"type": "KSP", "name": f"KSP {pd['name']}",
                                      "members": [police] + muni_ids + ksp_side(dist), **ksp_src}
        coops[f"infohus:{dist}"] = {"type": "INFOHUS", "name": f"Infohus {pd['name']}",
                                    "members": [police] + muni_ids + regs
                                    + [area_of[dist], kif_of[dist]],
                                    **_sourced({}, checked, src["infohus"])}
    return orgs, coops


def render(orgs: dict, coops: dict) -> tuple[str, str]:
    hdr = ("# GENERATED by policies/tools/gen_directory.py from policies/tools/directory_data.yaml"
           " -- edit the data, then re-run it.\n")

    class _NoAlias(yaml.SafeDumper):
        def ignore_aliases(self, data):  # noqa: ARG002 - every entry readable on its own
            return True

    def dump(obj) -> str:
        return hdr + yaml.dump(obj, Dumper=_NoAlias, allow_unicode=True, sort_keys=False,
                               width=100)
    return dump({"organisations": orgs}), dump({"cooperations": coops})


def main() -> None:
    orgs, coops = build()
    o, c = render(orgs, coops)
    (OUT / "organisations.yaml").write_text(o, encoding="utf-8")
    (OUT / "cooperations.yaml").write_text(c, encoding="utf-8")
    print(f"{len(orgs)} organisations, {len(coops)} cooperation instances -> {OUT}")


if __name__ == "__main__":
    main()
