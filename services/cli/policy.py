"""`xledger policy ...` — check scenario files against the policy engine, explain traces.

Mounted by the lead as ``xledger policy``; usable alone via ``typer.testing.CliRunner``.
Exit codes: 0 all expectations met, 1 some expectation differs, 2 invalid input.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from policies.bundle import BundleError, BundleSet
from policies.directory import Directory, DirectoryError
from policies.engine import PolicyEngine
from policies.model import Decision, InvalidRequest
from services.cli.common import fail
from policies.scenarios import Scenario, ScenarioError, load_scenarios

app = typer.Typer(
    name="policy",
    help="Policy gate tools: check scenario files against the § 115 rules, explain decisions, "
         "document the rules.",
    no_args_is_help=True,
    add_completion=False,
)

OUTCOME_DA = {"ALLOW": "TILLADT", "DENY": "AFVIST", "ESCALATE": "TIL MANUEL VURDERING"}
#: the repository's rules document (the services package sits in the repository's root)
DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def _engine(bundle: Optional[List[Path]]) -> PolicyEngine:
    try:
        bundles = BundleSet.load(bundle) if bundle else BundleSet.load()
        return PolicyEngine(bundles, Directory.load())
    except (BundleError, DirectoryError) as e:
        fail(f"invalid policy: {e}")


def _decide_all(engine: PolicyEngine, file: Path) -> list[tuple[Scenario, Decision]]:
    """Validate and decide every scenario before anything is printed: invalid input
    never gets a decision."""
    try:
        scenarios = load_scenarios(file)
    except ScenarioError as e:
        fail(f"invalid input: {e}")
    out = []
    for sc in scenarios:  # type: ignore[union-attr]
        try:
            out.append((sc, engine.decide(sc.request, sc.present_categories)))
        except InvalidRequest as e:
            fail(f"invalid input: {file}: scenario {sc.id!r}: field {e.field!r}: {e.message}")
    return out


@app.command("check")
def check(
    file: Path = typer.Argument(..., help="Scenario file (YAML or JSON list of scenarios)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    bundle: Optional[List[Path]] = typer.Option(
        None, "--bundle", help="Policy bundle file(s) to use instead of the shipped ones (repeatable)."),
) -> None:
    """Decide every scenario in FILE and compare with its `expected`.

    Prints one result per scenario and recipient. Exit 0 when every expectation
    holds, 1 when any differs (each difference is named), 2 on invalid input.
    """
    engine = _engine(bundle)
    decided = _decide_all(engine, file)
    mismatches: list[str] = []
    rows = []
    for sc, dec in decided:
        for r in dec.results:
            status = "–"
            if sc.expected is not None:
                exp = sc.expected.for_recipient(r.recipient)
                if exp is not None:
                    mm = exp.mismatches(r)
                    status = "ok" if not mm else "MISMATCH"
                    if mm:
                        mismatches.append(f"{sc.id} → {r.recipient}: " + "; ".join(mm))
            rows.append((sc, dec, r, status))
    if as_json:
        for sc, dec, r, _ in rows:
            typer.echo(json.dumps({
                "case": sc.id, "recipient": r.recipient, "outcome": str(r.outcome),
                "rule": r.rule, "via": r.via, "reason": r.reason, "citation": r.citation,
                "warnings": list(r.warnings), "policy_version": dec.policy_version,
            }, ensure_ascii=False))
    else:
        console = Console(width=200)
        t = Table(title=f"Policy check: {file}", show_lines=False)
        for col in ("case", "recipient", "outcome", "rule", "via", "reason", "citation",
                    "warnings", "expected"):
            t.add_column(col, overflow="fold")
        for sc, dec, r, status in rows:
            style = {"ALLOW": "green", "DENY": "red", "ESCALATE": "yellow"}[str(r.outcome)]
            t.add_row(sc.id, r.recipient, f"[{style}]{r.outcome}[/]", r.rule, r.via or "",
                      r.reason or "", r.citation, ", ".join(r.warnings),
                      status if status != "MISMATCH" else "[bold red]MISMATCH[/]")
        console.print(t)
        used: dict[str, int] = {}
        for _, dec in decided:
            used[dec.policy_version] = used.get(dec.policy_version, 0) + 1
        for version, n in used.items():
            b = engine.bundles.by_version(version)
            console.print(f"policy version {version} ({b.name if b else '?'}, from "
                          f"{b.effective_from if b else '?'}): {n} scenario(s)")
    if mismatches:
        for m in mismatches:
            typer.echo(f"MISMATCH {m}", err=True)
        typer.echo(f"{len(mismatches)} expectation(s) differ", err=True)
        raise typer.Exit(1)


@app.command("explain")
def explain(
    file: Path = typer.Argument(..., help="Scenario file (YAML or JSON list of scenarios)."),
    bundle: Optional[List[Path]] = typer.Option(
        None, "--bundle", help="Policy bundle file(s) to use instead of the shipped ones (repeatable)."),
) -> None:
    """Print, for each scenario and recipient, the check trace in Danish legal terms
    with citations, as a legal officer reads it."""
    engine = _engine(bundle)
    decided = _decide_all(engine, file)
    for sc, dec in decided:
        b = engine.bundles.by_version(dec.policy_version)
        assert b is not None
        cit_by_step = b.trace_citations()
        cit_failed = b.failed_trace_citations()
        for r in dec.results:
            head = (f"Sag {sc.id} — afsender {_org(sc.request.sender)} → modtager {r.recipient}: "
                    f"{OUTCOME_DA[str(r.outcome)]} ({r.rule}"
                    + (f" via {r.via}" if r.via else "") + f"; {r.citation})")
            typer.echo(head)
            if r.reason:
                typer.echo(f"  Begrundelse: {r.reason}")
            for c in r.trace:
                cit = cit_by_step.get(c.step, "") if c.passed else cit_failed.get(c.step, cit_by_step.get(c.step, ""))
                if c.step == "P":
                    cit = b.citation(r.rule)
                if c.step == b.warning.step:
                    verdict = "advarsel"
                else:
                    verdict = "opfyldt" if c.passed else "ikke opfyldt"
                step = r.rule if c.step == "P" else c.step
                typer.echo(f"  {step} {c.name}" + (f" ({cit})" if cit else "")
                           + f": {verdict} — {c.detail}")
            for w in r.warnings:
                if b.warning_consent is not None and w == b.warning_consent.code:
                    typer.echo(f"  Advarsel {w}: {b.warning_consent.name} ({b.warning_citation(b.warning_consent)})")
            if r.outcome == "ESCALATE":
                typer.echo("  Afventer juridisk kontrol: en jurist godkender (med hjemmel) eller afviser (med "
                           "begrundelse); først derefter leveres eller afvises videregivelsen.")
            typer.echo(f"  Regelsæt {b.name} (gælder fra {b.effective_from}), politikversion {dec.policy_version}")
            typer.echo("")


@app.command("docs")
def docs(
    output: Path = typer.Option(
        DOCS_PATH, "--output", "-o", help="Where to write the rules document ('-' for standard output)."),
    check_only: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 when the file differs from what the bundles generate."),
    bundle: Optional[List[Path]] = typer.Option(
        None, "--bundle", help="Policy bundle file(s) to document instead of the shipped ones (repeatable)."),
) -> None:
    """Generate the rules document (docs/rules.md) from the policy bundles: every step, check and
    rule of every version with its Danish title, what it checks, its outcome and code, and its citation."""
    from policies.rulesdoc import render

    try:
        bundles = BundleSet.load(bundle) if bundle else BundleSet.load()
    except BundleError as e:
        fail(f"invalid policy: {e}")
    text = render(bundles.bundles)
    if check_only:
        try:
            current = output.read_text(encoding="utf-8")
        except OSError as e:
            fail(f"cannot read {output}: {e.strerror}", 1)
        if current != text:
            fail(f"{output} is stale: run `xledger policy docs` and commit the result", 1)
        typer.echo(f"{output} is current")
        return
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {output}: {e.strerror}")
    typer.echo(f"wrote {output} ({len(bundles.bundles)} bundle(s))")


def _org(p) -> str:
    return p if isinstance(p, str) else f"{p.org} ({p.role})"


if __name__ == "__main__":  # pragma: no cover
    app()
