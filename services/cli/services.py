"""The long-running services: `xledger gate run` and `relay run` (`topics …` is in topics.py, `keys …` in keys.py)."""

from __future__ import annotations

from typing import List, Optional

import typer

from services import logging as xlog
from services.cli.common import (BOOTSTRAP, LEDGER_URL, fail, graceful_shutdown, ledger_settings, open_ledger,
                                 reaching, require_trusted, settings_from)

gate_app = typer.Typer(help="The policy gate service.", no_args_is_help=True)
relay_app = typer.Typer(help="The delivery relay (ledger outbox → inboxes and receipts).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Deliveries the relay could not make: list them, retry them.", no_args_is_help=True)
relay_app.add_typer(quarantine_app, name="quarantine")


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

    Creates the ledger if there is none. SIGTERM or Ctrl-C at any moment exits 0: during start-up at
    once, afterwards when the batch in hand is recorded. An unreachable broker or ledger database at
    start-up: one line and exit 3 after XLEDGER_CONNECT_TIMEOUT seconds.
    """
    import threading

    from services.gate import settle_gate_heap
    from services.runtime import Runtime

    shutdown = graceful_shutdown()
    settings = settings_from(bootstrap_servers, ledger_url)
    if group_id:
        from dataclasses import replace

        settings = replace(settings, group_id=group_id)
    require_trusted(settings, "gate run")
    rt = Runtime(settings)
    log = xlog.get_logger("xledger")
    members = []
    try:
        rt.ledger = open_ledger(settings, create=True)  # now, so that a failure is reported as such
        with reaching(settings):
            for i in range(workers):
                members.append(rt.gate_worker(f"{name}-{i + 1}"))
        stopping = shutdown.running()
        for member in members:
            member.stopping = stopping
        settle_gate_heap()
        log.info("gate.starting", gate=name, workers=workers, group=settings.group_id)
        threads = [threading.Thread(target=m.run, name=m.name) for m in members[1:]]
        try:
            for t in threads:
                t.start()
            members[0].run()
        finally:
            stopping.set()
            for t in threads:
                t.join()
    finally:
        for member in members:
            member.consumer.close()
            member.producer.close()
        rt.close()
    for member in members:
        log.info("gate.stopped", worker=member.name, **member.stats)


@relay_app.command("run")
def relay_run(bootstrap_servers: Optional[str] = BOOTSTRAP, ledger_url: Optional[str] = LEDGER_URL) -> None:
    """Publish allowed payloads to inboxes and receipts to senders, from the ledger's outbox.

    A child process it supervises (the maintainer) keeps the Merkle tree (signing checkpoints) and
    the read models current, and in a thread of its own asks the witnesses in XLEDGER_WITNESSES to
    cosign each new checkpoint and publishes it to ledger.checkpoints; neither a witness that is
    down nor a maintainer that died holds up deliveries (the child is restarted, with an alert in
    the log). A Merkle tree found corrupt stops the relay (exit 1). On stop the child finishes its
    step and exits with the relay. A delivery it cannot
    make is quarantined (see `relay quarantine`) and it goes on. Creates the ledger if there is
    none. Signals and start-up failures as for `gate run`.
    """
    from services.cosigning import WitnessConfigError, parse_witnesses
    from services.heap import settle_heap
    from services.runtime import Runtime

    shutdown = graceful_shutdown()
    settings = settings_from(bootstrap_servers, ledger_url)
    require_trusted(settings, "relay run")
    try:
        parse_witnesses(settings.witnesses)  # here, so that a bad list is one line, not a child's crash loop
    except WitnessConfigError as exc:
        fail(f"XLEDGER_WITNESSES: {exc}")
    rt = Runtime(settings)
    relay = maintainer = None
    try:
        rt.ledger = open_ledger(settings, create=True)
        with reaching(settings):
            # The read models' tables too, before the child opens the ledger without creating any.
            rt.read_models  # noqa: B018
            relay = rt.relay(maintain=False)
        # A corrupt Merkle tree stops deliveries, as it did when the relay kept the tree itself.
        maintainer = rt.maintainer(on_integrity_failure=shutdown.requested.set).start()
        relay.stopping = shutdown.running()
        settle_heap()  # as `gate run` does: the collector stops walking what start-up loaded
        stats = relay.run()
    finally:
        shutdown.requested.set()
        if maintainer is not None:
            maintainer.stop()
        if relay is not None:
            relay.producer.close()
        rt.close()
    xlog.get_logger("xledger").info("relay.stopped", **stats)
    if maintainer.integrity_failed.is_set():
        fail("the ledger's Merkle tree does not add up (see maintainer.integrity_failure in the log); "
             "deliveries stopped: run `xledger verify`", code=1)


@quarantine_app.command("list")
def quarantine_list(
    ledger_url: Optional[str] = LEDGER_URL,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The deliveries the relay could not make and has not made since, oldest first, with the reason."""
    import json

    from services.quarantine import in_quarantine

    settings = ledger_settings(ledger_url)
    ledger = open_ledger(settings)
    try:
        with reaching(settings):
            items = in_quarantine(ledger)
    finally:
        ledger.close()
    for q in items:
        if as_json:
            typer.echo(json.dumps(q.to_dict()))
        else:
            typer.echo(f"{q.delivery}\t{q.kind}\t{q.recipient or '(sender)'}\t{q.reason}\t{q.attempts} attempt(s)\t"
                       f"since {q.since.isoformat(timespec='seconds')}\t{q.detail}")
    if not as_json:
        typer.echo(f"{len(items)} deliveries in quarantine", err=True)


@quarantine_app.command("retry")
def quarantine_retry(
    delivery: Optional[List[str]] = typer.Argument(None, help="Delivery ids to retry (default: all in quarantine)."),
    bootstrap_servers: Optional[str] = BOOTSTRAP,
    ledger_url: Optional[str] = LEDGER_URL,
) -> None:
    """Make the quarantined deliveries now, under their original delivery ids (fix the cause first,
    e.g. start with the right XLEDGER_MASTER_KEY). Exit 1 if any still fails; it stays in quarantine."""
    from services.quarantine import QuarantineRetry
    from services.runtime import Runtime

    settings = settings_from(bootstrap_servers, ledger_url)
    require_trusted(settings, "relay quarantine retry")  # it opens sealed payloads
    rt = Runtime(settings)
    rt.ledger = open_ledger(settings)
    producer = None
    try:
        with reaching(settings):
            from services.kafka import make_producer

            producer = make_producer(settings, client_id="quarantine-retry")
            report = QuarantineRetry(rt.ledger, producer, rt.sealer, rt.codec).retry(delivery or None)
    finally:
        if producer is not None:
            producer.close()
        rt.close()
    typer.echo(f"delivered {len(report.delivered)}, erased meanwhile {len(report.erased)}, "
               f"already made {len(report.already)}, failed {len(report.failed)}")
    for delivery_id, reason in report.failed:
        typer.echo(f"still failing: {delivery_id} {reason}", err=True)
    if not report.ok:
        raise typer.Exit(1)


