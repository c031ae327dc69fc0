"""Access log: every view of personal data in the review app is itself a ledger entry.

One small aggregate per view: who (user name and roles), what (the kind of view
and its target: an exchange id or a subject pseudonym), when (the event's own
timestamp). Never any payload.
"""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event


class AccessRecord(Aggregate):
    @event("AccessLogged")
    def __init__(self, *, who: str, roles: list[str], action: str, target_kind: str, target: str, via: str) -> None:
        self.who = who
        self.roles = roles
        self.action = action
        self.target_kind = target_kind
        self.target = target
        self.via = via  # "web" or "api"


def log_access(ledger, *, who: str, roles: list[str], action: str, target_kind: str, target: str, via: str = "web") -> AccessRecord:
    record = AccessRecord(who=who, roles=sorted(roles), action=action, target_kind=target_kind, target=target, via=via)
    ledger.record([record])
    return record


__all__ = ["AccessRecord", "log_access"]
