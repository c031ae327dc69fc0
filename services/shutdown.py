"""Stopping a service on SIGTERM or SIGINT, at any moment, with exit 0 and nothing lost.

Until the service runs, a signal ends the process at once with exit 0: nothing has
been taken on yet, and the set-up (imports, connecting to the broker or a database)
may block for seconds. From ``running()`` on, a signal only sets an event, and the
service finishes what it holds (the gate its batch, the relay its page) and stops.

Python ignores an exception raised in a weakref callback or a ``__del__`` (it prints "Exception
ignored in"), and a signal handler can run inside one: the import system's module-lock callbacks
run during start-up's imports. The SystemExit is then lost and start-up goes on; ``main()`` of the
command line turns whatever start-up then ends with into exit 0 (``signalled_in_start_up``), and a
service that reaches ``running()`` finds its event already set and stops at once.

``install_for(argv)`` is called by the ``xledger`` command line before it imports
anything heavy, and only for the long-running services: a SIGTERM to ``xledger
verify`` must not look like success.
"""

from __future__ import annotations

import signal
import threading

# The commands that run until stopped: argv[1:3], or argv[1] for a one-word command.
SERVICES = frozenset({("gate", "run"), ("relay", "run"), ("review", "serve"), ("witness", "serve"),
                      ("ledger", "serve"), ("monitor",)})


class Shutdown:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self._running = False
        self.installed = False
        # A signal came before running(): start-up's outcome, whatever it is, is exit 0.
        self.signalled_in_start_up = False

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
            self.signalled_in_start_up = True
            raise SystemExit(0)


SHUTDOWN = Shutdown()


def install_for(argv: list[str]) -> None:
    if tuple(argv[1:3]) in SERVICES or tuple(argv[1:2]) in SERVICES:
        SHUTDOWN.install()
