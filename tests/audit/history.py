"""Builds a ledger with real recorded exchanges: signed requests through the real GatePipeline.

Shared by the audit and review tests. Every request is a genuine signed Avro
message decided by the shipped policy bundle; nothing is hand-made except where
a test plants a divergence on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ledger.application import Ledger, Tracking
from ledger.domain import Exchange
from schemas.cpr import pseudonym
from services.agency import Publisher
from services.config import Settings
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.gate import Inbound
from services.keyring import DEV_KEY_ID, dev_private_key
from services.runtime import Runtime

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)
TOPIC = "exchange.requests"

# (label, CPR, release in days, age): synthetic CPR numbers, valid in form and date.
PLAN = [
    ("p5-21", "1203911234", 21, 34),
    ("p5-60", "0508882345", 60, 37),
    ("p5-85", "1203911234", 85, 34),
    ("deny-4y", "0101801234", 4 * 365, 45),
    ("p5-past-30", "0508882345", -30, 37),
]
CPR_A = "1203911234"
CPR_B = "0508882345"


@dataclass
class History:
    settings: Settings
    rt: Runtime
    ledger: Ledger
    sent: dict[str, str] = field(default_factory=dict)  # label -> message id
    offset: int = 0

    def publisher(self, org_role=KSP_SENDER) -> Publisher:
        return Publisher(org_role[0], org_role[1], producer=None, key=dev_private_key(org_role[0]), key_id=DEV_KEY_ID,
                         codec=self.rt.codec)

    def signed(self, request: dict[str, Any], *, message_id: str, org_role=KSP_SENDER, at: datetime = NOW) -> bytes:
        pub = self.publisher(org_role)
        return pub.signed_bytes(pub.envelope(occurred_at=at, message_id=message_id, **request))

    def record(self, value: bytes) -> Any:
        result = self.rt.pipeline().process(Inbound(TOPIC, 0, self.offset, value))
        self.offset += 1
        self.ledger.record([result], Tracking(f"kafka:{TOPIC}:0", self.offset))
        return result

    def add(self, label: str, cpr: str, days: int, age: int, at: datetime = NOW) -> Exchange:
        req = release_notice(at.date(), cpr=cpr, name=f"Test Person {label}", release_in_days=days, age=age)
        mid = f"msg-{label}"
        self.sent[label] = mid
        return self.record(self.signed(req, message_id=mid, at=at))

    def pseudonym(self, cpr: str) -> str:
        return pseudonym(cpr, self.rt.pseudonym_secret)


def build_history(ledger_url: str, plan=PLAN) -> History:
    settings = Settings.development(ledger_url=ledger_url)
    rt = Runtime(settings)
    h = History(settings, rt, rt.ledger)
    for label, cpr, days, age in plan:
        h.add(label, cpr, days, age)
    # One undecodable message: rejected, dead-lettered, recorded.
    h.record(b"not avro at all")
    return h


__all__ = ["History", "build_history", "NOW", "PLAN", "CPR_A", "CPR_B", "KALUNDBORG_SOCIAL", "KSP_SENDER"]
