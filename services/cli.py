"""xledger: the command line of exchange-ledger.

Every option also reads an XLEDGER_* environment variable. Bad input exits
non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services import logging as xlog
from services.cli_common import BOOTSTRAP, LEDGER_URL, fail, graceful_shutdown, settings_from

app = typer.Typer(
    help="exchange-ledger: lawful, provable data exchange between Danish crime-prevention authorities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
gate_app = typer.Typer(help="The policy gate service.", no_args_is_help=True)
relay_app = typer.Typer(help="The delivery relay (ledger outbox → inboxes and receipts).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
keys_app = typer.Typer(help="Authority signing keys.", no_args_is_help=True)
app.add_typer(gate_app, name="gate")
app.add_typer(relay_app, name="relay")
app.add_typer(topics_app, name="topics")
app.add_typer(keys_app, name="keys")

subject_app = typer.Typer(help="One citizen's data: access reports and erasure.", no_args_is_help=True)
app.add_typer(subject_app, name="subject")

from services.cli_policy import app as policy_app  # noqa: E402  (the policy group owns check/explain)

app.add_typer(policy_app, name="policy", help="Check, explain and assess disclosure policy.")

console = Console()

@app.command()
def demo(
    ledger: Path = typer.Option(Path("var/demo.sqlite"), "--ledger", help="SQLite file for the demo ledger (recreated)."),
    timeout: float = typer.Option(60.0, help="Give up after this many seconds."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the services' log lines."),
    serve: bool = typer.Option(False, "--serve", help="Afterwards serve the review app on 127.0.0.1 (Ctrl-C stops)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port of the review app with --serve."),
) -> None:
    """Run a week of exchanges on an embedded broker and a SQLite ledger under ./var/, then print a summary."""
    from services.demo import run_demo

    xlog.configure("INFO" if verbose else "WARNING")
    report = run_demo(ledger_path=ledger, timeout=timeout)
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
    if report.unexpected:
        console.print(f"[bold red]{len(report.unexpected)} decisions differ from the script's expectation:[/]")
        for line in report.unexpected:
            console.print(f"  {line}")
    else:
        console.print("every decision is the one the rules call for")
    console.print(f"ledger verification: {report.verification}")
    console.print(f"ledger: sqlite:///{ledger}")
    if report.recorded < report.requests:
        fail(f"only {report.recorded} of {report.requests} requests were recorded before the timeout", 1)
    if report.unexpected:
        raise typer.Exit(1)
    if serve:
        _serve_demo(ledger, port)


def _serve_demo(ledger_path: Path, port: int) -> None:
    """The review app over the demo ledger, with two demo users whose passwords are made up now."""
    import secrets

    import uvicorn

    from ledger.application import Ledger
    from services.config import Settings
    from services.review.app import create_app
    from services.review.users import UserStore

    settings = Settings.from_env(ledger_url=f"sqlite:///{ledger_path}")
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
                     checkpoint_public_key=Runtime(settings).checkpoint_signer.public_key)
    console.print(f"review app on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning")
    finally:
        ledger.close()


@gate_app.command("run")
def gate_run(
    bootstrap_servers: Optional[str] = BOOTSTRAP,
    ledger_url: Optional[str] = LEDGER_URL,
    group_id: Optional[str] = typer.Option(None, envvar="XLEDGER_GROUP_ID", help="Consumer group of the gate."),
    name: str = typer.Option("gate", help="This process's name in logs and client ids."),
    workers: int = typer.Option(1, min=1, max=64, help="Group members in this process (threads); scale out with "
                                                       "more processes and more partitions."),
) -> None:
    """Consume exchange.requests, decide every request, record it with its offset, dead-letter bad input.

    SIGTERM or Ctrl-C finishes the batch in hand, then leaves the group.
    """
    import threading

    from services.runtime import Runtime

    stopping = graceful_shutdown()
    settings = settings_from(bootstrap_servers, ledger_url)
    if group_id:
        from dataclasses import replace

        settings = replace(settings, group_id=group_id)
    rt = Runtime(settings)
    members = [rt.gate_worker(f"{name}-{i + 1}") for i in range(workers)]
    for member in members:
        member.stopping = stopping
    log = xlog.get_logger("xledger")
    log.info("gate.starting", name=name, workers=workers, group=settings.group_id)
    threads = [threading.Thread(target=m.run, name=m.name) for m in members[1:]]
    try:
        for t in threads:
            t.start()
        members[0].run()
    finally:
        stopping.set()
        for t in threads:
            t.join()
        for member in members:
            member.consumer.close()
            member.producer.close()
        rt.close()
    for member in members:
        log.info("gate.stopped", worker=member.name, **member.stats)


@relay_app.command("run")
def relay_run(bootstrap_servers: Optional[str] = BOOTSTRAP, ledger_url: Optional[str] = LEDGER_URL) -> None:
    """Publish allowed payloads to inboxes and receipts to senders, from the ledger's outbox.

    Also keeps the Merkle tree (signing checkpoints) and the read models current, in bounded steps.
    """
    from services.runtime import Runtime

    stopping = graceful_shutdown()
    rt = Runtime(settings_from(bootstrap_servers, ledger_url))
    relay = rt.relay()
    relay.stopping = stopping
    try:
        stats = relay.run()
    finally:
        relay.producer.close()
        rt.close()
    xlog.get_logger("xledger").info("relay.stopped", **stats)


@topics_app.command("create")
def topics_create(
    bootstrap_servers: Optional[str] = BOOTSTRAP,
    partitions: int = typer.Option(4, min=1, help="Partitions of exchange.requests and its dead-letter topic."),
) -> None:
    """Create exchange.requests, its dead-letter topic, and inbox/receipts topics for every authority."""
    from services.runtime import Runtime

    names = Runtime(settings_from(bootstrap_servers, None)).create_topics(request_partitions=partitions)
    typer.echo(f"{len(names)} topics present")


@keys_app.command("dev-generate")
def keys_dev_generate(
    output: Path = typer.Option(Path("policies/directory/keys.yaml"), help="Where to write the public keys."),
) -> None:
    """Write the development public keys of every directory authority (embedded demo and tests only)."""
    from policies.directory import Directory
    from services.keyring import write_dev_keys

    typer.echo(f"{write_dev_keys(Directory.load().orgs, output)} authorities written to {output}")


# Command modules register themselves on the shared groups; each owns its own commands.
for _module in (
    "services.cli_agency", "services.cli_schemas", "services.cli_ledger", "services.cli_audit", "services.cli_review",
):
    try:
        _mod = __import__(_module, fromlist=["register"])
    except ModuleNotFoundError as _exc:  # only while a module is still being written
        if _exc.name != _module:
            raise
        continue
    if hasattr(_mod, "register"):
        _mod.register(app=app, subject_app=subject_app, policy_app=policy_app)
    else:  # a module that is one command group, e.g. cli_schemas -> `xledger schemas`
        app.add_typer(_mod.app, name=_module.rsplit("_", 1)[1])


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
