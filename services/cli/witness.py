"""`xledger witness …` (run by an independent body) and `xledger monitor` (run by an authority or auditor).

Registered by services.cli. Exit codes: 0 ok, 1 the log forked or rolled back (monitor),
2 bad input (a one-line reason on stderr), 3 the log could not be checked (monitor --once).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from services.cli.common import fail


def register(app: typer.Typer, **_groups) -> None:  # noqa: C901
    witness_app = typer.Typer(help="A witness: cosigns a ledger's checkpoints only while its history only grows "
                                   "(C2SP tlog-witness).", no_args_is_help=True)
    app.add_typer(witness_app, name="witness")

    name_opt = typer.Option(..., "--name", envvar="XLEDGER_WITNESS_NAME",
                            help="The witness's key name, a schema-less URL such as tilsyn.example/witness1.")
    key_file_opt = typer.Option(..., "--key-file", envvar="XLEDGER_WITNESS_KEY_FILE",
                                help="File holding the witness's private key (from `xledger witness keygen`).")

    @witness_app.command("keygen")
    def keygen(
        name: str = name_opt,
        out: Path = typer.Option(..., "--out", help="Where to write the private key (mode 0600; never overwritten)."),
    ) -> None:
        """Make the witness's own Ed25519 key; print its public cosignature key (vkey) for the log operator."""
        from ledger.checkpoint import encode_private_key, generate_keypair
        from ledger.note import Cosigner, NoteError

        private, _ = generate_keypair()
        try:
            cosigner = Cosigner(name, private)
        except NoteError as exc:
            fail(f"--name: {exc}")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fail(f"{out} exists; a witness key is never overwritten")
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
        with os.fdopen(fd, "w") as f:
            f.write(encode_private_key(private) + "\n")
        typer.echo(cosigner.verifier().vkey)
        typer.echo(f"private key written to {out}; give the line above to the log operator (XLEDGER_WITNESSES "
                   "'<vkey>@<url>') and to auditors (verify --witness)", err=True)

    @witness_app.command("serve")
    def serve(
        name: str = name_opt,
        key_file: Path = key_file_opt,
        db: Path = typer.Option(Path("var/witness.sqlite"), "--db", envvar="XLEDGER_WITNESS_DB",
                                help="The witness's own SQLite database (created if missing)."),
        log_key: List[str] = typer.Option([], "--log", help="A log to witness: its note key '<origin>+<hash>+<key>' "
                                          "(`xledger ledger checkpoint-key --note`). Repeat for several."),
        logs_file: Optional[Path] = typer.Option(None, "--logs-file", envvar="XLEDGER_WITNESS_LOGS",
                                                 help="File with one log note key per line."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8070, "--port", min=1, max=65535, help="Port to listen on."),
    ) -> None:
        """Serve POST /add-checkpoint (C2SP tlog-witness): cosign consistent growth, refuse forks and rollbacks.

        The last cosigned checkpoint of every log is kept in --db and survives restarts and crashes.
        Refusals are logged (witness.refused) and kept in the database as evidence.
        """
        import uvicorn

        from services import logging as xlog
        from services.witness import WitnessSetupError, build_witness, create_witness_app

        xlog.configure(os.environ.get("XLEDGER_LOG_LEVEL", "INFO"))
        lines = list(log_key)
        if logs_file is not None:
            try:
                lines += logs_file.read_text().splitlines()
            except OSError as exc:
                fail(f"cannot read {logs_file}: {exc.strerror or exc}")
        try:
            witness = build_witness(name, key_file, db, lines)
        except WitnessSetupError as exc:
            fail(str(exc))
        xlog.get_logger("xledger").info("witness.starting", vkey=witness.cosigner.verifier().vkey,
                                        logs=sorted(witness.logs), port=port)
        typer.echo(f"witness {witness.cosigner.verifier().vkey} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
        uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning")

    @app.command("monitor")
    def monitor(
        log_url: str = typer.Option(..., "--log-url", envvar="XLEDGER_MONITOR_LOG_URL",
                                    help="The log's read-only endpoint (`xledger ledger serve`), for checkpoints and "
                                         "consistency proofs."),
        log_key: str = typer.Option(..., "--log-key", help="The log's public checkpoint key (base64, PEM, or a file)."),
        state: Path = typer.Option(..., "--state", help="Where the newest verified checkpoint is kept (JSON); "
                                                        "`xledger verify --trusted` reads it."),
        origin: Optional[str] = typer.Option(None, "--origin", help="Accept only checkpoints of this log origin."),
        key_history: Optional[Path] = typer.Option(None, "--key-history", envvar="XLEDGER_CHECKPOINT_KEY_HISTORY",
                                                   help="The log's retired keys (after a key rotation)."),
        topic: bool = typer.Option(False, "--topic", help="Also follow the compacted topic ledger.checkpoints "
                                                          "(needs --bootstrap-servers)."),
        bootstrap_servers: Optional[str] = typer.Option(None, "--bootstrap-servers", envvar="XLEDGER_BOOTSTRAP_SERVERS",
                                                        help="Kafka bootstrap servers, with --topic."),
        witness: List[str] = typer.Option([], "--witness", help="A witness key (vkey); only checkpoints with a "
                                                                "quorum of cosignatures are saved. Repeat."),
        quorum: Optional[int] = typer.Option(None, "--quorum", min=1, help="Cosignatures required (default: all)."),
        interval: float = typer.Option(5.0, "--interval", min=0.05, help="Seconds between looks at the log."),
        once: bool = typer.Option(False, "--once", help="Look once and exit (0 ok, 1 fork/rollback, 3 unreachable)."),
    ) -> None:
        """Follow the log's checkpoints and check that each extends the last one seen; exit 1 on a fork or rollback.

        Keeps the newest checkpoint it verified in --state. SIGTERM or Ctrl-C stops it (exit 0).
        """
        from ledger.checkpoint import CheckpointError, CheckpointVerifier
        from services import logging as xlog
        from services.cli.common import graceful_shutdown
        from services.cli.ledger import _key_history, _public_key, _witness_keys
        from services.monitor import HttpLogClient, LogUnavailable, Monitor, MonitorAlarm

        stopping = graceful_shutdown().running()  # a signal ends the loop below: exit 0
        xlog.configure(os.environ.get("XLEDGER_LOG_LEVEL", "WARNING"))
        key, _ = _public_key(log_key, None, "--log-key")
        witnesses = _witness_keys(witness)
        if quorum is not None and quorum > len(witnesses):
            fail(f"--quorum {quorum} needs at least that many --witness keys (got {len(witnesses)})")
        if topic and not bootstrap_servers:
            fail("--topic needs --bootstrap-servers (or XLEDGER_BOOTSTRAP_SERVERS)")
        verifier = CheckpointVerifier(key, origin=origin, history=_key_history(key_history))
        mon = Monitor(verifier, HttpLogClient(log_url), state, witnesses, quorum or len(witnesses))
        try:
            mon.state  # a damaged state file is bad input, not a fork
        except CheckpointError as exc:
            fail(f"--state {state} is not a monitor state file: {exc}")
        source = _topic_source(bootstrap_servers) if topic else None
        log = xlog.get_logger("xledger")
        try:
            while True:
                try:
                    if source is not None:
                        for text in source.poll():
                            _observe_text(mon, text, log)
                    outcome = mon.check_latest()
                    if once:
                        saved = mon.state
                        size = saved.checkpoint.tree_size if saved else 0
                        typer.echo(f"OK: {outcome}; newest verified checkpoint size {size}")
                        return
                except LogUnavailable as exc:
                    log.warning("monitor.log_unavailable", error=str(exc)[:200])
                    if once:
                        typer.echo(f"could not check: {exc}", err=True)
                        raise typer.Exit(3)
                except MonitorAlarm as alarm:
                    log.error("monitor.alarm", alert=True, kind=alarm.kind)
                    typer.echo(f"{alarm.kind.upper()}: {alarm}", err=True)
                    raise typer.Exit(1)
                if stopping.wait(interval):
                    return
        finally:
            if source is not None:
                source.close()


def _observe_text(mon, text: str, log) -> None:
    from ledger.checkpoint import CheckpointError, SignedCheckpoint

    try:
        signed = SignedCheckpoint.parse(text)
    except CheckpointError as exc:
        log.warning("monitor.malformed_checkpoint", error=str(exc)[:200])
        return
    mon.observe(signed)


def _topic_source(bootstrap: str):
    from kafka import KafkaConsumer

    from services.monitor import TopicSource
    from services.topics import CHECKPOINTS

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    except Exception as exc:  # noqa: BLE001 - an unreachable broker: one line
        fail(f"cannot reach the broker {bootstrap}: {type(exc).__name__}")
    return TopicSource(consumer, CHECKPOINTS)
