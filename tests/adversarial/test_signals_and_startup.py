"""Stopping and starting the services as an operator (or an orchestrator) does, in their own processes.

SIGTERM at any moment once a service handles signals, start-up included, ends it with exit 0
and loses nothing. An unreachable broker or ledger database at start-up is one line on stderr
and exit 3, after XLEDGER_CONNECT_TIMEOUT seconds (the subprocess time limit below is far
shorter than kafka-python's and psycopg's own 30 s).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone

import pytest

from services import topics
from services.demo import KSP_SENDER, release_notice
from tests.adversarial.processes import Service, service_env, xledger
from tests.harness import handles_sigterm, ksp_runtime, wait_for

NOW = datetime.now(timezone.utc)


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings, request_partitions=2) as runtime:
        yield runtime


SERVICES = [("gate", "run"), ("relay", "run"), ("review", "serve", "--port", "0")]


# What each service says once it has started: a SIGTERM during start-up must end it before that.
STARTED = {"gate": '"gate.starting"', "relay": '"relay.stopped"', "review": "review app on http"}


@pytest.mark.parametrize("command", SERVICES, ids=lambda c: " ".join(c[:2]))
def test_sigterm_during_start_up_exits_0_at_once(rt, settings, command):
    process = subprocess.Popen([sys.executable, "-m", "services.cli", *command], env=service_env(settings),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert wait_for(lambda: handles_sigterm(process.pid), timeout=30)  # the first moment it can
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output[-2000:]
    assert STARTED[command[0]] not in output, "it went on starting after the SIGTERM"


# A SIGTERM whose handler runs inside a weakref callback, as the import system's module-lock callbacks
# are during start-up: Python would print "Exception ignored in" and drop a SystemExit raised there.
LOST_EXIT = """
import os, signal, sys, weakref
sys.argv = ["xledger", "review", "serve", "--port", "0"]
from services.shutdown import install_for
install_for(sys.argv)
class Holder: pass
holder = Holder()
ref = weakref.ref(holder, lambda _: os.kill(os.getpid(), signal.SIGTERM))
del holder
print("went on starting", file=sys.stderr)
from services.cli import main
main()
"""


def test_a_sigterm_whose_handler_runs_where_python_drops_exceptions_still_ends_start_up(settings, tmp_path):
    env = service_env(settings) | {"XLEDGER_LEDGER_URL": f"sqlite:///{tmp_path / 'none.sqlite'}"}
    result = subprocess.run([sys.executable, "-c", LOST_EXIT], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "went on starting" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr[-2000:]


def test_a_child_started_by_multiprocessing_handles_no_signals_of_the_command_line():
    from services.shutdown import handles_signals

    argv = ["/venv/bin/xledger", "relay", "run"]  # what 'spawn' hands the maintainer child
    assert handles_signals(argv, argv)
    assert not handles_signals(argv, [sys.executable, "-c", "from multiprocessing.spawn import spawn_main; "
                                      "spawn_main(tracker_fd=5, pipe_handle=7)", "--multiprocessing-fork"])
    assert not handles_signals(["xledger", "verify"], ["xledger", "verify"])


@pytest.mark.parametrize("command", SERVICES[:2], ids=lambda c: " ".join(c[:2]))
def test_sigterm_while_waiting_for_an_unreachable_broker_exits_0(rt, settings, command):
    with Service(settings, *command, XLEDGER_BOOTSTRAP_SERVERS="127.0.0.1:1", XLEDGER_CONNECT_TIMEOUT="60") as s:
        assert wait_for(lambda: handles_sigterm(s.process.pid), timeout=30)
        assert s.stop() == 0


def test_sigterm_in_the_middle_of_work_loses_nothing(rt, settings):
    publisher = rt.dev_publisher(*KSP_SENDER)
    cprs = ["1203911234", "0508882345", "2211901111", "0101801234"]
    total = 1500
    for i in range(total):
        publisher.send(occurred_at=NOW, message_id=f"sigterm-{i:05d}", **release_notice(
            NOW.date(), cpr=cprs[i % 4], name="Test Person", release_in_days=20, age=30))
    publisher.producer.flush()
    publisher.producer.close()

    def decided() -> int:
        return sum(1 for n in rt.ledger.all_notifications() if n.topic.endswith("Exchange.RequestDecided"))

    with Service(settings, "gate", "run", XLEDGER_MAX_POLL_RECORDS="50") as gate:
        assert wait_for(lambda: decided() > 0, timeout=60)
        assert gate.stop() == 0
    stopped_at = decided()
    with Service(settings, "gate", "run") as gate:
        assert wait_for(lambda: decided() >= total, timeout=120)
        assert gate.stop() == 0
    requested = Counter(n.originator_id for n in rt.ledger.all_notifications()
                        if n.topic.endswith("Exchange.RequestDecided"))
    assert len(requested) == total and set(requested.values()) == {1}
    assert 0 < stopped_at  # the first gate had recorded some when it was stopped
    positions = sum(rt.ledger.position(f"kafka:{topics.REQUESTS}:{p}") or 0 for p in (0, 1))
    assert positions == total


@pytest.mark.parametrize("target", ["broker", "ledger"])
def test_an_unreachable_broker_or_database_at_start_up_is_one_line_and_exit_3(broker, tmp_path, target):
    from services.config import Settings

    settings = Settings.development(ledger_url=f"sqlite:///{tmp_path}/l.sqlite").with_embedded_broker(broker.bootstrap)
    unreachable = ({"XLEDGER_BOOTSTRAP_SERVERS": "127.0.0.1:1"} if target == "broker" else
                   {"XLEDGER_LEDGER_URL": "postgresql://xledger@127.0.0.1:1/ledger"})
    for command in (("gate", "run"), ("relay", "run")):
        result = xledger(settings, *command, timeout=25, XLEDGER_CONNECT_TIMEOUT="2", XLEDGER_LOG_LEVEL="WARNING",
                         **unreachable)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 3, result.stderr
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the {'Kafka broker' if target == 'broker' else 'ledger database'}"), result.stderr
        assert "Traceback" not in result.stderr


def test_topic_administration_against_an_unreachable_broker_is_exit_3_like_every_other_command(tmp_path):
    from services.config import Settings

    settings = Settings.development(ledger_url=f"sqlite:///{tmp_path}/l.sqlite")
    for command in (("topics", "create"), ("topics", "acls", "--apply")):
        result = xledger(settings, *command, timeout=60, XLEDGER_CONNECT_TIMEOUT="2", XLEDGER_LOG_LEVEL="WARNING",
                         XLEDGER_BOOTSTRAP_SERVERS="127.0.0.1:1")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 3, result.stderr
        assert len(lines) == 1 and "cannot reach the Kafka broker at 127.0.0.1:1" in lines[0], result.stderr
