"""What every xledger command shares: the common options, settings from flags and environment,
opening the ledger, and failing cleanly with one line on stderr."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import typer

from services import logging as xlog
from services.config import ConfigError, Settings

BOOTSTRAP = typer.Option(None, "--bootstrap-servers", envvar="XLEDGER_BOOTSTRAP_SERVERS",
                         help="Kafka bootstrap servers HOST:PORT[,…]. Required for services.")
LEDGER_URL = typer.Option(None, "--ledger-url", envvar="XLEDGER_LEDGER_URL",
                          help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB[?schema=S] "
                               "(default sqlite:///var/ledger.sqlite).")


# Exit codes every command shares (README "Exit codes").
BAD_INPUT = 2
UNREACHABLE = 3
# The commands that create a ledger where there is none; every other command refuses a missing one.
CREATORS = "`gate run`, `relay run`, `ledger init` and `demo`"


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


def graceful_shutdown():
    """The service's Shutdown (services.shutdown): a signal ends the set-up at once with exit 0;
    call ``.running()`` once the service loop starts, then a signal sets the event it returns.
    The signal handlers are installed by services.cli before its imports, for the service commands
    only (so a command invoked in-process, as by a test's CliRunner, changes no handlers)."""
    from services.shutdown import SHUTDOWN

    return SHUTDOWN


@contextmanager
def reaching(settings: Settings) -> Iterator[None]:
    """Set-up that connects to the broker or the ledger database: an unreachable one is one line
    and exit 3 within XLEDGER_CONNECT_TIMEOUT seconds, not a traceback."""
    from kafka.errors import KafkaError

    from ledger.application import LEDGER_UNAVAILABLE
    from ledger.presence import LedgerUnreachable

    # kafka-python logs every failed bootstrap attempt; the one line below says it all.
    kafka_log = logging.getLogger("kafka")
    previous = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    except KafkaError as exc:
        fail(f"cannot reach the Kafka broker at {settings.bootstrap_servers} within {settings.connect_timeout} s "
             f"({type(exc).__name__}; XLEDGER_CONNECT_TIMEOUT sets the wait)", UNREACHABLE)
    except (*LEDGER_UNAVAILABLE, LedgerUnreachable) as exc:
        fail(f"cannot reach the ledger database within {settings.connect_timeout} s ({first_line(exc)}; "
             f"XLEDGER_CONNECT_TIMEOUT sets the wait)", UNREACHABLE)
    finally:
        kafka_log.setLevel(previous)


def broker_call(settings: Settings, refused: str, call):
    """One administrative call to the broker: unreachable is `reaching`'s line and exit 3; a broker that
    answers and refuses (not authorised, too few brokers) is `refused: reason` and exit 1."""
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    with reaching(settings):
        try:
            return call()
        except (KafkaConnectionError, KafkaTimeoutError):
            raise
        except KafkaError as exc:
            fail(f"{refused}: {first_line(exc)}", 1)


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


def _open(settings: Settings, create: bool) -> Any:
    from ledger.application import Ledger
    from ledger.presence import require_ledger, require_ledger_or_nothing

    if create:
        require_ledger_or_nothing(settings.ledger_url)
    else:
        require_ledger(settings.ledger_url, connect_timeout=settings.connect_timeout)
    return Ledger(settings.ledger_url, env={"POSTGRES_CONNECT_TIMEOUT": str(settings.connect_timeout)})


# A SQLite ledger another service is writing is locked, not unreachable: a second `gate run` started
# beside a busy one met SQLite's busy timeout while creating its tables and exited. Waited out, bounded.
LOCKED_WAIT_FACTOR = 6


def _opened_while_locked(settings: Settings, create: bool) -> Any:
    import time

    from sqlite3 import OperationalError as SQLiteOperationalError

    from ledger.application import LEDGER_UNAVAILABLE

    deadline = time.monotonic() + LOCKED_WAIT_FACTOR * settings.connect_timeout
    tries = 0
    while True:
        try:
            return _open(settings, create)
        except (SQLiteOperationalError, *LEDGER_UNAVAILABLE) as exc:
            tries += 1
            if "locked" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                fail(f"the ledger database stayed locked for {LOCKED_WAIT_FACTOR * settings.connect_timeout} s "
                     "(another process holds its write lock; XLEDGER_CONNECT_TIMEOUT sets the wait)", UNREACHABLE)
            xlog.get_logger("xledger.cli").warning("ledger.locked_retry", attempt=tries)
            time.sleep(min(0.5 * tries, 2.0))


def open_ledger(settings: Settings | str, *, create: bool = False) -> Any:
    """Open the ledger, or exit with one line: 2 if there is none (or it is not a ledger), 3 if its
    database does not answer. Only the commands that fill a ledger pass ``create``: anyone else
    would answer from an empty ledger made by mistake, or leave ledger tables in a stranger's file."""
    from ledger.application import LEDGER_UNAVAILABLE
    from ledger.presence import LedgerUnreachable, NoLedger
    from ledger.url import LedgerURLError

    if isinstance(settings, str):
        settings = ledger_settings(settings)
    url = settings.ledger_url
    with reaching(settings):
        try:
            return _opened_while_locked(settings, create)
        except LedgerURLError as exc:
            fail(str(exc))
        except NoLedger as exc:
            fail(f"{exc} (check --ledger-url / XLEDGER_LEDGER_URL; only {CREATORS} create a ledger)")
        except (*LEDGER_UNAVAILABLE, LedgerUnreachable, typer.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a directory or an unreadable file: one line
            fail(f"cannot open the ledger: {first_line(exc)}")
