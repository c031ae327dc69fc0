"""Replay and re-evaluation over exchanges that went the whole way: broker, gate, ledger, relay."""

from __future__ import annotations

from datetime import datetime, timezone

from ledger.readmodels import ReadModels
from policies.directory import Directory
from services.audit import Redecider, load_bundles, recorded_decisions, reevaluate, replay
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.runtime import Runtime
from tests.harness import running, wait_for

NOW = datetime.now(timezone.utc)


def test_replay_equals_live_and_reevaluation_agrees_after_real_exchanges(settings):
    rt = Runtime(settings)
    try:
        rt.create_topics([KSP_SENDER[0], KALUNDBORG_SOCIAL[0]])
        publisher = rt.dev_publisher(*KSP_SENDER)
        for i, days in enumerate((21, 4 * 365, 60)):
            publisher.publish(occurred_at=NOW, **release_notice(NOW.date(), cpr="1203911234", name=f"P {i}",
                                                                release_in_days=days, age=34))
        publisher.producer.close()
        relay = rt.relay()
        with running(rt.gate_worker(), relay):
            assert wait_for(lambda: rt.ledger.counts()["requests"] == 3)
            assert wait_for(lambda: relay.stats["receipts"] == 3)
            # the read models catch up while the relay is still appending deliveries
            ReadModels(rt.ledger).catch_up()
        report = replay(rt.ledger)
        assert report.equal and {d.table: d.replayed for d in report.diffs}["decisions"] == 3
        models = ReadModels(rt.ledger)
        assert models.position() == rt.ledger.max_notification_id()
        assert sorted(r["outcome"] for r in models.query("decisions")) == ["ALLOW", "ALLOW", "DENY"]
        result = reevaluate(rt.ledger, Redecider(rt.ledger, settings.master_key, rt.pseudonym_secret, rt.keyset), load_bundles())
        assert result.ok and result.agreeing == 3 and result.directories == {"recorded": 3}
        # The gate stored its directory once, content-addressed, beside the decisions naming it,
        # and the Merkle tree covers it like every other entry.
        snapshots = [rt.ledger.mapper.to_domain_event(n) for n in rt.ledger.all_notifications()
                     if n.topic.endswith("DirectorySnapshot.Recorded")]
        assert [s.directory_version for s in snapshots] == [rt.engine.directory.version]
        assert Directory.from_snapshot(snapshots[0].content).version == rt.engine.directory.version
        decided = [r.decision["directory_version"] for r in recorded_decisions(rt.ledger)]
        assert decided == [rt.engine.directory.version] * 3
        rt.maintain()
        assert rt.verify().ok
    finally:
        rt.close()
