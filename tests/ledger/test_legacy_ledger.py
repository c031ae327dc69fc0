"""A ledger recorded by an earlier release still verifies, re-evaluates and replays, on both backends.

The fixture is the demo ledger of the 2026-11-26 release: its sealed messages carry the
byte-reversed single-object fingerprints that release wrote, and its checkpoint is in that
release's format. Its stored events, subject keys and checkpoints are copied unchanged into a
fresh ledger; the Merkle tree is rebuilt from the events, so the old signed checkpoint must
match the rebuilt tree.
"""

from __future__ import annotations

import json

import shutil
from pathlib import Path

from eventsourcing.persistence import StoredEvent
from typer.testing import CliRunner

from ledger.application import Ledger
from ledger.domain import delivery_id, sealed_message_aad
from schemas.codec import HEADER_LEN, AvroCodec
from schemas.registry import default_registry
from services.config import Settings
from services.runtime import Runtime

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ledger-2026-11-26.sqlite"
runner = CliRunner()


def _transplant(source_url: str, target_url: str) -> int:
    src, dst = Ledger(source_url), Ledger(target_url)
    try:
        events = [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in src.all_notifications()]
        for i in range(0, len(events), 500):
            dst.recorder.insert_events(events[i:i + 500])
        for table, columns in (("xl_subject_keys", "subject, wrapped_key, destroyed"),
                               ("xl_checkpoints", "tree_size, signed_json")):
            rows = src.tables.fetchall(f"SELECT {columns} FROM {table}")
            marks = ", ".join("?" * len(columns.split(",")))
            with dst.tables.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        return len(events)
    finally:
        src.close()
        dst.close()


def test_old_ledger_still_verifies_reevaluates_and_replays(ledger_url, tmp_path):
    source = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, source)
    copied = _transplant(f"sqlite:///{source}", ledger_url)
    assert copied > 200

    settings = Settings.development(ledger_url=ledger_url)
    rt = Runtime(settings)
    try:
        assert rt.maintain() is True
        report = rt.verify()
        assert report.ok, report
        # The sealed messages are the old wire bytes: byte-reversed fingerprints, and they decode.
        legacy = {v.legacy_fingerprint for v in default_registry().all_versions()}
        codec, opened = AvroCodec(), 0
        for n in rt.ledger.all_notifications():
            if n.topic.endswith("Exchange.Requested"):
                event = rt.ledger.mapper.to_domain_event(n)
                raw = rt.sealer.open(event.subject, event.sealed_message, sealed_message_aad(event.originator_id))
                assert raw[2:HEADER_LEN] in legacy
                body = codec.decode(raw, expect="dk.xledger.SignedMessage").record["body"]
                assert codec.decode(body, expect="dk.xledger.ExchangeRequest").record["payload_type"]
                opened += 1
        assert opened > 50
    finally:
        rt.close()

    from services.cli import app

    env = {"XLEDGER_LEDGER_URL": ledger_url}
    result = runner.invoke(app, ["audit", "reevaluate"], env=env)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "0 differ" in out
    # Its decisions name no directory (recorded before directory versions): they are re-decided
    # under the legacy directory and said to be, not under today's corrected one.
    assert "under the legacy directory" in out and "under the directory each decision recorded" not in out
    doc = json.loads(runner.invoke(app, ["audit", "reevaluate", "--json"], env=env).stdout.splitlines()[-1])
    assert set(doc["directories"]) == {"legacy"} and doc["directories"]["legacy"] == doc["checked"] > 50
    # Under today's directory the same decisions are a what-if, reported as such (differences are
    # the corrections, e.g. Horserød no longer in Kalundborg's KSP), never silently "divergent".
    what_if = runner.invoke(app, ["audit", "reevaluate", "--directory", "current", "--json"], env=env)
    assert set(json.loads(what_if.stdout.splitlines()[-1])["directories"]) == {"what-if"}
    result = runner.invoke(app, ["replay"], env=env)
    assert result.exit_code == 0, result.output
    assert "replay equals the live read models" in result.output


def test_old_ledgers_deliveries_one_entry_each_are_still_read(ledger_url, tmp_path):
    """That release recorded one Delivery.Published entry per delivery (no DeliveryPage, no index)."""
    from services.escalations import EscalationDesk

    source = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, source)
    _transplant(f"sqlite:///{source}", ledger_url)
    ledger = Ledger(ledger_url)
    try:
        assert ledger.counts()["deliveries"] == 103
        [escalated] = [n.originator_id for n in ledger.all_notifications() if n.topic.endswith("Exchange.Decided")
                       and any(r["outcome"] == "ESCALATE" for r in ledger.mapper.to_domain_event(n).decision["results"])]
        [esc] = EscalationDesk(ledger).chain(escalated)["escalations"]
        assert [(d["kind"], d["outcome"], d["delivery_id"]) for d in esc["deliveries"]] == [
            ("receipt", "PUBLISHED", str(delivery_id(escalated, esc["recipient"], "receipt")))]
        assert esc["deliveries"][0]["topic"].startswith("receipts.") and esc["deliveries"][0]["at"]
    finally:
        ledger.close()


def test_an_old_ledger_goes_on_with_one_event_per_exchange(ledger_url, tmp_path):
    """After the old ledger's Requested and Decided pairs, the gate records one RequestDecided event per
    exchange: both shapes are counted, verified, projected, re-evaluated, replayed and shown in the
    review app, and an old exchange's history goes on (a review) at its own version."""
    from datetime import datetime, timezone

    from fastapi.testclient import TestClient

    from ledger.application import Tracking
    from ledger.checkpoint import load_private_key
    from services.agency import Publisher
    from services.demo import KSP_SENDER, release_notice
    from services.gate import Inbound
    from services.keyring import DEV_KEY_ID, dev_private_key
    from services.review.app import create_app
    from services.review.users import UserStore

    source = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, source)
    _transplant(f"sqlite:///{source}", ledger_url)
    settings = Settings.development(ledger_url=ledger_url)
    rt = Runtime(settings)
    try:
        before = rt.ledger.counts()
        [old] = [n.originator_id for n in rt.ledger.all_notifications() if n.topic.endswith("Exchange.Decided")
                 and rt.ledger.mapper.to_domain_event(n).decision["results"][0]["outcome"] == "ALLOW"][:1]
        pub = Publisher(*KSP_SENDER, producer=None, key=dev_private_key(KSP_SENDER[0]), key_id=DEV_KEY_ID,
                        codec=rt.codec)
        now = datetime.now(timezone.utc)
        new = [rt.pipeline().process(Inbound("exchange.requests.after", 0, i, pub.signed_bytes(pub.envelope(
            occurred_at=now, message_id=f"after-the-old-{i}", **release_notice(
                now.date(), cpr=cpr, name="Test Person", release_in_days=days, age=30)))))
               for i, (cpr, days) in enumerate([("1203911234", 20), ("0508882345", 900)])]
        assert all(hasattr(e, "decision") for e in new), [getattr(e, "detail", e) for e in new]
        rt.ledger.record(new, Tracking("kafka:exchange.requests.after:0", 1))
        after = rt.ledger.counts()
        assert (after["entries"], after["requests"]) == (before["entries"] + 2, before["requests"] + 2)
        assert (after["allowed"], after["denied"]) == (before["allowed"] + 1, before["denied"] + 1)
        assert [rt.ledger.get_exchange(e.id).version for e in new] == [1, 1]
        ex = rt.ledger.get_exchange(old)
        assert ex.version == 2
        ex.review({"action": "UPHOLD", "reviewer": "lo", "reason": "", "note": ""})
        rt.ledger.save(ex)
        assert rt.ledger.get_exchange(old).version == 3
        assert rt.maintain() is True
        assert rt.verify().ok
        assert rt.read_models.count("exchanges") == after["requests"]

        UserStore(rt.ledger.tables).add("aud", "correct horse battery", ["auditor"])
        key = load_private_key(settings.checkpoint_key).public_key()
        web = create_app(rt.ledger, pseudonym_secret=rt.pseudonym_secret, session_secret_value="s",
                         checkpoint_public_key=key)
        with TestClient(web, base_url="http://127.0.0.1") as c:
            assert c.post("/api/login", json={"username": "aud", "password": "correct horse battery"}).status_code == 200
            for xid, outcome in ((old, "ALLOW"), (new[0].id, "ALLOW"), (new[1].id, "DENY")):
                r = c.get(f"/api/decisions/{xid}")
                assert r.status_code == 200, r.text
                assert (r.json()["exchange_id"], [x["outcome"] for x in r.json()["results"]]) == (str(xid), [outcome])
            assert [v["action"] for v in c.get(f"/api/decisions/{old}").json()["reviews"]] == ["UPHOLD"]
    finally:
        rt.close()

    from services.cli import app

    env = {"XLEDGER_LEDGER_URL": ledger_url}
    result = runner.invoke(app, ["audit", "reevaluate", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.splitlines()[-1])
    assert doc["ok"] and doc["checked"] == doc["agreeing"] == after["requests"] and doc["divergent"] == [], doc
    result = runner.invoke(app, ["replay"], env=env)
    assert result.exit_code == 0, result.output
    assert "replay equals the live read models" in result.output
