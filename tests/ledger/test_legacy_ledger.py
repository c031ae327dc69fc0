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
