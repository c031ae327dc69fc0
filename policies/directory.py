"""The organisation directory: organisations and cooperation instances.

Loaded from ``policies/directory/organisations.yaml`` and ``cooperations.yaml``.
All validity bounds are inclusive dates; a missing bound is open. Which key may
sign for an authority is not directory data: the deployment's key set says so
(``services/keyset.py``; ``keys.yaml`` here holds the public development keys only).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .model import Role, canonical_json, format_loc

DIRECTORY_DIR = Path(__file__).parent / "directory"
# The directory every decision recorded before decisions carried a directory version was made
# under: the shipped directory was unchanged from the first release until then (issue #14).
LEGACY_DIRECTORY_DIR = DIRECTORY_DIR / "legacy"

# libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents
# ~10x faster than the pure-Python SafeLoader (the directory is ~400 kB of YAML, read by every
# gate, CLI command and audit worker at start).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DirectoryError(ValueError):
    def __init__(self, file: str, path: str, problem: str):
        super().__init__(f"{file}: {path}: {problem}")
        self.file, self.path, self.problem = file, path, problem


class _D(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Org(_D):
    name: str
    kind: str | None = None
    code: str | None = Field(default=None, pattern=r"^\d{3}$")
    slug: str | None = None
    police_district: str | None = None
    region: str | None = None
    roles: list[Role] = Field(min_length=1)
    valid_from: date | None = None
    valid_to: date | None = None
    institution: str | None = None
    # provenance: the public source the entry was checked against, when, and any caveat
    source: str | None = None
    checked: date | None = None
    note: str | None = None

    def valid_on(self, d: date) -> bool:
        return (self.valid_from is None or self.valid_from <= d) and (
            self.valid_to is None or d <= self.valid_to)


class MemberSpec(_D):
    org: str
    valid_from: date | None = None
    valid_to: date | None = None


class CooperationInstance(_D):
    type: Literal["SSP", "PSP", "KSP", "INFOHUS"]
    name: str
    max_age: int | None = Field(default=None, ge=0)
    members: list[Union[str, MemberSpec]]
    valid_from: date | None = None
    valid_to: date | None = None
    source: str | None = None
    checked: date | None = None
    note: str | None = None


class _OrgFile(_D):
    organisations: dict[str, Org]


class _CoopFile(_D):
    cooperations: dict[str, CooperationInstance]


def _read(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as e:
        raise DirectoryError(str(path), "<file>", str(e)) from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise DirectoryError(str(path), format_loc(err["loc"]), err["msg"]) from None


@dataclass(frozen=True, slots=True)
class Interval:
    valid_from: date | None
    valid_to: date | None

    def contains(self, d: date) -> bool:
        return (self.valid_from is None or self.valid_from <= d) and (
            self.valid_to is None or d <= self.valid_to)


class Directory:
    def __init__(self, orgs: dict[str, Org], coops: dict[str, CooperationInstance]):
        self.orgs = orgs
        self.cooperations = coops
        self._roles = {k: frozenset(v.roles) for k, v in orgs.items()}
        # (coop_id, org_id) -> intervals (membership ∩ cooperation validity)
        self._members: dict[tuple[str, str], tuple[Interval, ...]] = {}
        self._org_memberships: dict[str, list[str]] = {}
        for cid, c in coops.items():
            for i, m in enumerate(c.members):
                oid = m if isinstance(m, str) else m.org
                if oid not in orgs:
                    raise DirectoryError("cooperations", f"cooperations.{cid}.members[{i}]",
                                         f"unknown organisation {oid!r}")
                vf = None if isinstance(m, str) else m.valid_from
                vt = None if isinstance(m, str) else m.valid_to
                vf = max((x for x in (vf, c.valid_from) if x), default=None)
                vt = min((x for x in (vt, c.valid_to) if x), default=None)
                self._members.setdefault((cid, oid), ())
                self._members[(cid, oid)] += (Interval(vf, vt),)
                self._org_memberships.setdefault(oid, []).append(cid)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Directory":
        p = Path(path) if path is not None else DIRECTORY_DIR
        if not p.is_dir():
            raise DirectoryError(str(p), "<directory>", "not a directory holding organisations.yaml "
                                 "and cooperations.yaml")
        orgs = _read(p / "organisations.yaml", _OrgFile).organisations  # type: ignore[attr-defined]
        coops = _read(p / "cooperations.yaml", _CoopFile).cooperations  # type: ignore[attr-defined]
        return cls(orgs, coops)

    # ------------------------------------------------------------------ version
    def snapshot(self) -> dict[str, Any]:
        """The whole directory as plain JSON data: what the ledger stores and the version hashes."""
        return {
            "organisations": {k: v.model_dump(mode="json", exclude_none=True) for k, v in self.orgs.items()},
            "cooperations": {k: v.model_dump(mode="json", exclude_none=True)
                             for k, v in self.cooperations.items()},
        }

    @cached_property
    def version(self) -> str:
        """``sha256:`` + sha256 of the snapshot's canonical JSON (sorted keys, no whitespace,
        UTF-8): a content address, the same for the same facts however the YAML is laid out."""
        return "sha256:" + hashlib.sha256(canonical_json(self.snapshot()).encode("utf-8")).hexdigest()

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], *, source: str = "snapshot") -> "Directory":
        try:
            orgs = _OrgFile.model_validate({"organisations": data["organisations"]}).organisations
            coops = _CoopFile.model_validate({"cooperations": data["cooperations"]}).cooperations
        except KeyError as e:
            raise DirectoryError(source, "<snapshot>", f"missing {e.args[0]!r}") from None
        except ValidationError as e:
            err = e.errors()[0]
            raise DirectoryError(source, format_loc(err["loc"]), err["msg"]) from None
        return cls(orgs, coops)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ queries
    def org(self, org_id: str) -> Org | None:
        return self.orgs.get(org_id)

    def __contains__(self, org_id: str) -> bool:
        return org_id in self.orgs

    def roles(self, org_id: str) -> frozenset:
        return self._roles.get(org_id, frozenset())

    def is_valid(self, org_id: str, on: date) -> bool:
        o = self.orgs.get(org_id)
        return o is not None and o.valid_on(on)

    def cooperation(self, coop_id: str) -> CooperationInstance | None:
        return self.cooperations.get(coop_id)

    def max_age(self, coop_id: str | None) -> int | None:
        c = self.cooperations.get(coop_id) if coop_id else None
        return c.max_age if c is not None else None

    def is_member(self, org_id: str, coop_id: str, on: date) -> bool:
        for iv in self._members.get((coop_id, org_id), ()):
            if iv.contains(on):
                return True
        return False

    def memberships(self, org_id: str) -> list[str]:
        return list(self._org_memberships.get(org_id, []))

    def members(self, coop_id: str, on: date | None = None) -> list[str]:
        out = []
        for (cid, oid), ivs in self._members.items():
            if cid == coop_id and (on is None or any(iv.contains(on) for iv in ivs)):
                out.append(oid)
        return out

    def municipalities(self) -> dict[str, Org]:
        return {k: v for k, v in self.orgs.items() if k.startswith("kommune:")}
