"""What changed between two organisation directories: organisations, cooperations, memberships.

Pure data: ``diff_directories(old, new)`` compares two ``Directory`` objects. Provenance fields
(``source``, ``checked``, ``note``) are reported apart from facts, since they change no decision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .directory import Directory

PROVENANCE = ("source", "checked", "note")


@dataclass
class DirectoryDiff:
    old_version: str
    new_version: str
    orgs_added: list[str] = field(default_factory=list)
    orgs_removed: list[str] = field(default_factory=list)
    # org id -> field -> (old, new); facts and provenance apart
    orgs_changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    orgs_provenance: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    coops_added: list[str] = field(default_factory=list)
    coops_removed: list[str] = field(default_factory=list)
    # coop id -> (members added, members removed), a member written as its id plus any validity
    members: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    coops_changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.old_version == self.new_version

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old_version, "new": self.new_version,
            "organisations": {"added": self.orgs_added, "removed": self.orgs_removed,
                              "changed": {k: {f: list(v) for f, v in fs.items()} for k, fs in self.orgs_changed.items()},
                              "provenance_changed": sorted(self.orgs_provenance)},
            "cooperations": {"added": self.coops_added, "removed": self.coops_removed,
                             "changed": {k: {f: list(v) for f, v in fs.items()} for k, fs in self.coops_changed.items()},
                             "members": {k: {"added": a, "removed": r} for k, (a, r) in self.members.items()}},
        }


def _member(m: Any) -> str:
    if isinstance(m, str):
        return m
    bounds = [f"from {m['valid_from']}" if m.get("valid_from") else "", f"to {m['valid_to']}" if m.get("valid_to") else ""]
    extra = " ".join(b for b in bounds if b)
    return f"{m['org']} ({extra})" if extra else m["org"]


def _fields(a: dict[str, Any], b: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)}


def diff_directories(old: Directory, new: Directory) -> DirectoryDiff:
    a, b = old.snapshot(), new.snapshot()
    out = DirectoryDiff(old.version, new.version)
    ao, bo = a["organisations"], b["organisations"]
    out.orgs_added = sorted(set(bo) - set(ao))
    out.orgs_removed = sorted(set(ao) - set(bo))
    for oid in sorted(set(ao) & set(bo)):
        facts = _fields(ao[oid], bo[oid], PROVENANCE)
        if facts:
            out.orgs_changed[oid] = facts
        prov = {k: v for k, v in _fields(ao[oid], bo[oid]).items() if k in PROVENANCE}
        if prov:
            out.orgs_provenance[oid] = prov
    ac, bc = a["cooperations"], b["cooperations"]
    out.coops_added = sorted(set(bc) - set(ac))
    out.coops_removed = sorted(set(ac) - set(bc))
    for cid in sorted(set(ac) & set(bc)):
        before = [_member(m) for m in ac[cid]["members"]]
        after = [_member(m) for m in bc[cid]["members"]]
        added = [m for m in after if m not in before]
        removed = [m for m in before if m not in after]
        if added or removed:
            out.members[cid] = (added, removed)
        facts = _fields(ac[cid], bc[cid], PROVENANCE + ("members",))
        if facts:
            out.coops_changed[cid] = facts
    return out
