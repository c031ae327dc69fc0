"""The embedded demo: a real broker, a real SQLite ledger, the gate, the relay and agency clients in one process.

The ledger file is recreated on every run, because the embedded broker keeps
its topics in memory: a ledger whose tracked offsets point into a broker that
no longer exists would skip the new run's messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from services.broker import EmbeddedBroker
from services.config import Settings
from services.logging import get_logger
from services.runtime import Runtime

log = get_logger(__name__)

DEMO_LEDGER = Path("var/demo.sqlite")

# Synthetic CPR numbers: valid in form and date, made up for the demo.
KSP_SENDER = ("kriminalforsorgen:horserod", "KRIMINALFORSORGEN")
KALUNDBORG_SOCIAL = ("kommune:326", "MUNI_SOCIAL_ADULT")


@dataclass
class DemoRequest:
    label: str
    publisher: tuple[str, str]
    request: dict[str, Any]


@dataclass
class DemoReport:
    requests: int = 0
    recorded: int = 0  # requests in the ledger: decided or rejected
    allowed: int = 0
    denied: int = 0
    escalated: int = 0
    rejected: int = 0
    ledger_entries: int = 0
    inbox_received: int = 0
    receipts: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("requests", self.requests),
            ("allowed", self.allowed),
            ("denied", self.denied),
            ("escalated", self.escalated),
            ("rejected (dead-lettered)", self.rejected),
            ("delivered to inboxes", self.inbox_received),
            ("receipts to senders", self.receipts),
            ("ledger entries", self.ledger_entries),
        ]


def release_notice(today: date, *, cpr: str, name: str, release_in_days: int, age: int) -> dict[str, Any]:
    release = today + timedelta(days=release_in_days)
    return {
        "payload_type": "dk.xledger.payload.ReleaseNotice",
        "payload": {
            "cpr": cpr,
            "full_name": name,
            "institution": "Anstalten ved Horserød",
            "release_date": release,
            "release_type": "PAROLE",
            "conditions": ["Tilsyn af Kriminalforsorgen i frihed", "Misbrugsbehandling"],
            "housing_need": "Har ingen bolig efter løsladelse.",
            "treatment_need": "Fortsat ambulant alkoholbehandling.",
            "contact_officer": None,
        },
        "recipients": [KALUNDBORG_SOCIAL],
        "context": "KSP",
        "cooperation_id": "ksp:kalundborg",
        "purpose": "RELEASE_PLANNING",
        "subject": {"age": age, "convicted": True, "custody_status": "IN_KIF_INSTITUTION", "release_date": release},
        "data_categories": ["IDENTITY", "CRIMINAL", "RENT_PRIVATE", "HEALTH"],
        "necessity": "Bolig og misbrugsbehandling skal være klar på løsladelsesdagen.",
    }


def skeleton_requests(today: date) -> list[DemoRequest]:
    """One lawful KSP release notice (P5) and one about a convict with years left to serve (denied)."""
    return [
        DemoRequest("release in 3 weeks", KSP_SENDER,
                    release_notice(today, cpr="1203911234", name="Demo Person A", release_in_days=21, age=34)),
        DemoRequest("release in 4 years", KSP_SENDER,
                    release_notice(today, cpr="0508882345", name="Demo Person B", release_in_days=4 * 365, age=37)),
    ]


def run_demo(
    *,
    ledger_path: Path = DEMO_LEDGER,
    requests: Callable[[date], list[DemoRequest]] = skeleton_requests,
    timeout: float = 60.0,
) -> DemoReport:
    for stale in ledger_path.parent.glob(ledger_path.name + "*"):
        stale.unlink()
    now = datetime.now(timezone.utc)
    with EmbeddedBroker() as broker:
        settings = Settings.from_env(ledger_url=f"sqlite:///{ledger_path}").with_embedded_broker(broker.bootstrap)
        rt = Runtime(settings)
        try:
            return _run(rt, requests(now.date()), now, timeout)
        finally:
            rt.close()


def _run(rt: Runtime, plan: list[DemoRequest], now: datetime, timeout: float) -> DemoReport:
    recipients = sorted({org for item in plan for org, _ in item.request["recipients"]})
    senders = sorted({item.publisher[0] for item in plan})
    rt.create_topics(recipients + senders)
    publishers = {p: rt.dev_publisher(*p) for p in {item.publisher for item in plan}}
    for item in plan:
        publishers[item.publisher].publish(occurred_at=now, **item.request)
    for p in publishers.values():
        p.producer.close()

    worker, relay = rt.gate_worker("demo-gate"), rt.relay()
    threads = [threading.Thread(target=worker.run, daemon=True), threading.Thread(target=relay.run, daemon=True)]
    for t in threads:
        t.start()
    inboxes = {org: rt.inbox(org) for org in recipients}
    report = DemoReport(requests=len(plan))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for inbox in inboxes.values():
                report.inbox_received += len(inbox.poll(timeout_ms=100))
            counts = rt.ledger.counts()
            decided = counts["requests"] + counts["rejected"]
            expected_deliveries = counts["allowed"]
            if decided >= len(plan) and relay.stats["receipts"] >= counts["allowed"] + counts["denied"] + counts["escalated"] \
                    and report.inbox_received >= expected_deliveries:
                break
        else:
            log.warning("demo.timeout", timeout_s=timeout)
    finally:
        worker.stop()
        relay.stop()
        for t in threads:
            t.join(timeout=10)
        worker.consumer.close()
        worker.producer.close()
        relay.producer.close()
        for inbox in inboxes.values():
            inbox.consumer.close()
    counts = rt.ledger.counts()
    report.allowed, report.denied, report.escalated = counts["allowed"], counts["denied"], counts["escalated"]
    report.rejected = counts["rejected"]
    report.recorded = counts["requests"] + counts["rejected"]
    report.ledger_entries = counts["entries"]
    report.receipts = relay.stats["receipts"]
    return report
