"""Which organisation directory a recorded decision is re-decided under.

Every decision the gate records names the directory it was decided with
(``decision["directory_version"]``, a content hash, ``Directory.version``), and the
ledger holds that directory's snapshot (``ledger.domain.DirectorySnapshot``). An
audit re-decides each decision under its own directory by default; a what-if
names one directory for all (``--directory current`` or a directory folder).

Decisions recorded before directory versions existed name none. Until then the
shipped directory never changed, so they are re-decided under that directory, kept
as a recorded legacy snapshot (``policies/directory/legacy/``), and reported as
*legacy* rather than *recorded*: the directory in force is then an inference from
the project's history, not a fact in the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.domain import directory_snapshot_id
from policies.directory import LEGACY_DIRECTORY_DIR, Directory, DirectoryError

RECORDED, LEGACY, WHAT_IF = "recorded", "legacy", "what-if"


class DirectoryResolver:
    """``resolve(decision) -> (directory or None, how)``; ``how`` is ``recorded``, ``legacy`` or
    ``what-if``; ``None`` means the recorded version is in neither the ledger nor the shipped
    directory (an error the audit reports, never a silent divergence)."""

    def __init__(self, ledger: Any = None, *, override: Directory | None = None,
                 current: Directory | None = None):
        self.ledger = ledger
        self.override = override
        self._known: dict[str, Directory] = {}
        self._legacy: Directory | None = None
        cur = current or Directory.load()
        self._known[cur.version] = cur

    @classmethod
    def for_option(cls, ledger: Any, option: str | None) -> "DirectoryResolver":
        """The CLI's ``--directory``: absent = each decision's recorded directory; ``current`` =
        the shipped directory for all; ``legacy`` = the directory shipped before decisions recorded
        theirs; anything else a directory folder (what-if).
        Raises DirectoryError naming the folder when it cannot be read."""
        if option is None or option == "recorded":
            return cls(ledger)
        if option == "current":
            return cls(ledger, override=Directory.load())
        if option == "legacy":  # as `directory show|diff` name it
            return cls(ledger, override=Directory.load(LEGACY_DIRECTORY_DIR))
        return cls(ledger, override=Directory.load(Path(option)))

    @property
    def legacy(self) -> Directory:
        if self._legacy is None:
            self._legacy = Directory.load(LEGACY_DIRECTORY_DIR)
            self._known.setdefault(self._legacy.version, self._legacy)
        return self._legacy

    def bind(self, ledger: Any) -> None:
        """The ledger snapshots are read from, in this process (a worker binds its own)."""
        self.ledger = ledger

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes: without the ledger (each binds its own) and without what it read.
        state = dict(self.__dict__)
        state["ledger"] = None
        state["_known"] = {v: d for v, d in self._known.items() if d is self.override}
        state["_legacy"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if not self._known:
            cur = Directory.load()
            self._known[cur.version] = cur

    def __call__(self, rec: Any) -> tuple[Directory | None, str]:
        """The resolver protocol of ``services.audit`` (a recorded decision in, (directory, how) out)."""
        return self.resolve(rec.decision)

    def resolve(self, decision: dict[str, Any]) -> tuple[Directory | None, str]:
        if self.override is not None:
            return self.override, WHAT_IF
        version = decision.get("directory_version")
        if not version:
            return self.legacy, LEGACY
        return self.by_version(version), RECORDED

    def by_version(self, version: str) -> Directory | None:
        if version in self._known:
            return self._known[version]
        if version == self.legacy.version:
            return self.legacy
        d = self._from_ledger(version)
        if d is not None:
            self._known[version] = d
        return d

    def _from_ledger(self, version: str) -> Directory | None:
        if self.ledger is None:
            return None
        try:
            snap = self.ledger.repository.get(directory_snapshot_id(version))
        except Exception:  # eventsourcing's AggregateNotFound: not in this ledger
            return None
        d = Directory.from_snapshot(snap.content, source=f"ledger snapshot {version}")
        if d.version != version:  # the content must hash to its address
            raise DirectoryError(f"ledger snapshot {version}", "<snapshot>",
                                 f"content hashes to {d.version}")
        return d


__all__ = ["DirectoryResolver", "RECORDED", "LEGACY", "WHAT_IF"]


def directory_impact(ledger: Any, redecider: Any, bundles: Any, old: Directory, new: Directory, *,
                     progress: Any = None) -> Any:
    """Every recorded request re-decided under its recorded policy version twice, with ``old`` and
    with ``new``; what differs is grouped as ``policy impact`` groups it (``services.audit.ImpactReport``,
    recorded = under ``old``, proposed = under ``new``)."""
    from ledger.privacy import DecryptionError, SubjectErased
    from services.audit import ImpactReport, Rejected, recorded_decisions, tally

    report = ImpactReport(f"directory {new.version[:19]}…", new.version, None)
    for rec in recorded_decisions(ledger, progress=progress):
        report.requests += 1
        version = rec.decision.get("policy_version", "")
        bundle = bundles.by_version(version)
        key = bundle.name if bundle is not None else version
        report.recorded_under[key] = report.recorded_under.get(key, 0) + 1
        day = rec.occurred_on
        report.first_day = min(report.first_day or day, day)
        report.last_day = max(report.last_day or day, day)
        if bundle is None:
            report.skipped.append({"message_id": rec.message_id, "sender": rec.sender,
                                   "reason": "UNKNOWN_POLICY_VERSION"})
            continue
        try:
            before = redecider.decide(rec, bundle, old)
            after = redecider.decide(rec, bundle, new)
        except (SubjectErased, DecryptionError, Rejected) as exc:
            report.skipped.append({"message_id": rec.message_id, "sender": rec.sender,
                                   "reason": getattr(exc, "reason", type(exc).__name__)})
            continue
        tally(report, rec, before["results"], after["results"])
    return report


__all__ += ["directory_impact"]
