"""Scenario files: a YAML or JSON list of exchange requests with ``expected`` results.

Format: see policies/README.md ("Scenario files").  Extensions (documented there too):

* ``expected`` may be a single ``{outcome, rule, reason?, via?, warnings?, citation?}`` that
  applies to every recipient, or a mapping ``recipient-org-id -> {...}``.
* ``present_categories``: the categories the gate would find in the payload
  (input to the undeclared-data check).
* ``description``: free text, ignored.
* ``payload_type``: the payload record a real message of this kind carries (for the
  test that the declared categories are those such a payload always holds); ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .model import Category, ExchangeRequest, Outcome, RecipientDecision, format_loc


class ScenarioError(ValueError):
    """Invalid scenario input; names the file, scenario id and field."""

    def __init__(self, file: str, scenario: str, field: str, problem: str):
        super().__init__(f"{file}: scenario {scenario!r}: field {field!r}: {problem}")
        self.file, self.scenario, self.field, self.problem = file, scenario, field, problem


class ExpectedResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    outcome: Outcome
    rule: str | None = None
    reason: str | None = None
    via: str | None = None
    warnings: list[str] | None = None
    citation: str | None = None

    def mismatches(self, got: RecipientDecision) -> list[str]:
        out = []
        if got.outcome != self.outcome:
            out.append(f"outcome {got.outcome} != expected {self.outcome}")
        for f in ("rule", "reason", "via", "citation"):
            want = getattr(self, f)
            if f in self.model_fields_set and getattr(got, f) != want:
                out.append(f"{f} {getattr(got, f)} != expected {want}")
        if self.warnings is not None and sorted(got.warnings) != sorted(self.warnings):
            out.append(f"warnings {got.warnings} != expected {self.warnings}")
        return out


@dataclass(frozen=True)
class Expected:
    """Either one result for all recipients (``default``) or one per recipient."""
    default: ExpectedResult | None = None
    per_recipient: dict[str, ExpectedResult] | None = None

    def for_recipient(self, org: str) -> ExpectedResult | None:
        if self.per_recipient is not None:
            return self.per_recipient.get(org)
        return self.default


@dataclass(frozen=True)
class Scenario:
    id: str
    request: ExchangeRequest
    expected: Expected | None
    present_categories: tuple[Category, ...] | None = None
    description: str | None = None
    payload_type: str | None = None

    # behave like the (request, expected) pair of the brief
    def __iter__(self):
        return iter((self.request, self.expected))


class _Extra(BaseModel):
    model_config = ConfigDict(extra="forbid")
    present_categories: list[Category] | None = Field(default=None)


def _msg(m: str) -> str:
    return m[len("Value error, "):] if m.startswith("Value error, ") else m


def _parse_expected(file: str, sid: str, raw: Any) -> Expected:
    if not isinstance(raw, dict):
        raise ScenarioError(file, sid, "expected", "must be a mapping")
    try:
        if "outcome" in raw:
            return Expected(default=ExpectedResult.model_validate(raw))
        per = {}
        for org, v in raw.items():
            try:
                per[str(org)] = ExpectedResult.model_validate(v)
            except ValidationError as e:
                err = e.errors()[0]
                loc = format_loc(["expected", str(org), *err["loc"]]) if err["loc"] else \
                    f"expected.{org}"
                raise ScenarioError(file, sid, loc, err["msg"]) from None
        if not per:
            raise ScenarioError(file, sid, "expected", "empty")
        return Expected(per_recipient=per)
    except ValidationError as e:
        err = e.errors()[0]
        raise ScenarioError(file, sid, format_loc(["expected", *err["loc"]]), err["msg"]) from None


def parse_scenarios(data: Any, file: str = "<memory>") -> list[Scenario]:
    if not isinstance(data, list):
        raise ScenarioError(file, "<file>", "<root>", "a scenario file must be a list")
    out: list[Scenario] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ScenarioError(file, f"#{i}", "<root>", "a scenario must be a mapping")
        sid = item.get("id")
        if not isinstance(sid, str) or not sid:
            raise ScenarioError(file, f"#{i}", "id", "missing or not a string")
        if sid in seen:
            raise ScenarioError(file, sid, "id", "duplicate scenario id")
        seen.add(sid)
        body = dict(item)
        exp_raw = body.pop("expected", None)
        desc = body.pop("description", None)
        payload_type = body.pop("payload_type", None)
        if payload_type is not None and not isinstance(payload_type, str):
            raise ScenarioError(file, sid, "payload_type", "must be a record name")
        extra = {"present_categories": body.pop("present_categories", None)}
        try:
            req = ExchangeRequest.model_validate(body)
            ex = _Extra.model_validate(extra)
        except ValidationError as e:
            err = e.errors()[0]
            raise ScenarioError(file, sid, format_loc(err["loc"]),
                                _msg(err["msg"])) from None
        expected = _parse_expected(file, sid, exp_raw) if exp_raw is not None else None
        if expected is not None and expected.per_recipient is not None:
            orgs = {r if isinstance(r, str) else r.org for r in req.recipients}
            for org in expected.per_recipient:
                if org not in orgs:
                    raise ScenarioError(file, sid, f"expected.{org}",
                                        "not one of the scenario's recipients")
        out.append(Scenario(sid, req, expected,
                            tuple(ex.present_categories) if ex.present_categories is not None
                            else None, desc if isinstance(desc, str) else None, payload_type))
    return out


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Load a YAML or JSON scenario list.  Each :class:`Scenario` unpacks as the pair
    ``(ExchangeRequest, Expected | None)``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(p), "<file>", "<file>", f"cannot read: {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ScenarioError(str(p), "<file>", "<syntax>", str(e).replace("\n", " ")) from None
    return parse_scenarios(data, str(p))
