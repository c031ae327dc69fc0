"""Stopping a service on SIGTERM or SIGINT, at any moment, with exit 0 and nothing lost.

Until the service runs, a signal ends the process at once with exit 0: nothing has
been taken on yet, and the set-up (imports, connecting to the broker or a database)
may block for seconds. From ``running()`` on, a signal only sets an event, and the
service finishes what it holds (the gate its batch, the relay its page) and stops.

In start-up the process ends with ``os._exit(0)``, not by raising SystemExit: a signal handler
can run anywhere, and a SystemExit raised there can be lost or changed. Python drops it in a weakref
callback or a ``__del__`` ("Exception ignored in"; the import system's module-lock callbacks run
during start-up's imports), kafka-python's connection code catches BaseException and retries, a
``finally`` that fails replaces it, and multiprocessing's exit handler joins a maintainer child that
is still running. Nothing is lost by not unwinding: start-up has taken on no work, an open database
transaction is rolled back by the database, and a child started already (the relay's maintainer)
sees its stop pipe close and exits by itself, as after a SIGKILL. The services served by uvicorn
never call ``running()``: uvicorn handles the signal itself while it serves, stops gracefully, and
re-raises it afterwards, which ends the process here.

A process started by multiprocessing (the maintainer child, started with 'spawn') imports the command
line again as ``__mp_main__`` with the parent's argv; it handles no signals here
(``handles_signals``): the child ignores SIGTERM and SIGINT itself and stops when the relay says so.

``install_for(argv)`` is called by the ``xledger`` command line before it imports
anything heavy, and only for the long-running services: a SIGTERM to ``xledger
verify`` must not look like success.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

# The commands that run until stopped: argv[1:3], or argv[1] for a one-word command.
SERVICES = frozenset({("gate", "run"), ("relay", "run"), ("review", "serve"), ("witness", "serve"),
                      ("ledger", "serve"), ("monitor",)})


class Shutdown:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self._running = False
        self.installed = False

    def install(self) -> Shutdown:
        if threading.current_thread() is threading.main_thread() and not self.installed:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)
            self.installed = True
        return self

    def running(self) -> threading.Event:
        """From now on a signal only sets the returned event; the caller stops when it is set."""
        self._running = True
        return self.requested

    # The event's own calls, for a caller that waits on the Shutdown itself.
    def wait(self, timeout: float | None = None) -> bool:
        return self.requested.wait(timeout)

    def is_set(self) -> bool:
        return self.requested.is_set()

    def set(self) -> None:
        self.requested.set()

    def _handle(self, signum, frame) -> None:
        self.requested.set()
        if not self._running:
            _exit_0_now()


SHUTDOWN = Shutdown()


def _exit_0_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed or broken stream must not stop the exit
            pass
    os._exit(0)


def handles_signals(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether the process started with ``argv`` installs the handlers: the service commands, and
    not in a child that multiprocessing started (whose ``orig_argv`` ends with its own flag)."""
    if "--multiprocessing-fork" in orig_argv:
        return False
    return tuple(argv[1:3]) in SERVICES or tuple(argv[1:2]) in SERVICES


def install_for(argv: list[str]) -> None:
    if handles_signals(argv, getattr(sys, "orig_argv", [])):
        SHUTDOWN.install()
