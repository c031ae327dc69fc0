"""The services as an operator runs them: `xledger … run` in their own processes, logs read back as JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness import handles_sigterm, wait_for


def service_env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env.update(settings.to_env(), XLEDGER_LOG_LEVEL="INFO")
    env.update(extra)
    return env


def xledger(settings, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    """One xledger command, run to its end."""
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=service_env(settings, **extra),
                          capture_output=True, text=True, timeout=timeout)


class Service:
    """`xledger <command>` running in its own process; stderr (JSON log lines) goes to a file."""

    def __init__(self, settings, *command: str, **extra_env: str):
        self.command = command
        self._log = tempfile.NamedTemporaryFile(prefix="xledger-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", *command],
                                        env=service_env(settings, **extra_env), stdout=subprocess.DEVNULL,
                                        stderr=self._log)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in Path(self._log.name).read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, once it handles signals; returns the exit status."""
        if self.alive:
            wait_for(lambda: handles_sigterm(self.process.pid) or not self.alive, timeout=30)
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"{' '.join(self.command)} did not stop on SIGTERM")

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        if self.alive:
            self.stop()
        Path(self._log.name).unlink(missing_ok=True)
