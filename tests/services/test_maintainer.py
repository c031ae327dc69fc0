"""`xledger relay run` as an operator runs it, with its maintainer child process: derived data (the
Merkle tree, signed and cosigned checkpoints, the read models) kept current while it delivers; the
child killed is restarted with an alert and deliveries go on; a stopped or killed relay leaves no
child behind. Real broker, a real witness over HTTP, both ledgers."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from datetime import datetime, timezone

from ledger.readmodels import ReadModels
from services.demo import KSP_SENDER, release_notice
from tests.adversarial.processes import Service
from tests.harness import ksp_runtime, wait_for
from tests.witness.conftest import ORIGIN, PRIVATE_KEY, RunningWitness, free_port

NOW = datetime.now(timezone.utc)


def publish(rt, n: int, prefix: str) -> None:
    publisher = rt.dev_publisher(*KSP_SENDER)
    for i in range(n):
        publisher.publish(occurred_at=NOW, message_id=f"{prefix}-{i:04d}",
                          **release_notice(NOW.date(), cpr="1203911234", name="Test Person", release_in_days=21,
                                           age=34))
    publisher.producer.close()


def derived_data_current(rt) -> bool:
    latest = rt.ledger.max_notification_id()
    return latest > 0 and rt.ledger.integrity.tree_size() == latest and ReadModels(rt.ledger).position() == latest


def gone(pid: int) -> bool:
    """No such process any more (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def children(service: Service) -> list[int]:
    return [e["pid"] for e in service.events("maintainer.spawned")]


def test_relay_run_keeps_derived_data_current_in_a_supervised_child_and_leaves_none_behind(
        settings, broker, tmp_path):
    witness = RunningWitness("witness.test/tilsyn", tmp_path / "w.sqlite", free_port())
    settings = replace(settings, checkpoint_key=PRIVATE_KEY, ledger_origin=ORIGIN, checkpoint_interval=5,
                       witnesses=witness.entry, cosign_retry_ms=200)
    witness.http.__enter__()
    try:
        with ksp_runtime(settings, request_partitions=1) as rt, Service(settings, "gate", "run") as gate, \
                Service(settings, "relay", "run") as relay:
            publish(rt, 10, "first")
            assert wait_for(lambda: rt.ledger.counts()["deliveries"] == 20 or not relay.alive, timeout=90)
            assert wait_for(lambda: derived_data_current(rt), timeout=60)
            # Checkpoints signed every 5 entries by the child, and cosigned by the witness the child asks.
            assert wait_for(lambda: (c := rt.ledger.integrity.latest_checkpoint()) is not None
                            and len(c.signatures) == 2, timeout=60)
            [first] = children(relay)
            assert parent_of(first) == relay.process.pid

            # The child dies: an alert, a new child, and deliveries never stopped meanwhile.
            os.kill(first, signal.SIGKILL)
            assert wait_for(lambda: len(children(relay)) == 2, timeout=60)
            [died] = relay.events("maintainer.died")
            assert died["alert"] is True and died["pid"] == first and died["exitcode"] == -signal.SIGKILL
            second = children(relay)[1]
            assert gone(first) and not gone(second) and parent_of(second) == relay.process.pid
            publish(rt, 10, "second")
            assert wait_for(lambda: rt.ledger.counts()["deliveries"] == 40 or not relay.alive, timeout=90)
            assert wait_for(lambda: derived_data_current(rt), timeout=60)
            assert relay.alive and gate.alive

            assert relay.stop() == 0
            assert gone(second)
            [joined] = relay.events("maintainer.joined")
            assert joined["pid"] == second and joined["exitcode"] == 0 and joined["restarts"] == 1
            assert gate.stop() == 0
    finally:
        witness.http.__exit__()


def test_a_relay_killed_outright_leaves_no_maintainer_behind(settings, broker):
    with ksp_runtime(settings, request_partitions=1), Service(settings, "relay", "run") as relay:
        assert wait_for(lambda: len(children(relay)) == 1 and relay.events("maintainer.started"), timeout=60)
        [child] = children(relay)
        relay.process.send_signal(signal.SIGKILL)
        relay.process.wait(timeout=10)
        assert wait_for(lambda: gone(child), timeout=10)


def test_a_corrupt_merkle_tree_stops_the_relay_and_its_child_is_not_restarted(settings, broker):
    # As when the relay kept the tree itself: a tree that does not add up stops deliveries, loudly.
    with ksp_runtime(settings, request_partitions=1) as rt:
        with Service(settings, "gate", "run") as gate:
            publish(rt, 3, "tamper")
            assert wait_for(lambda: rt.ledger.max_notification_id() >= 3 or not gate.alive, timeout=60)
        rt.maintain()
        size = rt.ledger.integrity.tree_size()
        assert size >= 3  # an entry per exchange
        with rt.ledger.tables.cursor() as c:  # an insider removes the last leaf's notification mapping
            c.execute("DELETE FROM xl_merkle_leaves WHERE idx = ?", (size - 1,))
        with Service(settings, "relay", "run") as relay:
            assert wait_for(lambda: not relay.alive, timeout=90), relay.output()[-2000:]
            assert relay.process.returncode == 1
            assert "Merkle tree does not add up" in relay.output()
            [failure] = relay.events("maintainer.integrity_failure")
            assert failure["alert"] is True and failure["error"] == "TreeCorrupted"
            assert relay.events("maintainer.stopped_on_integrity_failure")
            assert relay.events("maintainer.died") == []
            [child] = children(relay)
            assert gone(child)


def test_the_child_gets_no_secret_it_does_not_need():
    from services.config import PRODUCTION, Settings
    from services.maintainer import MaintainerProcess

    settings = Settings(mode=PRODUCTION, master_key="m" * 44, pseudonym_secret="p" * 32, session_secret="s" * 32,
                        checkpoint_key="c" * 44, sasl_password="k")
    child = MaintainerProcess(settings).settings
    assert (child.master_key, child.pseudonym_secret, child.session_secret) == ("", "", "")
    # What deriving data and cosigning need stays: the checkpoint key, the broker's credentials.
    assert (child.checkpoint_key, child.sasl_password, child.ledger_url) == ("c" * 44, "k", settings.ledger_url)
