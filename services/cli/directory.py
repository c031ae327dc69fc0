"""`xledger directory show ORG` and `xledger directory diff OLD NEW`: the organisation directory.

A directory is named by a folder holding organisations.yaml and cooperations.yaml, or by
``current`` (the shipped one, policies/directory/) or ``legacy`` (the one every decision recorded
before decisions named their directory was made under, policies/directory/legacy/).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services.cli.common import LEDGER_URL, fail, ledger_settings, open_ledger

directory_app = typer.Typer(help="The organisation directory: show an organisation, compare two directories.",
                  no_args_is_help=True)


def register(app: typer.Typer, **_: typer.Typer) -> None:
    app.add_typer(directory_app, name="directory")


def load_directory(name: str):
    """``current``, ``legacy`` or a folder; exits 2 naming what is wrong."""
    from policies.directory import DIRECTORY_DIR, LEGACY_DIRECTORY_DIR, Directory, DirectoryError

    path = {"current": DIRECTORY_DIR, "legacy": LEGACY_DIRECTORY_DIR}.get(name, Path(name))
    if not path.exists():
        fail(f"no directory {name!r}: give 'current', 'legacy' or a folder with organisations.yaml and "
             "cooperations.yaml")
    try:
        return Directory.load(path)
    except DirectoryError as exc:
        fail(f"invalid directory {name!r}: {exc}")


def find_org(directory, query: str) -> str:
    """An organisation by id, by exact name (any case), or by the one name containing ``query``."""
    if query in directory.orgs:
        return query
    q = query.casefold()
    exact = [k for k, o in directory.orgs.items() if o.name.casefold() == q]
    if len(exact) == 1:
        return exact[0]
    partial = [k for k, o in directory.orgs.items() if q in o.name.casefold() or q in k.casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        fail(f"unknown organisation {query!r}: no id or name in the directory matches it")
    names = "; ".join(f"{k} ({directory.orgs[k].name})" for k in sorted(partial)[:8])
    fail(f"{query!r} matches {len(partial)} organisations, give one of: {names}"
         + (" …" if len(partial) > 8 else ""))


def _span(vf, vt) -> str:
    if vf is None and vt is None:
        return "always"
    return f"{vf or 'always'} – {vt or 'open'}"


@directory_app.command("show")
def show(
    org: str = typer.Argument(..., help="An organisation id (kommune:326) or name (Kalundborg Kommune)."),
    directory: str = typer.Option("current", "--directory", help="'current', 'legacy' or a directory folder."),
    keyset: Optional[str] = typer.Option(None, "--keyset", envvar="XLEDGER_KEYSET",
                                         help="The key set to list the organisation's keys from (docs/keyset.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """An organisation: its facts with their sources, its cooperations (with validity) and its keys."""
    d = load_directory(directory)
    oid = find_org(d, org)
    o = d.orgs[oid]
    memberships = []
    for cid in dict.fromkeys(d.memberships(oid)):
        c = d.cooperations[cid]
        spans = [_span(iv.valid_from, iv.valid_to) for iv in d._members[(cid, oid)]]
        memberships.append({"id": cid, "type": c.type, "name": c.name, "valid": spans})
    keys, key_note = _keys(oid, keyset)
    data = {"id": oid, **o.model_dump(mode="json", exclude_none=True), "memberships": memberships, "keys": keys,
            "directory_version": d.version}
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    out = Console(width=160)
    out.print(f"[bold]{o.name}[/] ({oid})")
    for label, value in (("kind", o.kind), ("code", o.code), ("police district", _named(d, o.police_district)),
                         ("region", _named(d, o.region)), ("institution", o.institution),
                         ("roles", ", ".join(o.roles)), ("valid", _span(o.valid_from, o.valid_to)),
                         ("source", o.source), ("checked", o.checked), ("note", o.note)):
        if value:
            out.print(f"  {label}: {value}", soft_wrap=True)
    t = Table(title=f"cooperations ({len(memberships)})")
    for col in ("id", "type", "name", "member"):
        t.add_column(col, overflow="fold")
    for m in memberships:
        t.add_row(m["id"], m["type"], m["name"], "; ".join(m["valid"]))
    out.print(t)
    if keys:
        k = Table(title="keys")
        for col in ("key id", "valid from", "valid to", "revoked", "status now"):
            k.add_column(col)
        for key in keys:
            k.add_row(key["key_id"], key["valid_from"] or "-", key["valid_to"] or "-", key["revoked_at"] or "-",
                      key["status"])
        out.print(k)
    else:
        out.print(f"keys: {key_note}")
    out.print(f"directory version {d.version}")


def _named(d, oid: str | None) -> str | None:
    if not oid:
        return None
    o = d.orgs.get(oid)
    return f"{o.name} ({oid})" if o else oid


def _keys(oid: str, keyset: Optional[str]) -> tuple[list[dict], str]:
    from services.keyset import KeySet, KeySetError, keyset_path

    settings = ledger_settings(None)
    path = keyset_path(replace(settings, keyset=keyset or settings.keyset))
    if path is None:
        return [], "no key set configured (XLEDGER_KEYSET; docs/keyset.md)"
    try:
        ks = KeySet.load(path)
    except KeySetError as exc:
        fail(str(exc))
    now = datetime.now(timezone.utc)
    out = [{"key_id": s.key.key_id, "valid_from": str(s.key.valid_from) if s.key.valid_from else None,
            "valid_to": str(s.key.valid_to) if s.key.valid_to else None,
            "revoked_at": s.key.revoked_at.isoformat() if s.key.revoked_at else None, "status": s.status.value}
           for s in ks.keys_for(oid, now)]
    return out, f"none in the key set {path}"


@directory_app.command("diff")
def diff(
    old: str = typer.Argument(..., help="The old directory: 'current', 'legacy' or a folder."),
    new: str = typer.Argument(..., help="The new directory: 'current', 'legacy' or a folder."),
    decisions: bool = typer.Option(False, "--decisions", help="Also re-decide every decision recorded in the "
                                   "ledger under both directories (each under its recorded policy version) "
                                   "and report which would change outcome."),
    ledger_url: Optional[str] = LEDGER_URL,
    bundle: Optional[list[Path]] = typer.Option(
        None, "--bundle", help="With --decisions: archived policy bundle(s) for versions no longer shipped."),
    examples: int = typer.Option(5, "--examples", min=0, help="Example decisions per group."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """What changes from OLD to NEW: organisations and their facts, cooperations and their members; with
    --decisions also which recorded decisions would change outcome (exit 1 if any would)."""
    from policies.directory_diff import diff_directories

    a, b = load_directory(old), load_directory(new)
    dd = diff_directories(a, b)
    report = None
    if decisions:
        report = _decisions(a, b, ledger_url, bundle)
    if as_json:
        doc = dd.to_dict()
        if report is not None:
            doc["decisions"] = report.to_dict(examples)
        typer.echo(json.dumps(doc, ensure_ascii=False, default=str))
    else:
        _print_diff(dd, old, new)
        if report is not None:
            _print_decisions(report, examples)
    if report is not None and report.flipped:
        raise typer.Exit(1)


def _decisions(a, b, ledger_url: Optional[str], bundle: Optional[list[Path]]):
    from services.cli.audit import _audit_keys, _recorded_bundles, _redecider
    from services.directories import directory_impact

    settings = ledger_settings(ledger_url)
    keys = _audit_keys(settings)
    bundles = _recorded_bundles(bundle)
    ledger = open_ledger(settings)
    try:
        return directory_impact(ledger, _redecider(settings, ledger, keys), bundles, a, b)
    finally:
        ledger.close()


def _print_diff(dd, old: str, new: str) -> None:
    out = Console(width=200)
    out.print(f"directory {old} ({dd.old_version[:19]}…) → {new} ({dd.new_version[:19]}…)")
    if dd.empty:
        out.print("the same directory: nothing changes")
        return
    for title, ids in (("organisations added", dd.orgs_added), ("organisations removed", dd.orgs_removed),
                       ("cooperations added", dd.coops_added), ("cooperations removed", dd.coops_removed)):
        if ids:
            out.print(f"{title} ({len(ids)}): " + ", ".join(ids), soft_wrap=True)
    if dd.orgs_changed:
        t = Table(title=f"organisations changed ({len(dd.orgs_changed)})")
        for col in ("id", "field", "old", "new"):
            t.add_column(col, overflow="fold")
        for oid, fields in dd.orgs_changed.items():
            for f, (x, y) in fields.items():
                t.add_row(oid, f, str(x), str(y))
        out.print(t)
    if dd.members:
        t = Table(title=f"memberships changed ({len(dd.members)} cooperations)")
        for col in ("cooperation", "members added", "members removed"):
            t.add_column(col, overflow="fold")
        for cid, (added, removed) in dd.members.items():
            t.add_row(cid, ", ".join(added), ", ".join(removed))
        out.print(t)
    if dd.coops_changed:
        for cid, fields in dd.coops_changed.items():
            out.print(f"cooperation {cid}: " + "; ".join(f"{f} {x!r} → {y!r}" for f, (x, y) in fields.items()))
    if dd.orgs_provenance:
        out.print(f"sources or check dates changed for {len(dd.orgs_provenance)} organisations (no decision depends "
                  "on them)")


def _print_decisions(report, examples: int) -> None:
    from services.audit import impact_summary

    out = Console(width=200)
    lines = impact_summary(report, examples)
    out.print("recorded decisions, each under its recorded policy version, with the old and the new directory:")
    for line in lines[1:]:
        out.print(line, soft_wrap=True)
