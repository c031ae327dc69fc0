"""Master-key rotation while the gate runs, killed with SIGKILL halfway and finished, on both back-ends.

The gate keeps deciding new exchanges (new subjects) during the rotation: their keys end up
under the new master key. `xledger keys rotate-master` runs as a real process; it is killed
with SIGKILL after it has re-wrapped part of the keys, then run again to completion. Then
the old master key is dropped: the relay still opens every payload and delivers it, the
ledger verifies, and an erasure still erases.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from ledger.domain import sealed_message_aad
from ledger.privacy import SqlKeyStore, SubjectErased
from ledger.rotation import census, status
from ledger.subject_crypto import load_master_keys, wrapped_master_id
from schemas.cpr import pseudonym
from services.audit import Redecider, load_bundles, reevaluate
from services.cli import app
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.runtime import Runtime
from tests.harness import ksp_runtime, running, wait_for

NOW = datetime.now(timezone.utc)
OLD, NEW = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
OLD_ID, NEW_ID = (load_master_keys(k).ids[0] for k in (OLD, NEW))


def cpr(i: int) -> str:
    # Valid and distinct: day 1-28 of March 1985, sequence 1000+ (7th digit 1-3: the 1900s).
    return f"{i % 28 + 1:02d}0385{1000 + i:04d}"


def publish(rt: Runtime, numbers: range) -> None:
    publisher = rt.dev_publisher(*KSP_SENDER)
    for i in numbers:
        publisher.send(occurred_at=NOW, **release_notice(NOW.date(), cpr=cpr(i), name=f"Person {i}",
                                                         release_in_days=21, age=40))
    publisher.producer.flush()
    publisher.producer.close()


def decided(rt: Runtime) -> int:
    return rt.ledger.counts()["requests"]


def rotate_master(settings, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env.update(settings.to_env(), XLEDGER_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "services.cli", "keys", "rotate-master", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_rotation_killed_halfway_while_the_gate_runs_then_finished(settings, broker):
    during = replace(settings, master_key=f"{OLD},{NEW}")
    with ksp_runtime(during, request_partitions=2) as rt:
        worker = rt.gate_worker()
        with running(worker):
            publish(rt, range(0, 60))
            assert wait_for(lambda: decided(rt) == 60, timeout=60)
            assert census(rt.ledger.tables) == {OLD_ID: 60}

            # Slow batches, so that it is surely killed halfway.
            rotation = rotate_master(during, "--batch", "2", "--pause", "0.5")
            try:
                assert wait_for(lambda: census(rt.ledger.tables).get(NEW_ID, 0) >= 8, timeout=60)
                publish(rt, range(60, 70))  # new subjects while it runs
                assert wait_for(lambda: decided(rt) == 70, timeout=60)
                halfway = census(rt.ledger.tables)
                assert halfway.get(OLD_ID, 0) > 0, f"the rotation finished before it could be killed: {halfway}"
            finally:
                rotation.send_signal(signal.SIGKILL)
                rotation.communicate(timeout=30)
            assert rotation.returncode == -signal.SIGKILL
            after_kill = census(rt.ledger.tables)
            assert after_kill[OLD_ID] > 0 and after_kill[NEW_ID] > 0 and sum(after_kill.values()) == 70
            assert status(rt.ledger.tables).target == NEW_ID and status(rt.ledger.tables).completed_at is None
            # The subjects that arrived during the rotation got keys under the new master key at once.
            store = SqlKeyStore(rt.ledger.tables)
            secret = rt.pseudonym_secret
            assert {wrapped_master_id(store.get(pseudonym(cpr(i), secret))) for i in range(60, 70)} == {NEW_ID}

            publish(rt, range(70, 80))  # and after the crash, before the rotation is finished
            finish = rotate_master(during)
            out, err = finish.communicate(timeout=120)
            assert finish.returncode == 0, err
            assert "0 under other master keys" in out and f"{OLD_ID} wrap nothing now" in out
            assert wait_for(lambda: decided(rt) == 80, timeout=60)
        assert census(rt.ledger.tables) == {NEW_ID: 80}
        assert status(rt.ledger.tables).completed_at is not None

    # The old master key is dropped everywhere.
    after = replace(settings, master_key=NEW)
    with ksp_runtime(after, request_partitions=2) as rt:
        relay = rt.relay()
        inbox = rt.inbox(KALUNDBORG_SOCIAL[0])
        received = []
        with running(relay):
            assert wait_for(lambda: received.extend(inbox.poll(200)) or len(received) >= 80, timeout=90)
        inbox.consumer.close()
        assert sorted(r.payload["full_name"] for r in received) == sorted(f"Person {i}" for i in range(80))
        assert rt.maintain() is True
        assert rt.verify().ok

        # Erasure still erases, with the new key alone.
        erased = pseudonym(cpr(3), rt.pseudonym_secret)
        result = CliRunner().invoke(app, ["subject", "erase", erased, "--reason", "GDPR art. 17, case 2026-3"],
                                    env=after.to_env())
        assert result.exit_code == 0, result.output
        request = next(rt.ledger.mapper.to_domain_event(n) for n in rt.ledger.all_notifications()
                       if n.topic.endswith("Exchange.RequestDecided") and rt.ledger.mapper.to_domain_event(n).subject == erased)
        with pytest.raises(SubjectErased):
            rt.sealer.open(erased, request.sealed_message, sealed_message_aad(request.originator_id))
        report = reevaluate(rt.ledger, Redecider(rt.ledger, NEW, rt.pseudonym_secret, rt.keyset), load_bundles())
        assert report.ok and report.checked == 80 and len(report.not_reevaluable) == 1, report.to_dict()
