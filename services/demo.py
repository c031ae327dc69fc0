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
from typing import Any

from services import topics
from services.agency import Publisher
from services.audit import Redecider, impact, impact_summary, load_bundles, recorded_decisions
from services.broker import EmbeddedBroker
from services.config import Settings
from services.escalations import EscalationDesk, EscalationError
from services.keyring import DEV_KEY_ID, dev_private_key
from services.logging import get_logger
from services.runtime import Runtime
from services.simulation import Builder, Case, build_week, declared_categories, occurred

log = get_logger(__name__)

# Where the auditor commands look when nothing is configured (Settings.ledger_url), so that
# `xledger verify`, `replay`, `subject report` … read the demo's ledger after `make demo`.
DEMO_LEDGER = Path("var/ledger.sqlite")
# A table only the demo creates: the demo replaces its own ledger, never anyone else's.
DEMO_MARKER = "xl_demo"
#: the demo's legal officer (`xledger demo --serve` creates this review-app user)
DEMO_OFFICER = "jurist"


class DemoError(Exception):
    pass

# Synthetic CPR numbers: valid in form and date, made up for the demo.
# Kriminalforsorgen i Frihed in Midt- og Vestsjælland: a member of Kalundborg's KSP (the directory).
KSP_SENDER = ("kriminalforsorgen:kif-midt-vestsjaelland", "KRIMINALFORSORGEN")
KALUNDBORG_SOCIAL = ("kommune:326", "MUNI_SOCIAL_ADULT")


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
    by_context_rule: dict[tuple[str, str, str], int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    verification: str = "not run"
    resolutions: list[str] = field(default_factory=list)  # what the legal officer decided, and what followed
    impact: list[str] = field(default_factory=list)  # the newest bundle over the week's decisions
    verified: bool = False

    def problems(self) -> list[str]:
        """Why the demo did not show what it should (empty: it did); the command exits 1 on any."""
        out = []
        if self.recorded < self.requests:
            out.append(f"only {self.recorded} of {self.requests} requests were recorded before the timeout")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} decisions differ from the script's expectation")
        if not self.verified:
            out.append(f"the ledger did not verify: {self.verification}")
        return out

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
            "institution": "Horserød Fængsel",
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


def skeleton_week(today: date) -> list[tuple[date, Case]]:
    """The walking skeleton: one lawful KSP release notice (P5), one about a convict with years left (denied)."""
    return [
        (today, Case("release in 3 weeks", "P5", KSP_SENDER,
                     release_notice(today, cpr="1203911234", name="Demo Person A", release_in_days=21, age=34))),
        (today, Case("release in 4 years", "DENY_SUBJECT_OUT_OF_SCOPE", KSP_SENDER,
                     release_notice(today, cpr="0508882345", name="Demo Person B", release_in_days=4 * 365, age=37))),
    ]


def demo_settings(ledger_path: Path) -> Settings:
    """The demo is always development, whatever the environment says: public secrets and the
    development key set, on a throwaway ledger and an in-memory broker."""
    return Settings.development(ledger_url=f"sqlite:///{ledger_path}")


def run_demo(*, ledger_path: Path = DEMO_LEDGER, week: Builder = build_week, timeout: float = 60.0) -> DemoReport:
    remove_demo_ledger(ledger_path)
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker() as broker:
        settings = demo_settings(ledger_path).with_embedded_broker(broker.bootstrap)
        rt = Runtime(settings)
        try:
            with rt.ledger.tables.cursor() as c:
                c.execute(f"CREATE TABLE IF NOT EXISTS {DEMO_MARKER} (note TEXT)")
            return _run(rt, week(datetime.now(timezone.utc).date()), timeout)
        finally:
            rt.close()


def remove_demo_ledger(path: Path) -> None:
    """Removes an earlier demo's ledger (with its -wal, -shm and -xlschema files); DemoError for anything else there."""
    if path.is_file() and path.stat().st_size > 0 and not _is_demo_ledger(path):
        raise DemoError(f"{path} holds data the demo did not write; the demo leaves it alone "
                        f"(pass --ledger PATH for the demo's ledger)")
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal",
                 path.name + "-xlschema"):
        (path.parent / name).unlink(missing_ok=True)


def _is_demo_ledger(path: Path) -> bool:
    import sqlite3

    from ledger.presence import sqlite_tables

    try:
        return DEMO_MARKER in sqlite_tables(path)
    except sqlite3.Error:
        return False


def _publish(rt: Runtime, plan: list[tuple[date, Case]]) -> dict[str, Case]:
    """Publishes every case as its sender; returns message id -> case."""
    sent: dict[str, Case] = {}
    agencies: dict[tuple[str, str], Any] = {}
    for i, (day, case) in enumerate(plan):
        request = dict(case.request)
        request.setdefault("data_categories", declared_categories(rt.codec, request))
        if case.sender not in agencies:
            agencies[case.sender] = rt.dev_agency(*case.sender)
        agency = agencies[case.sender]
        if case.tamper == "garbage":
            agency.publisher.producer.send(topics.REQUESTS, key=b"demo", value=b"not an avro message")
            continue
        if case.tamper == "forge":
            forger = Publisher(case.sender[0], case.sender[1], producer=agency.publisher.producer,
                               key=dev_private_key("politikreds:bornholm"), key_id=DEV_KEY_ID, codec=rt.codec)
            forger.send(occurred_at=occurred(day, i), **request)
            continue
        message_id, _, _ = agency.send(occurred_at=occurred(day, i), **request)
        sent[message_id] = case
    for agency in agencies.values():
        agency.publisher.producer.flush()
        agency.publisher.producer.close()
    return sent


def _run(rt: Runtime, plan: list[tuple[date, Case]], timeout: float) -> DemoReport:
    rt.create_topics(sorted({org for _, c in plan for org, _ in c.request["recipients"]} | {c.sender[0] for _, c in plan}))
    sent = _publish(rt, plan)
    worker, relay = rt.gate_worker("demo-gate"), rt.relay()
    threads = [threading.Thread(target=worker.run, daemon=True), threading.Thread(target=relay.run, daemon=True)]
    for t in threads:
        t.start()
    recipients = sorted({org for _, c in plan for org, _ in c.request["recipients"]})
    inboxes = {org: rt.inbox(org) for org in recipients}
    report = DemoReport(requests=len(plan))
    deadline = time.monotonic() + timeout
    reviewed: list = []  # deliveries after legal review (rule L1)
    resolved: dict[str, tuple[Case, dict[str, Any]]] = {}

    def poll() -> None:
        for inbox in inboxes.values():
            for got in inbox.poll(timeout_ms=20):
                report.inbox_received += 1
                if got.record["rule"] == "L1":
                    reviewed.append(got.record)

    try:
        while time.monotonic() < deadline:
            poll()
            counts = rt.ledger.counts()
            decisions = counts["allowed"] + counts["denied"] + counts["escalated"]
            if counts["requests"] + counts["rejected"] >= len(plan) and relay.stats["receipts"] >= decisions \
                    and report.inbox_received >= counts["allowed"]:
                break
            time.sleep(0.05)
        else:
            log.warning("demo.timeout", timeout_s=timeout)
        # The legal officer's turn: the escalations the script resolves, each way once.
        resolved = _resolve_escalations(rt, sent)
        approved = sum(v["result"]["outcome"] == "ALLOW" for _, v in resolved.values())
        while time.monotonic() < deadline:
            poll()
            if relay.stats["receipts"] >= decisions + len(resolved) and len(reviewed) >= approved:
                break
            time.sleep(0.05)
        else:
            log.warning("demo.timeout", timeout_s=timeout, waiting_for="verdicts")
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
    report.receipts = relay.stats["receipts"]
    _summarise(rt, report, sent)
    _report_resolutions(report, resolved, reviewed)
    report.impact = _impact_of_newest_bundle(rt)
    rt.maintain()
    rt.ledger.checkpoint_now(rt.checkpoint_signer, origin=rt.settings.ledger_origin)
    verified = rt.verify()
    report.ledger_entries = verified.notifications
    report.verified = verified.ok and verified.tree_size == verified.notifications > 0
    report.verification = (
        f"ok: {verified.tree_size} entries in the Merkle tree, {verified.checkpoints} signed checkpoints"
        if report.verified else
        f"FAILED: {verified.first.describe() if verified.first else f'{verified.tree_size} of {verified.notifications} entries in the tree'}"
    )
    return report


def _resolve_escalations(rt: Runtime, sent: dict[str, Case]) -> dict[str, tuple[Case, dict[str, Any]]]:
    """The demo's legal officer approves and refuses the escalations the script marks."""
    desk = EscalationDesk(rt.ledger, max_open=timedelta(hours=rt.settings.escalation_max_open_hours))
    out: dict[str, tuple[Case, dict[str, Any]]] = {}
    for recorded in recorded_decisions(rt.ledger):
        case = sent.get(recorded.message_id)
        if case is None or case.resolve is None:
            continue
        try:
            if case.resolve == "approve":
                verdict = desk.approve(recorded.exchange_id, officer=DEMO_OFFICER, roles=["legal_officer"], via="demo",
                                       basis="PET anmoder om oplysninger til en trusselsvurdering; PET-loven giver "
                                             "hjemmel til videregivelsen.", citation="PET-loven § 4, stk. 1")
            else:
                verdict = desk.refuse(recorded.exchange_id, officer=DEMO_OFFICER, roles=["legal_officer"], via="demo",
                                      reason="Der er ikke angivet et formål, som kræver videregivelse til politiet.")
        except EscalationError as exc:
            log.warning("demo.verdict_failed", code=exc.code)
            continue
        out[recorded.message_id] = (case, verdict)
    return out


def _report_resolutions(report: DemoReport, resolved: dict[str, tuple[Case, dict[str, Any]]],
                        reviewed: list[dict[str, Any]]) -> None:
    delivered = {r["message_id"] for r in reviewed}
    for message_id, (case, verdict) in sorted(resolved.items(), key=lambda kv: kv[1][0].label):
        r = verdict["result"]
        what = "approved" if r["outcome"] == "ALLOW" else "refused"
        line = (f"{case.label}: {what} by {verdict['officer']} → {r['outcome']} {r['rule']}"
                + (f" {r['reason']}" if r["reason"] else "") + f" ({r['citation']})")
        if r["outcome"] == "ALLOW":
            line += "; delivered to " + verdict["recipient"] if message_id in delivered else "; NOT delivered"
            if message_id not in delivered:
                report.unexpected.append(f"{case.label}: approved on review but not delivered")
        report.resolutions.append(line)
    if {c.resolve for c, _ in resolved.values()} != {"approve", "refuse"}:
        report.unexpected.append("the demo's escalations were not resolved both ways")


def _impact_of_newest_bundle(rt: Runtime) -> list[str]:
    """What the newest bundle would change over the week, for the legal officer."""
    bundles = load_bundles()
    newest = max(bundles.bundles, key=lambda b: b.effective_from)
    report = impact(rt.ledger, Redecider(rt.ledger, rt.settings.master_key, rt.pseudonym_secret, rt.keyset), newest, known=bundles)
    if set(report.recorded_under) == {newest.name}:
        return [f"the week was decided by the newest bundle, {newest.name}: nothing to compare"]
    return impact_summary(report, examples=2)


def _summarise(rt: Runtime, report: DemoReport, sent: dict[str, Case]) -> None:
    counts = rt.ledger.counts()
    report.allowed, report.denied, report.escalated = counts["allowed"], counts["denied"], counts["escalated"]
    report.rejected = counts["rejected"]
    report.recorded = counts["requests"] + counts["rejected"]
    for recorded in recorded_decisions(rt.ledger):
        case = sent.get(recorded.message_id)
        bundle = rt.engine.bundles.by_version(recorded.decision["policy_version"])
        for result in recorded.decision["results"]:
            key = (recorded.summary["context"], result["outcome"], result["reason"] or result["rule"])
            report.by_context_rule[key] = report.by_context_rule.get(key, 0) + 1
            got = result["rule"] if result["outcome"] == "ALLOW" else result["reason"]
            want = case.expected(bundle.name) if case is not None and bundle is not None else None
            if case is not None and got != want:
                report.unexpected.append(f"{case.label} → {result['recipient']}: expected {want}, got {got}")
