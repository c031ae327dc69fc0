"""Versioned policy bundles: the § 115 tables as validated data.

A bundle is a YAML file validated by pydantic (``extra="forbid"``).  Its policy
version is ``"sha256:" + sha256(canonical JSON of the validated bundle)``.  At load
time every table is turned into frozensets/dicts (:class:`CompiledBundle`) so the
engine does no pydantic work in the hot path.
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from .model import (
    Category,
    Context,
    CustodyStatus,
    Purpose,
    Role,
    canonical_json,
    format_loc,
)

BUNDLE_DIR = Path(__file__).parent / "bundles"

# libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents
# ~10x faster than the pure-Python SafeLoader; every gate, CLI command and audit worker reads
# the bundles at start (as policies.directory reads the directory).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BundleError(ValueError):
    """A bundle (or bundle set) that cannot be used.  The message names the file,
    the path inside it and what is wrong."""

    def __init__(self, file: str, path: str, problem: str):
        super().__init__(f"{file}: {path}: {problem}")
        self.file = file
        self.path = path
        self.problem = problem


class _B(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Fields added after a bundle was published: left out of the canonical JSON (and so of
    #: the policy version) while they are absent, so an older bundle keeps its version.
    _OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler):
        data = handler(self)
        for name in self._OMIT_IF_NONE:
            if name in data and data[name] is None:
                del data[name]
        return data


#: Every check slot of the decision procedure.  The engine owns the *step
#: structure*; the bundle owns names, reason codes and citations for each slot.
CHECK_SLOTS: tuple[str, ...] = (
    "C7_SENDER", "C7_RECIPIENT", "C4_PRESENT", "H1", "H2", "E1", "E2", "A3", "A2", "H3",
    "P9_BASIS", "C5", "C2_SENDER", "C2_RECIPIENT", "C1_SENDER", "C1_RECIPIENT", "C8", "C3",
    "C4_NECESSITY", "C4_THIRD_PARTY", "A1", "D0", "RULE",
)
#: slots whose failure is an ESCALATE rather than a DENY when the bundle does not say
#: (a check's ``outcome`` overrides it)
ESCALATING_SLOTS = frozenset({"E1", "E2"})
#: slots that *allow* when passed (they carry ``rule`` instead of / besides ``reason``)
ALLOWING_SLOTS = frozenset({"A3", "A2", "A1", "RULE"})
#: The steps after C7 (and the undeclared-data check, which always directly follow each
#: other first): a bundle lists them in its own order (``steps``).  ``SECTION_115`` is step 7,
#: the § 115 checks (P9, C5, C2, C1, C8, C3, C4 and the P-rule).
STEP_NAMES: tuple[str, ...] = ("H1", "H2", "E1", "E2", "A3", "A2", "H3", "SECTION_115", "D0")
#: The order of a bundle that does not list ``steps`` (version 1 of the rules).
DEFAULT_STEPS: tuple[str, ...] = STEP_NAMES
#: The steps that fall back on consent, and what they do when consent is present but invalid:
#: ``STEP`` (the step decides, as without consent), ``A1`` (rule A1 decides: DENY with A1's
#: reason) or ``STEP_WITH_WARNING`` (the step decides and the invalid-consent warning is added).
FALLBACK_SLOTS = ("H3", "D0")
INVALID_CONSENT_STEP, INVALID_CONSENT_A1, INVALID_CONSENT_WARN = "STEP", "A1", "STEP_WITH_WARNING"
DEFAULT_INVALID_CONSENT = {"H3": INVALID_CONSENT_STEP, "D0": INVALID_CONSENT_A1}

BoolFact = Literal["socially_vulnerable", "crime_risk", "convicted", "radicalisation_assessed"]


class CheckSpec(_B):
    _OMIT_IF_NONE = frozenset({"outcome", "invalid_consent"})
    step: str = Field(min_length=1)
    name: str = Field(min_length=1)
    reason: str | None = None
    #: DENY or ESCALATE when the check fails (absent: ESCALATE for E1/E2, DENY otherwise)
    outcome: Literal["DENY", "ESCALATE"] | None = None
    #: only H3 and D0: what present but invalid consent does (see FALLBACK_SLOTS)
    invalid_consent: Literal["STEP", "A1", "STEP_WITH_WARNING"] | None = None


class SubjectScope(_B):
    _OMIT_IF_NONE = frozenset({"release_date_required"})
    name: str = Field(min_length=1)
    require_true: list[BoolFact] = Field(default_factory=list)
    custody_status_in: list[CustodyStatus] | None = None
    age_below: int | None = Field(default=None, ge=0)
    release_window: bool = False
    #: with ``release_window``: whether a missing release_date is out of scope (absent: true).
    #: false means "not yet scheduled" and is in scope; a given date must lie in the window.
    release_date_required: bool | None = None


class RuleSelector(_B):
    rule: str = Field(min_length=1)
    sender_roles: list[Role] | None = None
    scope: str | None = None


class ReleaseWindow(_B):
    """In scope when exchange date - days_after_release <= release_date <= exchange date +
    days_before_release (calendar days, inclusive).  Version 1 wrote the two numbers as
    ``before_days`` (= days_after_release: the release lies up to so many days *before* the
    exchange) and ``after_days`` (= days_before_release); a bundle uses one pair or the other."""
    _OMIT_IF_NONE = frozenset({"before_days", "after_days", "days_after_release", "days_before_release"})
    before_days: int | None = Field(default=None, ge=0)
    after_days: int | None = Field(default=None, ge=0)
    days_after_release: int | None = Field(default=None, ge=0)
    days_before_release: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_pair(self) -> "ReleaseWindow":
        old = (self.before_days, self.after_days)
        new = (self.days_after_release, self.days_before_release)
        if all(v is None for v in old) and all(v is not None for v in new):
            return self
        if all(v is not None for v in old) and all(v is None for v in new):
            return self
        raise _PathError("<root>", "give days_after_release and days_before_release "
                                   "(or the older before_days and after_days), not a mix")

    @property
    def lower(self) -> int:
        """Days the release may lie before the exchange date."""
        return self.days_after_release if self.days_after_release is not None else self.before_days  # type: ignore[return-value]

    @property
    def upper(self) -> int:
        """Days the release may lie after the exchange date."""
        return self.days_before_release if self.days_before_release is not None else self.after_days  # type: ignore[return-value]


class CooperationPolicy(_B):
    roles: list[Role] = Field(min_length=1)
    purposes: list[Purpose] = Field(min_length=1)
    subject_scopes: list[SubjectScope] = Field(default_factory=list)
    release_window: ReleaseWindow | None = None
    rules: list[RuleSelector] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> "CooperationPolicy":
        names = {s.name for s in self.subject_scopes}
        for i, sel in enumerate(self.rules):
            if sel.scope is not None and sel.scope not in names:
                raise _PathError(f"rules[{i}].scope", f"unknown subject scope {sel.scope!r}")
        if any(s.release_window for s in self.subject_scopes) and self.release_window is None:
            raise _PathError("release_window", "required when a subject scope uses release_window")
        return self


class Infohus(_B):
    context: Context
    via_rule: str
    network_context: Context
    network_allowed_categories: list[Category] = Field(min_length=1)


class PurposeFamilies(_B):
    preventive: list[Purpose] = Field(min_length=1)
    investigative: list[Purpose] = Field(min_length=1)


class Escalation(_B):
    pet_contexts: list[Context]
    pet_recipient_roles: list[Role]
    other_basis_roles: list[Role]


class Notification(_B):
    context: Context
    excluded_sender_roles: list[Role]
    recipient_roles: list[Role] = Field(min_length=1)
    subject_age_below: int = Field(ge=0)
    purposes: list[Purpose] = Field(min_length=1)


class SelfGoverning(_B):
    roles: list[Role]
    rule: str


class ConsentPolicy(_B):
    subject_min_age: int = Field(ge=0)
    custody_holder_age_below: int = Field(ge=0)


class NecessityPolicy(_B):
    min_length: int = Field(ge=0)


class ThirdParty(_B):
    categories: list[Category] = Field(min_length=1)


class Warning_(_B):
    step: str
    code: str
    name: str


class ReviewPolicy(_B):
    """How a legal officer resolves an ESCALATE (the decision stays; a verdict follows it)."""
    rule: str = "L1"
    refused_reason: str = "DENY_REFUSED_ON_REVIEW"
    #: prefixed to the officer's citation (approval) or reason (refusal) in the result
    citation_prefix: str = "Juridisk kontrol:"
    #: an escalation whose data holds any of these categories needs two different officers' approval
    four_eyes_categories: list[Category] = Field(default_factory=list)
    name: str = "Godkendt eller afvist ved juridisk kontrol"


class BundleModel(_B):
    _OMIT_IF_NONE = frozenset({"steps", "step_citations", "warning_consent_invalid", "review"})
    name: str = Field(min_length=1)
    effective_from: date
    description: str = ""
    section_115_contexts: list[Context] = Field(min_length=1)
    purpose_families: PurposeFamilies
    infohus: Infohus
    escalation: Escalation
    non_personal_categories: list[Category] = Field(min_length=1)
    notification: Notification
    private_roles: list[Role]
    self_governing: SelfGoverning
    consent: ConsentPolicy
    necessity: NecessityPolicy
    third_party: ThirdParty
    cooperations: dict[Literal["SSP", "PSP", "KSP"], CooperationPolicy]
    checks: dict[str, CheckSpec]
    warning_mandatory: Warning_
    #: without ``step_citations``: citations keyed by rule *and* by reason code (version 1);
    #: with it: citations of the allowing rules (P1-P8, the via rule, A1-A3) only
    citations: dict[str, str]
    interpretations: list[str] = Field(default_factory=list)
    #: the order of the steps after C7 (absent: DEFAULT_STEPS)
    steps: list[Literal["H1", "H2", "E1", "E2", "A3", "A2", "H3", "SECTION_115", "D0"]] | None = None
    #: citations of DENY, ESCALATE and warnings keyed by the deciding step (C7, H1, ..., C6):
    #: where two steps share a reason code, the step decides the citation
    step_citations: dict[str, str] | None = None
    #: the warning added when consent is present but invalid and a step falls back with WARN
    warning_consent_invalid: Warning_ | None = None
    #: escalation review (absent: one approval, rule L1, DENY_REFUSED_ON_REVIEW)
    review: ReviewPolicy | None = None

    @model_validator(mode="after")
    def _cross(self) -> "BundleModel":
        for b in ("SSP", "PSP", "KSP"):
            if b not in self.cooperations:
                raise _PathError(f"cooperations.{b}", "missing cooperation")
        for i, ctx in enumerate(self.section_115_contexts):
            if ctx != self.infohus.context and str(ctx) not in self.cooperations:
                raise _PathError(f"section_115_contexts[{i}]",
                                 f"{ctx} is neither a cooperation nor the infohus context")
        for slot in CHECK_SLOTS:
            if slot not in self.checks:
                raise _PathError(f"checks.{slot}", "missing check")
        for slot in self.checks:
            if slot not in CHECK_SLOTS:
                raise _PathError(f"checks.{slot}", f"unknown check (known: {', '.join(CHECK_SLOTS)})")
        by_step = self.step_citations is not None
        for slot, spec in self.checks.items():
            if slot not in ALLOWING_SLOTS or slot == "A2" or slot == "A1":
                if not spec.reason:
                    raise _PathError(f"checks.{slot}.reason", "a reason code is required")
            if spec.reason and not by_step and spec.reason not in self.citations:
                raise _PathError(f"checks.{slot}.reason",
                                 f"reason code {spec.reason!r} has no entry in citations")
            if spec.reason and by_step and spec.step not in self.step_citations:  # type: ignore[operator]
                raise _PathError("step_citations", f"step {spec.step!r} (check {slot}) has no citation")
            if spec.invalid_consent is not None and slot not in FALLBACK_SLOTS:
                raise _PathError(f"checks.{slot}.invalid_consent",
                                 f"only {' and '.join(FALLBACK_SLOTS)} fall back on consent")
            if spec.outcome is not None and slot in ALLOWING_SLOTS and slot not in ("A1", "A2"):
                raise _PathError(f"checks.{slot}.outcome", "an allowing check has no failure outcome")
        rules = {"A1", "A2", "A3", self.self_governing.rule, self.infohus.via_rule}
        for name, coop in self.cooperations.items():
            rules.update(sel.rule for sel in coop.rules)
        for r in sorted(rules):
            if r not in self.citations:
                raise _PathError("citations", f"rule {r!r} has no citation")
        warnings = [("warning_mandatory", self.warning_mandatory)]
        if self.warning_consent_invalid is not None:
            warnings.append(("warning_consent_invalid", self.warning_consent_invalid))
        for path, w in warnings:
            if not by_step and w.code not in self.citations:
                raise _PathError(f"{path}.code", "warning code has no citation")
            if by_step and w.step not in self.step_citations:  # type: ignore[operator]
                raise _PathError("step_citations", f"warning step {w.step!r} has no citation")
        if any(self.checks[s].invalid_consent == INVALID_CONSENT_WARN for s in FALLBACK_SLOTS) \
                and self.warning_consent_invalid is None:
            raise _PathError("warning_consent_invalid",
                             f"required when a check's invalid_consent is {INVALID_CONSENT_WARN}")
        if self.steps is not None:
            if sorted(self.steps) != sorted(STEP_NAMES):
                missing = sorted(set(STEP_NAMES) - set(self.steps))
                twice = sorted({s for s in self.steps if self.steps.count(s) > 1})
                raise _PathError("steps", "every step exactly once: "
                                 + "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                                         f"twice {', '.join(twice)}" if twice else "") if p))
            if self.steps[-1] != "D0":
                raise _PathError("steps", "D0 (no basis found) must be the last step")
        return self


class _PathError(ValueError):
    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --------------------------------------------------------------------------- compiled


@dataclass(frozen=True, slots=True)
class CompiledScope:
    name: str
    require_true: tuple[str, ...]
    custody_in: frozenset | None
    age_below: int | None
    release_window: bool
    date_required: bool  # with release_window: a missing release date is out of scope


@dataclass(frozen=True, slots=True)
class CompiledCoop:
    basis: str
    roles: frozenset
    purposes: frozenset
    scopes: tuple[CompiledScope, ...]
    window_before: int
    window_after: int
    rules: tuple[tuple[str, frozenset | None, str | None], ...]
    roles_text: str
    purposes_text: str


class Bundle:
    """A validated, compiled policy bundle."""

    def __init__(self, model: BundleModel, source: str = "<memory>"):
        self.model = model
        self.source = source
        self.name = model.name
        self.effective_from = model.effective_from
        self.version = "sha256:" + hashlib.sha256(
            canonical_json(model.model_dump(mode="json")).encode("utf-8")).hexdigest()
        m = model
        self.contexts_115 = frozenset(m.section_115_contexts)
        self.preventive = frozenset(m.purpose_families.preventive)
        self.investigative = frozenset(m.purpose_families.investigative)
        self.infohus_context = m.infohus.context
        self.via_rule = m.infohus.via_rule
        self.network_context = m.infohus.network_context
        self.network_allowed = frozenset(m.infohus.network_allowed_categories)
        self.pet_contexts = frozenset(m.escalation.pet_contexts)
        self.pet_roles = frozenset(m.escalation.pet_recipient_roles)
        self.other_basis_roles = frozenset(m.escalation.other_basis_roles)
        self.non_personal = frozenset(m.non_personal_categories)
        n = m.notification
        self.notif_context = n.context
        self.notif_excluded_senders = frozenset(n.excluded_sender_roles)
        self.notif_recipients = frozenset(n.recipient_roles)
        self.notif_age_below = n.subject_age_below
        self.notif_purposes = frozenset(n.purposes)
        self.private_roles = frozenset(m.private_roles)
        self.self_gov_roles = frozenset(m.self_governing.roles)
        self.self_gov_rule = m.self_governing.rule
        self.consent_min_age = m.consent.subject_min_age
        self.custody_age_below = m.consent.custody_holder_age_below
        self.necessity_min = m.necessity.min_length
        self.third_party = frozenset(m.third_party.categories)
        self.citations = dict(m.citations)
        self.step_citations = dict(m.step_citations) if m.step_citations is not None else None
        self.checks = {k: v for k, v in m.checks.items()}
        self.check_sn = {k: (v.step, v.name) for k, v in m.checks.items()}
        self.warning = m.warning_mandatory
        self.warning_consent = m.warning_consent_invalid
        self.steps: tuple[str, ...] = tuple(m.steps) if m.steps is not None else DEFAULT_STEPS
        #: slot -> DENY or ESCALATE on failure
        self.outcome = {k: v.outcome or ("ESCALATE" if k in ESCALATING_SLOTS else "DENY")
                        for k, v in m.checks.items()}
        #: H3 / D0 -> what present but invalid consent does
        self.invalid_consent = {k: m.checks[k].invalid_consent or DEFAULT_INVALID_CONSENT[k]
                                for k in FALLBACK_SLOTS}
        self.review = m.review if m.review is not None else ReviewPolicy()
        self.coops: dict[str, CompiledCoop] = {}
        for basis, c in m.cooperations.items():
            self.coops[basis] = CompiledCoop(
                basis=basis,
                roles=frozenset(c.roles),
                purposes=frozenset(c.purposes),
                scopes=tuple(CompiledScope(
                    s.name, tuple(s.require_true),
                    frozenset(s.custody_status_in) if s.custody_status_in is not None else None,
                    s.age_below, s.release_window, s.release_date_required is not False)
                    for s in c.subject_scopes),
                window_before=c.release_window.lower if c.release_window else 0,
                window_after=c.release_window.upper if c.release_window else 0,
                rules=tuple((r.rule, frozenset(r.sender_roles) if r.sender_roles is not None
                             else None, r.scope) for r in c.rules),
                roles_text=", ".join(sorted(c.roles)),
                purposes_text=", ".join(sorted(c.purposes)),
            )

    def citation(self, code: str) -> str:
        """The citation of a rule (P1, A1, ...) or, in a bundle keyed by code, of a reason or
        warning code; in a bundle keyed by step, of a step (C7, H1, ...)."""
        found = self.citations.get(code)
        if found is None and self.step_citations is not None:
            found = self.step_citations.get(code)
        return found or ""

    def check_citation(self, slot: str) -> str | None:
        """The citation a DENY or ESCALATE by this check slot carries (None: no reason code)."""
        spec = self.checks[slot]
        if spec.reason is None:
            return None
        if self.step_citations is not None:
            return self.step_citations[spec.step]
        return self.citations[spec.reason]

    def warning_citation(self, w: "Warning_") -> str:
        if self.step_citations is not None:
            return self.step_citations[w.step]
        return self.citations[w.code]

    def trace_citations(self) -> dict[str, str]:
        """step -> the citation to show beside a trace item of that step (for explanations).
        An allowing step's (A1, A2, A3) entry is its rule's citation; a P-rule item (step
        "P") cites the decision's own rule."""
        out: dict[str, str] = {}
        for slot, spec in self.checks.items():
            cit = self.check_citation(slot)
            out.setdefault(spec.step, cit if cit is not None else self.citation(spec.step))
        out[self.warning.step] = self.warning_citation(self.warning)
        for rule in ("A1", "A2", "A3"):
            out[rule] = self.citation(rule)
        return out

    def failed_trace_citations(self) -> dict[str, str]:
        """Like :meth:`trace_citations`, for failed items where that differs: a failed A1 or
        A2 cites its deny step in a bundle keyed by step."""
        if self.step_citations is None:
            return {}
        return {step: self.step_citations[step] for step in ("A1", "A2") if step in self.step_citations}

    def __repr__(self) -> str:
        return f"Bundle({self.name!r}, effective_from={self.effective_from}, {self.version[:19]}…)"


def bundle_from_data(data: object, source: str = "<memory>") -> Bundle:
    if not isinstance(data, dict):
        raise BundleError(source, "<root>", "a bundle must be a mapping")
    try:
        model = BundleModel.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _PathError):
            path = format_loc(loc)
            if inner.path != "<root>":
                path = inner.path if path == "<root>" else f"{path}.{inner.path}"
            raise BundleError(source, path, inner.problem) from None
        more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
        raise BundleError(source, format_loc(loc), err["msg"] + more) from None
    return Bundle(model, source)


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BundleError(str(path), "<file>", f"cannot read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise BundleError(str(path), "<yaml>", f"not valid YAML: {e}") from None
    return bundle_from_data(data, str(path))


class BundleSet:
    """Several bundles; :meth:`in_force` picks the one with the latest
    ``effective_from`` on or before the exchange date."""

    def __init__(self, bundles: Iterable[Bundle]):
        bl = sorted(bundles, key=lambda b: b.effective_from)
        if not bl:
            raise BundleError("<bundle set>", "<root>", "no bundles")
        for a, b in zip(bl, bl[1:]):
            if a.effective_from == b.effective_from:
                raise BundleError(b.source, "effective_from",
                                  f"{b.effective_from} is also the effective_from of {a.source}")
        self.bundles: tuple[Bundle, ...] = tuple(bl)
        self._dates = [b.effective_from for b in bl]

    @classmethod
    def load(cls, paths: Iterable[str | Path] | None = None) -> "BundleSet":
        if paths is None:
            paths = sorted(BUNDLE_DIR.glob("*.yaml"))
        return cls(load_bundle(p) for p in paths)

    def in_force(self, at: datetime | date) -> Bundle | None:
        """The bundle in force on the calendar date of ``at`` (in its own offset)."""
        d = at.date() if isinstance(at, datetime) else at
        i = bisect.bisect_right(self._dates, d)
        return self.bundles[i - 1] if i else None

    def by_version(self, version: str) -> Bundle | None:
        for b in self.bundles:
            if b.version == version:
                return b
        return None
