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
- It dies (a crash, the OOM killer): logged as an alert (the child logs its error first, where it
  can) and started again after a back-off that doubles up to ``RESTART_BACKOFF[1]``; deliveries go
  on meanwhile, and the restarted child takes up where the ledger says the tree and the read models
  stand. A child that cannot be started (out of memory, out of processes) is retried the same way.
- The Merkle tree is found corrupt (``TreeCorrupted``, ``MerkleError``: stored history does not add
  up): the child exits with ``INTEGRITY_EXIT``, which is not restarted; the relay stops delivering
  and exits non-zero, as it did when it kept the tree itself. Tampering is for an operator to look at.
- The relay stops (SIGTERM, Ctrl-C, the end of ``run``): the child finishes its step and exits,
  and is joined (killed if it overstays ``STOP_TIMEOUT_S``). The child ignores SIGINT and SIGTERM
  (both reach it with the relay's process group, e.g. from systemd) and stops only when the relay
  closes its end of the stop pipe; if the relay is killed outright, the kernel closes it, and the
  child finishes its step and exits by itself.
- It gets the settings without the master key, the pseudonym secret and the review app's session
  secret: deriving data from the log needs none of them.
- Cosigning that cannot start (the broker for ``ledger.checkpoints`` unreachable) is retried in its
  thread; the tree and the read models need only the database and go on meanwhile.
- On SQLite the ledger then has three writers (gates, relay, maintainer): each waits for the
  write lock (``SQLITE_LOCK_TIMEOUT``), and a step that still finds it locked is retried.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import threading
import time
from typing import Any, Callable

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
# How long the relay waits for the child to finish its step on shutdown before killing it.
STOP_TIMEOUT_S = 30.0
# The child's exit status when the Merkle tree does not add up: not restarted, the relay stops.
INTEGRITY_EXIT = 70
# Secrets the child does not need (Settings fields), left out of what is sent to it.
_NOT_FOR_THE_CHILD = ("master_key", "pseudonym_secret", "session_secret")


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

    from ledger.integrity import TreeCorrupted
    from ledger.merkle import MerkleError

    stopping = threading.Event()
    # Ctrl-C and a SIGTERM to the process group (systemd's default) reach the child with the relay:
    # the relay finishes its page and then closes the stop pipe. A child that stopped on its own
    # would be restarted as if it had died, with an alert, on every routine stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    xlog.configure(settings.log_level)
    threading.Thread(target=_watch, args=(stop, stopping), name="maintainer-watch", daemon=True).start()
    rt = None
    try:
        ledger = _open_ledger(settings, stopping)
        if ledger is None:
            return
        rt = Runtime(settings)
        rt.ledger = ledger
        # In this process, so that integrate() wakes it; retried in its thread while it cannot start.
        threading.Thread(target=_start_cosigning, args=(rt, stopping), name="maintainer-cosigning",
                         daemon=True).start()
        settle_heap()
        log.info("maintainer.started")
        steps = maintain_until(rt, stopping, idle_wait=idle_wait)
        log.info("maintainer.stopped", steps=steps)
    except (TreeCorrupted, MerkleError) as exc:
        # Messages name leaves and nodes, never an entry's content.
        log.error("maintainer.integrity_failure", alert=True, error=type(exc).__name__, detail=str(exc))
        raise SystemExit(INTEGRITY_EXIT) from None
    except Exception as exc:
        log.error("maintainer.failed", alert=True, error=type(exc).__name__)
        raise
    finally:
        stopping.set()
        if rt is not None:
            rt.close()


def _start_cosigning(rt: Any, stopping: threading.Event) -> None:
    backoff = 1.0
    while not stopping.is_set():
        try:
            rt.start_cosigning(stopping)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. NoBrokersAvailable for ledger.checkpoints' producer
            log.warning("maintainer.cosigning_unavailable", error=type(exc).__name__, retry_in_s=backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, 60.0)


class MaintainerProcess:
    """The maintainer as the relay's supervised child: ``start()``, then ``stop()`` (always)."""

    def __init__(self, settings: Settings, *, idle_wait: float = IDLE_WAIT_S,
                 backoff: tuple[float, float] = RESTART_BACKOFF, stop_timeout: float = STOP_TIMEOUT_S,
                 on_integrity_failure: Callable[[], Any] | None = None):
        self.settings = dataclasses.replace(settings, **{name: "" for name in _NOT_FOR_THE_CHILD})
        self.idle_wait, self.backoff, self.stop_timeout = idle_wait, backoff, stop_timeout
        # Set when the child found the tree corrupt; ``on_integrity_failure`` is then called (the relay stops).
        self.integrity_failed = threading.Event()
        self.on_integrity_failure = on_integrity_failure
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
            if process is not None:
                if not wait([process.sentinel], timeout=0.5) or self._stopping.is_set():
                    continue
                process.join()
                self._stop.close()
                self.process = None
                if process.exitcode == INTEGRITY_EXIT:
                    log.error("maintainer.stopped_on_integrity_failure", alert=True, pid=process.pid)
                    self.integrity_failed.set()
                    if self.on_integrity_failure is not None:
                        self.on_integrity_failure()
                    return
                if time.monotonic() - self._started_at >= HEALTHY_AFTER_S:
                    delay = self.backoff[0]
                log.error("maintainer.died", alert=True, pid=process.pid, exitcode=process.exitcode,
                          restart_in_s=delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.backoff[1])
            try:
                self._spawn()
                self.restarts += 1
            except Exception as exc:  # noqa: BLE001 - out of memory or processes: try again later
                log.error("maintainer.spawn_failed", alert=True, error=type(exc).__name__, restart_in_s=delay)

    def stop(self) -> None:
        """Asks the child to finish its step and waits for it; kills one that overstays."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
        process = self.process
        if process is None:
            return
        self._stop.close()
        process.join(self.stop_timeout)
        if process.is_alive():  # it ignores SIGTERM (see child_main): killed
            log.error("maintainer.stop_timeout", alert=True, pid=process.pid, waited_s=self.stop_timeout)
            process.kill()
            process.join()
        log.info("maintainer.joined", pid=process.pid, exitcode=process.exitcode, restarts=self.restarts)
