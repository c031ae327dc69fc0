"""`xledger demo`: a scripted week of exchanges on an embedded broker and a SQLite ledger (development only)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from services import logging as xlog
from services.cli.common import fail

console = Console()
DEFAULT_LEDGER = Path("var/ledger.sqlite")  # where the other commands look when nothing is configured


def register(app: typer.Typer, **_: typer.Typer) -> None:
    app.command()(demo)


def demo(
    ledger: Path = typer.Option(DEFAULT_LEDGER, "--ledger",
                                help="SQLite file for the demo ledger: where the other commands look by default. "
                                     "Recreated if an earlier demo wrote it; anything else there is left alone."),
    timeout: float = typer.Option(60.0, help="Give up after this many seconds."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the services' log lines."),
    serve: bool = typer.Option(False, "--serve", help="Afterwards serve the review app on 127.0.0.1 (Ctrl-C stops)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port of the review app with --serve."),
) -> None:
    """Run a week of exchanges on an embedded broker and a SQLite ledger under ./var/, then print a summary.

    Creates its ledger. Exit 1 if a request was not recorded in time, a decision differs from the
    script's, or the ledger does not verify.
    """
    from services.broker import BrokerError, broker_binary
    from services.demo import DemoError, run_demo

    xlog.configure("INFO" if verbose else "WARNING")
    try:
        broker_binary()  # before any work: without the embedded extra there is no broker to run on
    except BrokerError as exc:
        fail(str(exc))
    try:
        report = run_demo(ledger_path=ledger, timeout=timeout)
    except DemoError as exc:
        fail(str(exc))
    table = Table(title="exchange-ledger demo: one week in Midt- og Vestsjællands Politikreds")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in report.rows():
        table.add_row(label, str(value))
    console.print(table)
    rules = Table(title="decisions per cooperation and rule")
    for column in ("context", "outcome", "rule / reason"):
        rules.add_column(column)
    rules.add_column("count", justify="right")
    for (context, outcome, rule), count in sorted(report.by_context_rule.items()):
        rules.add_row(context, outcome, rule, str(count))
    console.print(rules)
    console.print("[bold]escalations resolved by the legal officer[/]")
    for line in report.resolutions:
        console.print(f"  {line}", soft_wrap=True, markup=False)
    console.print("[bold]impact of the newest policy bundle on this week[/]")
    for line in report.impact:
        console.print(f"  {line}", soft_wrap=True, markup=False)
    if report.unexpected:
        console.print(f"[bold red]{len(report.unexpected)} decisions differ from the script's expectation:[/]")
        for line in report.unexpected:
            console.print(f"  {line}")
    else:
        console.print("every decision is the one the rules call for")
    console.print(f"ledger verification: {report.verification}")
    console.print(f"ledger: sqlite:///{ledger}")
    # Its keys and secrets are the public development ones: the auditor commands accept them in development only.
    where = "" if ledger == DEFAULT_LEDGER else f" --ledger-url sqlite:///{ledger}"
    console.print(f"audit it with: XLEDGER_ENV=development xledger verify{where}  (or replay, subject report, …)")
    problems = report.problems()
    if problems:
        fail("; ".join(problems), 1)
    if serve:
        _serve_demo(ledger, port)


def _serve_demo(ledger_path: Path, port: int) -> None:
    """The review app over the demo ledger, with two demo users whose passwords are made up now."""
    import secrets

    import uvicorn

    from ledger.application import Ledger
    from services.demo import demo_settings
    from services.review.app import create_app
    from services.review.users import UserStore

    settings = demo_settings(ledger_path)
    ledger = Ledger(settings.ledger_url)
    store = UserStore(ledger.tables)
    for user, role in (("jurist", "legal_officer"), ("revisor", "auditor")):
        password = secrets.token_urlsafe(9)
        if store.get(user):
            store.passwd(user, password)
        else:
            store.add(user, password, [role])
        console.print(f"log in as [bold]{user}[/] ({role}) with password [bold]{password}[/]")
    from services.runtime import Runtime

    web = create_app(ledger, pseudonym_secret=settings.pseudonym_secret.encode(),
                     session_secret_value=settings.session_secret,
                     checkpoint_public_key=Runtime(settings).checkpoint_signer.public_key)
    console.print(f"review app on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        # proxy_headers off: the review app itself decides whose X-Forwarded-For to believe.
        uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    finally:
        ledger.close()


