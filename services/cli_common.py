"""What every xledger command shares: the common options, settings from flags and environment, failing cleanly."""

from __future__ import annotations

import threading

import typer

from services import logging as xlog
from services.config import ConfigError, Settings

BOOTSTRAP = typer.Option(None, "--bootstrap-servers", envvar="XLEDGER_BOOTSTRAP_SERVERS",
                         help="Kafka bootstrap servers HOST:PORT[,…]. Required for services.")
LEDGER_URL = typer.Option(None, "--ledger-url", envvar="XLEDGER_LEDGER_URL",
                          help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default sqlite:///var/ledger.sqlite).")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def graceful_shutdown() -> threading.Event:
    """SIGTERM/SIGINT set the returned event; installed first, so a signal during start-up is not fatal."""
    import signal

    event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: event.set())
    return event


def settings_from(bootstrap: str | None, ledger_url: str | None, *, need_broker: bool = True) -> Settings:
    try:
        settings = Settings.from_env(bootstrap_servers=bootstrap, ledger_url=ledger_url)
    except ConfigError as exc:
        fail(str(exc))
    if need_broker and settings.embedded:
        fail("--bootstrap-servers (or XLEDGER_BOOTSTRAP_SERVERS) is required; `xledger demo` runs an embedded broker")
    xlog.configure(settings.log_level)
    return settings
