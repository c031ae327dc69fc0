"""What every xledger command shares: the common options, settings from flags and environment,
opening the ledger, and failing cleanly with one line on stderr."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NoReturn

import typer

from services import logging as xlog
from services.config import ConfigError, Settings

BOOTSTRAP = typer.Option(None, "--bootstrap-servers", envvar="XLEDGER_BOOTSTRAP_SERVERS",
                         help="Kafka bootstrap servers HOST:PORT[,…]. Required for services.")
LEDGER_URL = typer.Option(None, "--ledger-url", envvar="XLEDGER_LEDGER_URL",
                          help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB[?schema=S] "
                               "(default sqlite:///var/ledger.sqlite).")


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: 2 for bad input unless the caller says otherwise."""
    typer.echo(f"error: {message}".replace("\n", " "), err=True)
    raise typer.Exit(code)


def refuse(exc: ConfigError) -> NoReturn:
    """Exit 2 with one line per offending setting on stderr."""
    for line in exc.lines:
        typer.echo(f"error: {line}".replace("\n", " "), err=True)
    raise typer.Exit(2)


def require_trusted(settings: Settings, command: str) -> None:
    """Refuse to start ``command`` on a missing or public secret or key set outside development
    (``services.trust``): one line per offending setting, exit 2."""
    from services import trust

    try:
        trust.require(settings, command)
    except ConfigError as exc:
        refuse(exc)


def require_development(settings: Settings, what: str) -> None:
    """Refuse a development shortcut (``what``) outside development: one line, exit 2."""
    from services import trust

    try:
        trust.require_development(settings, what)
    except ConfigError as exc:
        refuse(exc)


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


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
    if need_broker:
        from services.kafka import client_config

        try:
            client_config(settings)  # an incomplete SASL set-up fails here, in one line, not at the broker
        except ConfigError as exc:
            fail(str(exc))
    xlog.configure(settings.log_level)
    return settings


def ledger_settings(ledger_url: str | None) -> Settings:
    """Settings for a command that needs the ledger but no broker."""
    try:
        return Settings.from_env(ledger_url=ledger_url)
    except ConfigError as exc:
        fail(str(exc))


def open_ledger(url: str, *, must_exist: bool = True) -> Any:
    """Open the ledger or exit 2 with a one-line reason (never create an empty one by mistake)."""
    from ledger.application import Ledger
    from ledger.url import LedgerURLError

    if must_exist and url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:" and not Path(path).is_file():
            fail(f"no ledger at {path} (check --ledger-url / XLEDGER_LEDGER_URL)")
    try:
        return Ledger(url)
    except LedgerURLError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL unreachable: one line, exit 2
        fail(f"cannot open the ledger: {first_line(exc)}")
