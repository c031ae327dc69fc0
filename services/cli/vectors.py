"""`xledger schemas vectors ...`: write the conformance vectors, and check a third party's bytes against them.

Mounted under ``xledger schemas`` by ``services.cli``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from services.cli.common import fail
from services.vectors.generate import VECTORS_DIR

app = typer.Typer(
    help="Conformance vectors in schemas/vectors/: regenerate them, or check bytes an integrator produced.",
    no_args_is_help=True,
    add_completion=False,
)

_VECTORS = typer.Option(VECTORS_DIR, "--vectors", help="The vectors directory.", file_okay=False,
                        show_default="schemas/vectors/ of this package")


@app.command()
def generate(
    output: Path = typer.Option(VECTORS_DIR, "--output", "-o", file_okay=False,
                                help="Write the vector files here.", show_default="schemas/vectors/"),
) -> None:
    """Run every vector case through the real gate and relay (embedded broker, temporary SQLite ledger,
    development mode, the development keys), write the JSON files, and refresh the byte-by-byte example in
    docs/integration.md.

    Stops with exit 1, writing nothing, when the gate answers a case differently from what
    services/vectors/cases.py expects. Run it after any change to the schemas, the envelope,
    the signing or the relay's records, and commit the result.
    """
    from services.vectors.generate import VectorMismatch
    from services.vectors.generate import generate as run

    try:
        written = run(output)
    except VectorMismatch as exc:
        fail(str(exc), 1)
    vectors = [p for p in written if p.parent == output]
    typer.echo(f"wrote {len(vectors)} vector files to {output}")
    for path in written:
        if path.parent != output:
            typer.echo(f"refreshed the worked example in {path}")


@app.command()
def check(
    directory: Path = typer.Argument(..., help="Your files: NAME.bin or NAME.hex per request vector (optionally "
                                               "NAME.payload.* and NAME.request.*), NAME.json per decoded receipt "
                                               "or delivery."),
    vectors: Path = _VECTORS,
) -> None:
    """Check bytes that you produced against the vectors, and say what the gate would answer.

    Each file is compared with the vector of the same name; a difference is explained (marker,
    byte-reversed or Apache-avro fingerprint, the first differing field). Each request is also
    run through the gate's checks with the vectors' key set. Exit 0 when everything matches, 1 when
    anything differs, 2 when a directory cannot be read. Layout: schemas/vectors/README.md.
    """
    from services.vectors.check import VectorsError
    from services.vectors.check import check as run

    try:
        findings = run(directory, vectors)
    except VectorsError as exc:
        fail(str(exc))
    console = Console(width=max(Console().width, 140))
    table = Table(title=f"{directory} against {vectors}")
    for col in ("file", "result", "detail"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(f.file, "[green]OK[/green]" if f.ok else "[red]DIFFERS[/red]", f.message)
    console.print(table)
    bad = [f for f in findings if not f.ok]
    if bad:
        typer.echo(f"{len(bad)} of {len(findings)} checks differ", err=True)
        raise typer.Exit(1)
    console.print(f"all {len(findings)} checks match")
