"""Danish and English names for every code the review app shows: reasons, purposes, cooperation
types, roles, categories, rules, checks, statuses; authorities and cooperation instances by
their directory names.

The labels are data (``labels.yaml`` beside this module). Which codes need one is read from the
policy bundles and the policy vocabulary (``bundle_codes``, ``vocabulary_codes``), and
tests/review/test_labels.py fails when one lacks a label in either language. A code without a
label is shown as the code, never hidden: a missing label is a bug to see, not to mask.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

HERE = Path(__file__).parent
LABELS_FILE = HERE / "labels.yaml"
KINDS = ("outcome", "reason", "purpose", "context", "role", "category", "custody", "basis", "consent_giver", "fact",
         "rule", "user_role", "review_status", "review_action", "escalation_status", "verdict", "delivery_kind")

_ID = re.compile(r"\b[a-z][a-z0-9]*:[a-z0-9][a-z0-9_:.-]*[a-z0-9]")
_CODE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b(?:ALLOW|DENY|ESCALATE|NONE|POLICE|PET|HEALTH|IDENTITY|"
                   r"ORDINARY|CRIMINAL|STATISTICS|PROSECUTION|KRIMINALFORSORGEN|UNDERRETNING)\b")
_FACT_FALSE = re.compile(r"\b([a-z]+(?:_[a-z]+)+) er ikke sand\b")
_RULE = re.compile(r"\b[PCAHEDL][0-9]\b")
_FACT = re.compile(r"\b(socially_vulnerable|crime_risk|convicted|radicalisation_assessed|custody_status)\b")


@lru_cache(maxsize=4)
def _data(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


class Labels:
    """All labels, in both languages. ``for_lang(lang)`` gives the one-language view templates use."""

    def __init__(self, data: dict[str, Any] | None = None, directory: Any = None):
        self.data = data if data is not None else _data(str(LABELS_FILE))
        if directory is None:
            from policies.directory import Directory

            directory = Directory.load()
        self.orgs = {k: v.name for k, v in directory.orgs.items()}
        self.coops = {k: v.name for k, v in directory.cooperations.items()}
        self._views = {lang: LangLabels(self, i, lang) for i, lang in enumerate(("da", "en"))}

    def for_lang(self, lang: str) -> "LangLabels":
        return self._views.get(lang, self._views["da"])

    def has(self, kind: str, code: str) -> bool:
        """Whether ``code`` has a non-empty label in both languages."""
        if kind == "check":
            return bool(code) and bool(self.data.get("check", {}).get(code))
        pair = self.data.get(kind, {}).get(code)
        return isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)

    def all_codes(self) -> set[str]:
        return {code for kind in KINDS for code in self.data.get(kind, {})}


class LangLabels:
    def __init__(self, labels: Labels, index: int, lang: str):
        self._l, self._i, self.lang = labels, index, lang

    def _get(self, kind: str, code: Optional[str]) -> str:
        if code is None or code == "":
            return "—"
        pair = self._l.data.get(kind, {}).get(code)
        return pair[self._i] if pair else str(code)

    # one method per kind, so templates read as lab.reason(r.reason)
    def outcome(self, c): return self._get("outcome", c)
    def reason(self, c): return self._get("reason", c)
    def purpose(self, c): return self._get("purpose", c)
    def context(self, c): return self._get("context", c)
    def role(self, c): return self._get("role", c)
    def category(self, c): return self._get("category", c)
    def rule(self, c): return self._get("rule", c)
    def review_status(self, c): return self._get("review_status", c)
    def review_action(self, c): return self._get("review_action", c)
    def escalation_status(self, c): return self._get("escalation_status", c)
    def verdict(self, c): return self._get("verdict", c)
    def delivery_kind(self, c): return self._get("delivery_kind", c)
    def custody(self, c): return self._get("custody", c)

    def reason_or_rule(self, reason: Optional[str], rule: Optional[str]) -> str:
        return self.reason(reason) if reason else self.rule(rule)

    def categories(self, value: Any) -> str:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return ", ".join(self.category(c) for c in items if c) or "—"

    def warnings(self, value: Any) -> str:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return ", ".join(self.reason(c) for c in items if c)

    def check(self, name: str) -> str:
        """A check's name: the bundles write it in Danish; English from labels.yaml."""
        if self._i == 0:
            return name
        return self._l.data.get("check", {}).get(name, name)

    def user_role(self, role: str) -> str:
        if role.startswith("agency:"):
            return f"{self._get('user_role', 'agency')}: {self.authority(role[len('agency:'):])}"
        return self._get("user_role", role)

    def user_roles(self, roles: Iterable[str]) -> str:
        return ", ".join(self.user_role(r) for r in roles)

    def authority(self, org_id: Optional[str]) -> str:
        if not org_id:
            return "—"
        return self._l.orgs.get(org_id) or self._l.coops.get(org_id) or org_id

    def cooperation_instance(self, coop_id: Optional[str]) -> str:
        return self._l.coops.get(coop_id or "", coop_id or "")

    @staticmethod
    def citation(text: Optional[str]) -> str:
        """A citation in Danish (the same on English pages: it names Danish law)."""
        out = text or ""
        for english, danish in _data(str(LABELS_FILE)).get("citation_fixes", {}).items():
            out = out.replace(english, danish)
        return out

    def detail(self, text: Optional[str]) -> str:
        """A check's recorded detail (Danish, as the engine wrote it) with its codes named in Danish:
        "socially_vulnerable er ikke sand" becomes "ikke socialt udsat", kommune:326 its name."""
        if not text:
            return ""
        da = self._l.for_lang("da")
        out = _FACT_FALSE.sub(lambda m: "ikke " + da._get("fact", m.group(1)), text)
        out = _FACT.sub(lambda m: da._get("fact", m.group(1)), out)
        out = _ID.sub(lambda m: da.authority(m.group(0)), out)
        out = _RULE.sub(lambda m: f"«{da.rule(m.group(0))}»", out)
        return _CODE.sub(lambda m: da.code(m.group(0)), out)

    def code(self, code: str) -> str:
        """Any code, whatever its kind (the first kind that names it)."""
        for kind in ("outcome", "reason", "purpose", "context", "role", "category", "custody", "review_status",
                     "escalation_status"):
            pair = self._l.data.get(kind, {}).get(code)
            if pair:
                return pair[self._i]
        return code


# -- which codes need a label -------------------------------------------------------------------


def bundle_codes(raw: dict[str, Any]) -> dict[str, set[str]]:
    """The codes one bundle (its YAML as loaded) uses, by kind."""
    out: dict[str, set[str]] = {k: set() for k in ("reason", "purpose", "context", "role", "category", "rule",
                                                     "check")}
    out["rule"].update(str(s) for s in raw.get("steps", []))
    for spec in (raw.get("checks") or {}).values():
        out["rule"].add(str(spec["step"]))
        out["check"].add(spec["name"])
        if spec.get("reason"):
            out["reason"].add(spec["reason"])
    for key in ("warning_mandatory", "warning_consent_invalid"):
        if key in raw:
            out["reason"].add(raw[key]["code"])
            out["rule"].add(raw[key]["step"])
            out["check"].add(raw[key]["name"])
    if "review" in raw:
        out["rule"].add(raw["review"]["rule"])
        out["reason"].add(raw["review"]["refused_reason"])
        out["check"].add(raw["review"]["name"])
        out["category"].update(raw["review"].get("four_eyes_categories", []))
    for key in (raw.get("citations") or {}):
        (out["reason"] if "_" in key else out["rule"]).add(key)
    out["rule"].update(raw.get("step_citations") or {})
    for fam in (raw.get("purpose_families") or {}).values():
        out["purpose"].update(fam)
    out["context"].update(raw.get("section_115_contexts", []))
    infohus = raw.get("infohus") or {}
    out["context"].update(x for x in (infohus.get("context"), infohus.get("network_context")) if x)
    out["rule"].update(x for x in (infohus.get("via_rule"),) if x)
    out["category"].update(infohus.get("network_allowed_categories", []))
    esc = raw.get("escalation") or {}
    out["context"].update(esc.get("pet_contexts", []))
    out["role"].update(esc.get("pet_recipient_roles", []) + esc.get("other_basis_roles", []))
    out["category"].update(raw.get("non_personal_categories", []))
    notif = raw.get("notification") or {}
    out["context"].update([notif["context"]] if notif.get("context") else [])
    out["role"].update(notif.get("excluded_sender_roles", []) + notif.get("recipient_roles", []))
    out["purpose"].update(notif.get("purposes", []))
    out["role"].update(raw.get("private_roles", []))
    sg = raw.get("self_governing") or {}
    out["role"].update(sg.get("roles", []))
    out["rule"].update([sg["rule"]] if sg.get("rule") else [])
    out["category"].update((raw.get("third_party") or {}).get("categories", []))
    for name, coop in (raw.get("cooperations") or {}).items():
        out["context"].add(name)
        out["role"].update(coop.get("roles", []))
        out["purpose"].update(coop.get("purposes", []))
        out["rule"].update(r["rule"] for r in coop.get("rules", []))
        for r in coop.get("rules", []):
            out["role"].update(r.get("sender_roles", []))
    return out


def vocabulary_codes() -> dict[str, set[str]]:
    """Every value of the policy vocabulary (policies/model.py), by kind."""
    from policies import model

    return {"role": {m.value for m in model.Role}, "context": {m.value for m in model.Context},
            "purpose": {m.value for m in model.Purpose}, "category": {m.value for m in model.Category},
            "custody": {m.value for m in model.CustodyStatus}, "outcome": {m.value for m in model.Outcome},
            "basis": {m.value for m in model.Basis}, "consent_giver": {m.value for m in model.ConsentGiver}}


__all__ = ["Labels", "LangLabels", "bundle_codes", "vocabulary_codes", "KINDS"]


def choice_codes(bundles: Any) -> dict[str, list[str]]:
    """The codes a filter may choose from: every bundle's reasons, rules and cooperation types, in
    the bundles' own order (no database query: the choices cost nothing on a large ledger)."""
    out: dict[str, list[str]] = {"reason": [], "rule": [], "context": []}
    raws = []
    for b in getattr(bundles, "bundles", ()) or ():
        try:
            raws.append(yaml.safe_load(Path(b.source).read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, TypeError):
            continue
    for raw in raws:
        codes = bundle_codes(raw)
        for kind in out:
            for code in sorted(codes[kind], key=_rule_order if kind == "rule" else str):
                # Warnings are not a decision's reason; "P" and SECTION_115 are step groups, not rules.
                if code not in out[kind] and not (kind == "rule" and code in ("P", "SECTION_115")) \
                        and not (kind == "reason" and code.startswith("WARN_")):
                    out[kind].append(code)
    from policies import model

    # Every cooperation type a request may name, NONE included (no bundle rule mentions it).
    out["context"] += [m.value for m in model.Context if m.value not in out["context"]]
    return out


def _rule_order(code: str) -> tuple[int, str]:
    return ("PALCHED".find(code[:1]) if code[:1] in "PALCHED" else 9, code)
