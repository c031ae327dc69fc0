"""`xledger schemas ...`: check the Avro contracts and generate the AsyncAPI document.

Mounted as ``xledger schemas`` by ``services.cli``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from schemas.asyncapi import ASYNCAPI_PATH, render
from schemas.compat import DEFAULT_SAMPLES, check_all, is_payload
from schemas.registry import SCHEMA_ROOT, RegistryError, SchemaRegistry

app = typer.Typer(
    help="Avro contracts in schemas/: compatibility and annotation check, AsyncAPI document.",
    no_args_is_help=True,
    add_completion=False,
)

_SCHEMAS_DIR = typer.Option(
    SCHEMA_ROOT, "--schemas-dir", help="Folder holding <name>/v<N>.avsc files.", file_okay=False, dir_okay=True,
    show_default="schemas/ of this package",
)


def _load(root: Path) -> SchemaRegistry:
    try:
        return SchemaRegistry.load(root)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def check(
    schemas_dir: Path = _SCHEMAS_DIR,
    samples: int = typer.Option(DEFAULT_SAMPLES, "--samples", min=1, max=100_000,
                                help="Generated records per round trip and direction."),
) -> None:
    """Prove every schema version FULL compatible with the one before it and every payload field annotated.

    BACKWARD and FORWARD are checked with the avro package's reader/writer
    compatibility checker and by fastavro round trips of generated records in both
    directions; payload schemas must also carry a valid x-category on every field,
    a cpr field (unless aggregate), docs, and a validation model. Prints a table;
    exits 1 when there is any problem, 2 when the schemas cannot be loaded.
    """
    registry = _load(schemas_dir)
    problems = check_all(registry, samples=samples)
    by_name: dict[str, int] = {}
    for p in problems:
        by_name[p.schema] = by_name.get(p.schema, 0) + 1

    console = Console(width=max(Console().width, 120))
    table = Table(title=f"schemas in {schemas_dir}")
    for col in ("record", "kind", "versions", "latest fingerprint", "status"):
        table.add_column(col)
    for name in registry.names():
        versions = registry.versions(name)
        n = by_name.get(name, 0)
        table.add_row(
            name,
            "payload" if is_payload(name) else "envelope",
            ", ".join(f"v{v.version}" for v in versions),
            versions[-1].fingerprint.hex(),
            "[green]OK[/green]" if n == 0 else f"[red]{n} problem{'s' if n > 1 else ''}[/red]",
        )
    console.print(table)
    if problems:
        ptable = Table(title="problems")
        for col in ("record", "version", "check", "detail"):
            ptable.add_column(col, overflow="fold")
        for p in problems:
            ptable.add_row(p.schema, "" if p.version is None else f"v{p.version}", p.check, p.detail)
        console.print(ptable)
        typer.echo(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} found", err=True)
        raise typer.Exit(1)
    console.print(f"all {len(registry.all_versions())} schema versions compatible and annotated")


@app.command()
def asyncapi(
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False,
                                       help=f"Write here instead of stdout, e.g. {ASYNCAPI_PATH.relative_to(SCHEMA_ROOT.parent)}."),
    check_only: bool = typer.Option(False, "--check", help="Do not write: exit 1 when OUTPUT differs from the generated document."),
    schemas_dir: Path = _SCHEMAS_DIR,
) -> None:
    """Generate the AsyncAPI 3.0 document (YAML) of the topics, with every Avro schema embedded."""
    text = render(_load(schemas_dir))
    if check_only:
        target = output or ASYNCAPI_PATH
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            typer.echo(f"error: {target} is out of date; run: xledger schemas asyncapi --output {target}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is up to date")
        return
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {output}")


if __name__ == "__main__":
    app()
