"""The long-running services: `xledger gate run` and `relay run` (`topics …` is in topics.py, `keys …` in keys.py)."""

from __future__ import annotations

from typing import Optional

import typer

from services import logging as xlog
from services.cli.common import BOOTSTRAP, LEDGER_URL, fail, graceful_shutdown, require_trusted, settings_from

gate_app = typer.Typer(help="The policy gate service.", no_args_is_help=True)
relay_app = typer.Typer(help="The delivery relay (ledger outbox → inboxes and receipts).", no_args_is_help=True)


def register(app: typer.Typer, **_: typer.Typer) -> None:
    app.add_typer(gate_app, name="gate")
    app.add_typer(relay_app, name="relay")


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
    require_trusted(settings, "gate run")
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
    In a thread of its own it asks the witnesses in XLEDGER_WITNESSES to cosign each new checkpoint
    and publishes it to ledger.checkpoints; a witness that is down never holds up deliveries.
    """
    from services.cosigning import WitnessConfigError
    from services.runtime import Runtime

    stopping = graceful_shutdown()
    settings = settings_from(bootstrap_servers, ledger_url)
    require_trusted(settings, "relay run")
    rt = Runtime(settings)
    try:
        rt.start_cosigning(stopping)
    except WitnessConfigError as exc:
        fail(f"XLEDGER_WITNESSES: {exc}")
    relay = rt.relay()
    relay.stopping = stopping
    try:
        stats = relay.run()
    finally:
        stopping.set()
        relay.producer.close()
        rt.close()
    xlog.get_logger("xledger").info("relay.stopped", **stats)


