"""The maintainer: what is derived from the ledger, kept current in a process of its own beside the relay.

The Merkle tree with its signed checkpoints, the read models, and the witnesses' cosignatures of
each new checkpoint (``Runtime.maintain``, ``Runtime.start_cosigning``). `xledger relay run`
starts it as a child process and supervises it (``MaintainerProcess``): the relay's thread is the
serial stage of the pipeline, and these steps had been 30–39 % of it (bench/README.md, "Where it
waits"); in a process of their own they run on the other core while the relay only delivers.

- The child is started with the 'spawn' context (no copy of the relay's threads, locks or open
  connections) and opens the ledger the relay has opened already without eventsourcing's DDL
  (``CREATE_TABLE=n``): two processes creating a brand-new PostgreSQL ledger at once raced on the
  catalog ('tuple concurrently updated').
- It dies (a crash, the OOM killer): logged as an alert and started again after a back-off that
  doubles up to ``RESTART_BACKOFF[1]``; deliveries go on meanwhile, and the restarted child takes
  up where the ledger says the tree and the read models stand.
- The relay stops (SIGTERM, Ctrl-C, the end of ``run``): the child finishes its step and exits,
  and is joined (terminated, then killed, if it overstays ``STOP_TIMEOUT_S``). If the relay is
  killed outright, the kernel closes the relay's end of the child's stop pipe, and the child
  finishes its step and exits by itself.
- On SQLite the ledger then has three writers (gates, relay, maintainer): each waits for the
  write lock (``SQLITE_LOCK_TIMEOUT``), and a step that still finds it locked is retried.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from typing import Any

from services.config import Settings
from services.logging import get_logger

log = get_logger(__name__)

# Between steps once everything derived is current: about how far derived data trails the log when
# the relay keeps up. A step has a fixed cost (its transactions, the tree's and read models'
# positions), so short waits make small, dear steps: measured in process, steps of 25 / 100 / 500
# exchanges cost 426 / 236 / 188 µs per exchange on PostgreSQL and 301 / 218 / 223 on SQLite.
IDLE_WAIT_S = 0.5
# First and longest wait before a child that died is started again.
RESTART_BACKOFF = (0.5, 30.0)
# A child that lived this long before it died starts again after the shortest wait.
HEALTHY_AFTER_S = 60.0
# How long the relay waits for the child to finish its step on shutdown before terminating it.
STOP_TIMEOUT_S = 30.0


def maintain_until(rt: Any, stopping: threading.Event, *, idle_wait: float = IDLE_WAIT_S) -> int:
    """Bounded maintain steps until ``stopping`` is set: back to back while behind, ``idle_wait``
    apart once current; an unavailable ledger is waited out. Returns the number of steps."""
    from ledger.application import LEDGER_UNAVAILABLE
    from services.runtime import MAINTAIN_STEP

    steps, backoff = 0, 0.5
    while not stopping.is_set():
        try:
            current = rt.maintain(max_entries=MAINTAIN_STEP)
            steps, backoff = steps + 1, 0.5
        except LEDGER_UNAVAILABLE as exc:
            log.warning("maintainer.ledger_unavailable", error=type(exc).__name__, retry_in_s=backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        if current:
            stopping.wait(idle_wait)
    return steps


def _open_ledger(settings: Settings, stopping: threading.Event) -> Any:
    """The ledger the parent opened, without eventsourcing's DDL; a locked or unavailable database
    is waited out (None if asked to stop meanwhile)."""
    from sqlite3 import OperationalError as SQLiteOperationalError

    from ledger.application import LEDGER_UNAVAILABLE, Ledger

    backoff = 0.5
    while not stopping.is_set():
        try:
            return Ledger(settings.ledger_url, env={"POSTGRES_CONNECT_TIMEOUT": str(settings.connect_timeout),
                                                    "CREATE_TABLE": "n"})
        except (SQLiteOperationalError, *LEDGER_UNAVAILABLE) as exc:
            log.warning("maintainer.ledger_unavailable", error=type(exc).__name__, retry_in_s=backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)
    return None


def _watch(stop: Any, stopping: threading.Event) -> None:
    """Sets ``stopping`` once the parent's end of the ``stop`` pipe is closed: by ``stop()``, or by
    the kernel when the parent is killed without a chance to ask. A pipe, not a shared Event: a
    child killed inside ``Event.wait`` leaves the Event's lock taken, and the parent's ``set()``
    then blocks for ever."""
    from multiprocessing.connection import wait

    wait([stop])
    stopping.set()


def child_main(settings: Settings, stop: Any, idle_wait: float = IDLE_WAIT_S) -> None:
    """The child process: cosigning in a thread, maintain steps in the main thread, until the parent
    closes its end of ``stop`` (the read end of a pipe) or dies."""
    from services import logging as xlog
    from services.heap import settle_heap
    from services.runtime import Runtime

    stopping = threading.Event()
    # Ctrl-C reaches the whole process group: the relay stops first and then asks this child
    # (a child that stopped on its own would be restarted as if it had died). SIGTERM to the
    # child alone: finish the step, then exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    xlog.configure(settings.log_level)
    threading.Thread(target=_watch, args=(stop, stopping), name="maintainer-watch", daemon=True).start()
    ledger = _open_ledger(settings, stopping)
    if ledger is None:
        return
    rt = Runtime(settings)
    rt.ledger = ledger
    try:
        rt.start_cosigning(stopping)  # in this process, so that integrate() wakes it
        settle_heap()
        log.info("maintainer.started")
        steps = maintain_until(rt, stopping, idle_wait=idle_wait)
        log.info("maintainer.stopped", steps=steps)
    finally:
        stopping.set()
        rt.close()


class MaintainerProcess:
    """The maintainer as the relay's supervised child: ``start()``, then ``stop()`` (always)."""

    def __init__(self, settings: Settings, *, idle_wait: float = IDLE_WAIT_S,
                 backoff: tuple[float, float] = RESTART_BACKOFF, stop_timeout: float = STOP_TIMEOUT_S):
        self.settings, self.idle_wait, self.backoff, self.stop_timeout = settings, idle_wait, backoff, stop_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._stop: Any = None  # the write end of the current child's stop pipe
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.process: Any = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> MaintainerProcess:
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="maintainer-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _spawn(self) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=child_main, args=(self.settings, reader, self.idle_wait),
                                    name="xledger-maintainer", daemon=True)
        process.start()
        reader.close()  # the child's end: only the child may hold it, so that closing ours is seen
        self.process, self._stop, self._started_at = process, writer, time.monotonic()
        log.info("maintainer.spawned", pid=process.pid)

    def _supervise(self) -> None:
        from multiprocessing.connection import wait

        delay = self.backoff[0]
        while not self._stopping.is_set():
            process = self.process
            if not wait([process.sentinel], timeout=0.5) or self._stopping.is_set():
                continue
            process.join()
            if time.monotonic() - self._started_at >= HEALTHY_AFTER_S:
                delay = self.backoff[0]
            log.error("maintainer.died", alert=True, pid=process.pid, exitcode=process.exitcode,
                      restart_in_s=delay)
            self._stop.close()
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.backoff[1])
            self._spawn()
            self.restarts += 1

    def stop(self) -> None:
        """Asks the child to finish its step and waits for it; terminates (then kills) one that overstays."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
        process = self.process
        if process is None:
            return
        self._stop.close()
        process.join(self.stop_timeout)
        if process.is_alive():
            log.error("maintainer.stop_timeout", alert=True, pid=process.pid, waited_s=self.stop_timeout)
            process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        log.info("maintainer.joined", pid=process.pid, exitcode=process.exitcode, restarts=self.restarts)
