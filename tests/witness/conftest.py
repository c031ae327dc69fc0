"""Witnesses, the log endpoint and monitors for the witnessed-ledger tests: real HTTP servers on
loopback ports (uvicorn in threads, or `xledger` processes), ledgers on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn

from ledger.checkpoint import generate_keypair, note_verifier_key
from ledger.note import Cosigner
from ledger.witness import SqliteWitnessStore, Witness
from services.logserver import create_log_app
from services.witness import create_witness_app, load_log_keys
from tests.harness import wait_for
from tests.ledger.conftest import ORIGIN, PRIVATE_KEY, ledger  # noqa: F401  (the ledger fixture)

ROOT = Path(__file__).resolve().parents[2]
XLEDGER = str(Path(sys.executable).with_name("xledger"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """An ASGI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        assert wait_for(lambda: self.server.started, 10), "server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def log_vkey() -> str:
    from ledger.checkpoint import load_private_key

    return note_verifier_key(ORIGIN, load_private_key(PRIVATE_KEY).public_key())


class RunningWitness:
    def __init__(self, name: str, db: Path, port: int | None = None):
        self.cosigner = Cosigner(name, generate_keypair()[0])
        self.store = SqliteWitnessStore(db)
        self.witness = Witness(self.cosigner, load_log_keys([log_vkey()]), self.store)
        self.http = ThreadServer(create_witness_app(self.witness), port)

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier().vkey

    @property
    def entry(self) -> str:
        return f"{self.vkey}@{self.http.url}"


@pytest.fixture
def witnesses(tmp_path) -> Iterator[list[RunningWitness]]:
    """Two independent witnesses, each with its own key and database, over real HTTP."""
    pair = [RunningWitness(f"witness.test/{n}", tmp_path / f"{n}.sqlite") for n in ("tilsyn", "revision")]
    for w in pair:
        w.http.__enter__()
    try:
        yield pair
    finally:
        for w in pair:
            w.http.__exit__()


@pytest.fixture
def log_endpoint(ledger) -> Iterator[ThreadServer]:
    from ledger.checkpoint import load_private_key

    with ThreadServer(create_log_app(ledger, load_private_key(PRIVATE_KEY).public_key())) as server:
        yield server


def xledger_process(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                **(env or {})}
    return subprocess.Popen([XLEDGER, *args], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def stop(proc: subprocess.Popen, sig: int | None = None) -> tuple[str, str]:
    import signal

    if proc.poll() is None:
        proc.send_signal(sig or signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return out, err


def wait_http(url: str, timeout: float = 20.0) -> bool:
    import urllib.error
    import urllib.request

    def up() -> bool:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return wait_for(up, timeout, 0.1)


__all__ = ["ORIGIN", "PRIVATE_KEY", "RunningWitness", "ThreadServer", "free_port", "log_vkey", "stop",
           "time", "wait_http", "xledger_process"]
