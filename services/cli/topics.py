"""`xledger topics create` and `xledger topics acls`: the Kafka topics and who may use them.

Mounted by services.cli as the `topics` group. Exit codes: 0 ok, 1 the broker refused
something, 2 bad input, 3 the broker could not be reached (a one-line reason on stderr).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from services.cli.common import BOOTSTRAP, broker_call, fail, settings_from

app = typer.Typer(help="Kafka topics and their ACLs.", no_args_is_help=True, add_completion=False)


@app.command("create")
def create(
    bootstrap_servers: Optional[str] = BOOTSTRAP,
    partitions: int = typer.Option(4, min=1, help="Partitions of exchange.requests and its dead-letter topic."),
    replication_factor: Optional[int] = typer.Option(
        None, "--replication-factor", min=1, envvar="XLEDGER_REPLICATION_FACTOR",
        help="Copies of every topic (default 3; a single-node broker needs 1).", show_default=False),
    min_insync_replicas: Optional[int] = typer.Option(
        None, "--min-insync-replicas", min=1, envvar="XLEDGER_MIN_INSYNC_REPLICAS",
        help="Copies that must hold a write before it counts, with acks=all (default 2).", show_default=False),
) -> None:
    """Create exchange.requests, its dead-letter topic, inbox/receipts topics for every authority, and the
    compacted ledger.checkpoints (cosigned checkpoints, keyed by the log origin).

    Topics that exist already are left as they are.
    """
    from services.runtime import Runtime

    settings = settings_from(bootstrap_servers, None)
    settings = replace(
        settings,
        replication_factor=replication_factor or settings.replication_factor,
        min_insync_replicas=min_insync_replicas or settings.min_insync_replicas,
    )
    if settings.min_insync_replicas > settings.replication_factor:
        fail(f"--min-insync-replicas ({settings.min_insync_replicas}) cannot exceed --replication-factor "
             f"({settings.replication_factor})")
    names = broker_call(settings, "topics not created",
                        lambda: Runtime(settings).create_topics(request_partitions=partitions))
    typer.echo(f"{len(names)} topics present (replication factor {settings.replication_factor}, "
               f"min.insync.replicas {settings.min_insync_replicas} for those created now)")


@app.command("acls")
def acls(
    apply: bool = typer.Option(False, "--apply", help="Create the bindings on the broker (as its super user)."),
    as_json: bool = typer.Option(False, "--json", help="Print the bindings as JSON instead of a table."),
    directory: Optional[Path] = typer.Option(
        None, "--directory", file_okay=False, help="Directory of authorities (default: the shipped one)."),
    gate_group: Optional[str] = typer.Option(None, "--gate-group", envvar="XLEDGER_GROUP_ID",
                                             help="The gate's consumer group (default xledger-gate)."),
    bootstrap_servers: Optional[str] = BOOTSTRAP,
) -> None:
    """The broker ACL bindings derived from the directory: print them, or create them with --apply.

    Each authority (SCRAM user = its id with ':' as '.', e.g. kommune.326) may write exchange.requests
    and read its own inbox.* and receipts.* topics and ledger.checkpoints; the gate (xledger-gate) reads
    the requests and writes the dead-letter topic; the relay (xledger-relay) writes inboxes, receipts and
    ledger.checkpoints. Kafka must deny what no binding allows (allow.everyone.if.no.acl.found=false).
    """
    from policies.directory import Directory, DirectoryError
    from services.acls import AclError, apply as apply_bindings, derive

    settings = settings_from(bootstrap_servers, None, need_broker=apply)
    try:
        orgs = Directory.load(directory).orgs
        bindings = derive(orgs, gate_group=gate_group or settings.group_id)
    except (DirectoryError, AclError, ValueError) as exc:
        fail(str(exc))
    if apply:
        from services.kafka import make_admin

        def apply_all():
            admin = make_admin(settings)
            try:
                return apply_bindings(admin, bindings)
            finally:
                admin.close()

        refused = broker_call(settings, "bindings not applied", apply_all)
        for binding, error in refused:
            typer.echo(f"refused: {binding.principal} {binding.operation} {binding.resource_type} "
                       f"{binding.pattern} {binding.name}: {error}", err=True)
        if refused:
            fail(f"{len(refused)} of {len(bindings)} bindings were refused", 1)
        typer.echo(f"{len(bindings)} bindings applied for {len(orgs)} authorities, the gate and the relay")
        return
    if as_json:
        typer.echo(json.dumps([b.as_dict() for b in bindings], indent=2))
        return
    # Plain aligned columns rather than a boxed table: names stay whole and lines stay greppable.
    rows = [("principal", "operation", "resource", "pattern", "name")]
    rows += [(b.principal, b.operation, b.resource_type, b.pattern, b.name) for b in bindings]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    typer.echo(f"{len(bindings)} ALLOW bindings (any host) for {len(orgs)} authorities, the gate and the relay; "
               f"Kafka denies everything else")
