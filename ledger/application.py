"""The ledger application: a thin eventsourcing layer that records batches atomically with their source position.

A batch from one Kafka partition (or one page of the outbox) is stored in one
transaction together with one tracking record, so a message is recorded once or
not at all, and a restarted reader resumes from ``position(name)``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from ledger.domain import Delivery, Exchange, RejectedMessage
from ledger.tables import SideTables
from ledger.url import persistence_env

__all__ = ["Ledger", "IntegrityError", "Tracking", "kafka_tracking_name"]


def kafka_tracking_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class Ledger(Application[UUID]):
    name = "xledger"
    # Aggregates here are short-lived; caching them only costs memory under a backlog.
    env = {"AGGREGATE_CACHE_MAXSIZE": "0", "IS_SNAPSHOTTING_ENABLED": "n"}

    def __init__(self, url: str, env: dict[str, str] | None = None):
        merged = {**persistence_env(url), **(env or {})}
        self.url = url
        super().__init__(env=merged)
        self.tables = SideTables(self.recorder.datastore)

    def construct_recorder(self):
        # A process recorder stores tracking records in the same transaction as events.
        return self.factory.process_recorder()

    # -- writing ----------------------------------------------------------------------------

    def record(self, aggregates: Iterable[Any], tracking: Tracking | None = None) -> int:
        """Stores the aggregates' pending events and the tracking record in one transaction.

        Raises IntegrityError if the tracking position was already recorded or any
        aggregate already exists: the caller re-reads ``position`` and skips.
        """
        processing = ProcessingEvent[UUID](tracking=tracking)
        processing.collect_events(*aggregates)
        if not processing.events and tracking is None:
            return 0
        recordings = self._record(processing)
        return len(recordings)

    # -- reading ----------------------------------------------------------------------------

    def position(self, tracking_name: str) -> int | None:
        return self.recorder.max_tracking_id(tracking_name)

    def existing(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these aggregate ids already have events (one query per id, but no decoding)."""
        return {i for i in ids if self.recorder.select_events(i, limit=1)}

    def notifications(self, start: int, limit: int = 1000) -> Sequence[Notification]:
        return self.recorder.select_notifications(start, limit=limit)

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

    def get_exchange(self, exchange: UUID) -> Exchange:
        return self.repository.get(exchange)

    def counts(self) -> dict[str, int]:
        """Entries and decisions by outcome, from the log itself (no read model needed)."""
        out = {"entries": 0, "requests": 0, "rejected": 0, "allowed": 0, "denied": 0, "escalated": 0, "deliveries": 0}
        start = 1
        while True:
            page = self.notifications(start, 1000)
            if not page:
                return out
            for n in page:
                out["entries"] += 1
                if n.topic.endswith("Exchange.Requested"):
                    out["requests"] += 1
                elif n.topic.endswith("RejectedMessage.Rejected"):
                    out["rejected"] += 1
                elif n.topic.endswith("Delivery.Published"):
                    out["deliveries"] += 1
                elif n.topic.endswith("Exchange.Decided"):
                    decision = self.mapper.to_domain_event(n).decision
                    for result in decision["results"]:
                        key = {"ALLOW": "allowed", "DENY": "denied", "ESCALATE": "escalated"}[result["outcome"]]
                        out[key] += 1
            start = page[-1].id + 1


__all__ += ["Exchange", "RejectedMessage", "Delivery"]
