"""The policy engine: the decision procedure of disclosure-rules.md, steps 0-8.

The engine is generic: it owns the *step structure* only.  Roles, purposes,
purpose families, subject scopes, numbers, reason codes, check names and
citations come from the bundle in force (:mod:`policies.bundle`); organisations,
validity and memberships from the directory (:mod:`policies.directory`).

Per request, everything that does not depend on the recipient is evaluated
once; each recipient then assembles its trace from shared, immutable
:class:`CheckResult` objects plus its own checks.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from typing import Iterable

from .bundle import Bundle, BundleSet
from .directory import Directory
from .model import (
    Category,
    CheckResult,
    Consent,
    Decision,
    ExchangeRequest,
    InlineParty,
    InvalidRequest,
    Outcome,
    RecipientDecision,
)

ALLOW, DENY, ESCALATE = Outcome.ALLOW, Outcome.DENY, Outcome.ESCALATE


class _Party:
    __slots__ = ("org", "role", "ok", "why", "member", "member_detail", "label")

    def __init__(self, org: str, role, ok: bool, why: str, member: bool):
        self.org = org
        self.role = role._value_ if role is not None else None
        self.ok = ok          # known and valid on the exchange date (C7)
        self.why = why        # C7 detail
        self.member = member  # member of request.cooperation_id on the exchange date (C1)
        self.label = f"{org} ({role})" if role else org


def _in(d: date, vf: date | None, vt: date | None) -> bool:
    return (vf is None or vf <= d) and (vt is None or d <= vt)


def _span(vf, vt) -> str:
    return f"{vf or '…'} – {vt or '…'}"


_CACHE_MAX = 8192


def _digest(req: ExchangeRequest) -> str:
    """``ExchangeRequest.digest()``, computed the same way (the same canonical JSON) but
    with pydantic's serialization warnings off: identical bytes, ~40% less time (the
    discriminated ``Party`` unions are otherwise checked again while serializing)."""
    return "sha256:" + hashlib.sha256(req.model_dump_json(warnings=False).encode("utf-8")).hexdigest()


class PolicyEngine:
    def __init__(self, bundles: BundleSet, directory: Directory):
        self.bundles = bundles
        self.directory = directory
        self._names: dict[int, dict] = {}
        # Speed (bench/README.md): resolved parties and immutable CheckResults are memoised.
        # Both are pure functions of their keys (the directory and bundles never change
        # after loading); the caches are cleared when they grow past _CACHE_MAX.
        self._parties: dict[tuple, _Party] = {}
        self._checks: dict[tuple, CheckResult] = {}

    @classmethod
    def load_default(cls) -> "PolicyEngine":
        return cls(BundleSet.load(), Directory.load())

    # ------------------------------------------------------------------ parties
    def _resolve(self, p, field: str, d: date, coop_id: str | None) -> _Party:
        """``_resolve_uncached``, memoised per (org, date, cooperation) for directory ids and
        for inline parties without memberships (per org, role, validity)."""
        if p.__class__ is str:
            key = (p, d, coop_id)
        elif not p.memberships:
            key = (p.org, p.role, p.valid_from, p.valid_to, d, coop_id)
        else:
            return self._resolve_uncached(p, field, d, coop_id)
        party = self._parties.get(key)
        if party is None:
            party = self._resolve_uncached(p, field, d, coop_id)  # may raise InvalidRequest: never cached
            if len(self._parties) >= _CACHE_MAX:
                self._parties.clear()
            self._parties[key] = party
        return party

    def _resolve_uncached(self, p, field: str, d: date, coop_id: str | None) -> _Party:
        dr = self.directory
        if p.__class__ is str:
            org = dr.org(p)
            if org is None:
                return _Party(p, None, False, f"{p} er ukendt i organisationskataloget", False)
            if len(org.roles) != 1:
                raise InvalidRequest(field, (
                    f"organisation {p!r} has several roles ({', '.join(org.roles)}); "
                    "give an inline party {org, role}"))
            role = org.roles[0]
            if not org.valid_on(d):
                return _Party(p, role, False,
                              f"{p} er ikke gyldig {d} (gyldig {_span(org.valid_from, org.valid_to)})",
                              False)
            member = coop_id is not None and dr.is_member(p, coop_id, d)
            return _Party(p, role, True, f"{p} ({role}) gyldig {d.isoformat()}", member)
        assert isinstance(p, InlineParty)
        org = dr.org(p.org)
        role = p.role
        if org is not None:
            if role not in dr.roles(p.org):
                return _Party(p.org, role, False,
                              f"rollen {role} er ikke registreret for {p.org}", False)
            if not org.valid_on(d):
                return _Party(p.org, role, False,
                              f"{p.org} er ikke gyldig {d} (gyldig {_span(org.valid_from, org.valid_to)})",
                              False)
        if not _in(d, p.valid_from, p.valid_to):
            return _Party(p.org, role, False,
                          f"{p.org} er ikke gyldig {d} (oplyst gyldighed {_span(p.valid_from, p.valid_to)})",
                          False)
        if p.memberships or org is None:
            member = False
            if coop_id is not None:
                for m in p.memberships:
                    if isinstance(m, str):
                        if m == coop_id:
                            member = True
                            break
                    elif m.id == coop_id and _in(d, m.valid_from, m.valid_to):
                        member = True
                        break
        else:
            member = coop_id is not None and dr.is_member(p.org, coop_id, d)
        return _Party(p.org, role, True, f"{p.org} ({role}) gyldig {d.isoformat()}", member)

    # ------------------------------------------------------------------ consent
    def _consent_common(self, b: Bundle, req: ExchangeRequest, cats: frozenset) -> list[str]:
        """Consent defects that do not depend on the recipient."""
        c: Consent = req.consent  # type: ignore[assignment]
        bad: list[str] = []
        if c.explicit is not True:
            bad.append("ikke udtrykkeligt")
        if req.purpose not in c.purposes:
            bad.append(f"formålet {req.purpose._value_} er ikke omfattet")
        missing = cats.difference(c.categories)
        if missing:
            bad.append("kategorier ikke omfattet: " + ", ".join(sorted(missing)))
        wd = c.withdrawn_at
        if wd is not None:
            if not isinstance(wd, datetime):
                wd = datetime.combine(wd, time(0), tzinfo=req.occurred_at.tzinfo)
            if wd <= req.occurred_at:
                bad.append(f"tilbagekaldt {c.withdrawn_at}")
        age = req.subject.age
        if c.given_by == "SUBJECT":
            if age is None:
                bad.append("givet af personen, men alderen er ukendt")
            elif age < b.consent_min_age:
                bad.append(f"givet af personen på {age} år (kræver mindst {b.consent_min_age})")
        else:
            if age is None:
                bad.append("givet af forældremyndighedsindehaver, men alderen er ukendt")
            elif age >= b.custody_age_below:
                bad.append(f"givet af forældremyndighedsindehaver, men personen er {age} år "
                           f"(kun under {b.custody_age_below})")
        return bad

    # ------------------------------------------------------------------ decide
    def decide(self, request: ExchangeRequest,
               present_categories: Iterable[Category] | None = None) -> Decision:
        req = request
        b = self.bundles.in_force(req.occurred_at)
        if b is None:
            raise InvalidRequest("occurred_at",
                                 f"no policy bundle is in force on {req.occurred_at.date()}")
        d = req.occurred_at.date()
        coop_id = req.cooperation_id
        sender = self._resolve(req.sender, "sender", d, coop_id)
        recips = [self._resolve(r, f"recipients[{i}]", d, coop_id)
                  for i, r in enumerate(req.recipients)]
        results = [self._decide_one(b, req, d, sender, r, present_categories, shared)
                   for shared in (self._shared(b, req, d, sender, present_categories),)
                   for r in recips]
        return Decision(req.id, _digest(req), b.version, results)

    @staticmethod
    def _chk(b: Bundle, slot: str, passed: bool, detail: str) -> CheckResult:
        step, name = b.check_sn[slot]
        return CheckResult(step, name, passed, detail)

    def _memo(self, key: tuple, build) -> CheckResult:
        """The CheckResult for ``key`` (which must name the bundle, the slot and every input
        of ``build``), built once."""
        c = self._checks.get(key)
        if c is None:
            c = build()
            if len(self._checks) >= _CACHE_MAX:
                self._checks.clear()
            self._checks[key] = c
        return c

    def _shared(self, b: Bundle, req: ExchangeRequest, d: date, sender: _Party,
                present) -> dict:
        """Everything that does not depend on the recipient, evaluated once."""
        s: dict = {}
        chk = self._chk
        memo = self._memo
        s["c7s"] = memo((b.version, "C7_SENDER", sender.ok, sender.why),
                        lambda: chk(b, "C7_SENDER", sender.ok, sender.why))
        if not sender.ok:
            return s
        cats = frozenset(req.data_categories)
        s["cats"] = cats
        cats_txt = ", ".join(sorted(cats))
        if present is not None:
            extra = frozenset(present).difference(cats)
            s["c4p"] = chk(b, "C4_PRESENT", not extra,
                           "ikke anmeldt: " + ", ".join(sorted(extra)) if extra
                           else "alle fundne kategorier er anmeldt")
        ctx = req.context
        ctx115 = ctx in b.contexts_115
        prov = req.provenance
        prov115 = prov is not None and prov.context in b.contexts_115
        s["ctx115"] = ctx115
        inv = req.purpose in b.investigative
        h1_fail = inv and (ctx115 or prov115)
        s["h1"] = memo((b.version, "H1", req.purpose, ctx, prov.context if prov else None), lambda: chk(
            b, "H1", not h1_fail,
            f"formål {req.purpose._value_} ({'efterforskning' if inv else 'ikke efterforskning'}); "
            f"kontekst {ctx._value_}" + (f"; oplysninger fra {prov.context._value_}" if prov else "")))
        if ctx == b.network_context:
            extra = cats.difference(b.network_allowed)
            s["h2"] = chk(b, "H2", not extra,
                          "personoplysninger: " + ", ".join(sorted(extra)) if extra
                          else "kun " + cats_txt)
        s["e1_ctx"] = ctx in b.pet_contexts
        s["e2_sender"] = sender.role in b.other_basis_roles
        a3 = cats <= b.non_personal
        s["a3"] = memo((b.version, "A3", cats), lambda: chk(b, "A3", a3, f"kategorier: {cats_txt}"))
        # A2 (recipient part added per recipient)
        if ctx == b.notif_context:
            bad = []
            if sender.role in b.notif_excluded_senders:
                bad.append(f"afsender {sender.role} er ikke en offentlig myndighed")
            age = req.subject.age
            if age is None or age >= b.notif_age_below:
                bad.append(f"personen er ikke under {b.notif_age_below} år (alder {age})")
            if req.purpose not in b.notif_purposes:
                bad.append(f"formål {req.purpose._value_}")
            s["a2_bad"] = bad
        if prov115:
            leaves = (not ctx115) or req.purpose not in b.preventive
            s["h3"] = chk(b, "H3", not leaves,
                          f"oplysninger fra {prov.context} ({prov.purpose}); ny kontekst {ctx._value_}, "
                          f"formål {req.purpose._value_}: " + ("forlader § 115 / det forebyggende formål"
                                                       if leaves else "forbliver"))
        if req.consent is not None:
            s["consent_bad"] = self._consent_common(b, req, cats)
        if ctx115:
            self._shared_115(b, req, d, sender, s, cats)
        return s

    def _shared_115(self, b: Bundle, req: ExchangeRequest, d: date, sender: _Party,
                    s: dict, cats: frozenset) -> None:
        chk = self._chk
        ctx = req.context
        if ctx == b.infohus_context:
            basis = req.underlying_basis
            s["p9"] = chk(b, "P9_BASIS", basis is not None,
                          f"underliggende grundlag: {basis}" if basis else "intet grundlag angivet")
            s["via"] = b.via_rule
            if basis is None:
                s["coop"] = None
                return
        else:
            basis = ctx
            s["via"] = None
        coop = b.coops[str(basis)]
        s["coop"] = coop
        memo = self._memo
        s["c2s"] = memo((b.version, "C2_SENDER", sender.role, str(basis)), lambda: chk(
            b, "C2_SENDER", sender.role in coop.roles,
            f"rolle {sender.role} {'er' if sender.role in coop.roles else 'er ikke'} "
            f"blandt {coop.basis}-rollerne"))
        s["c1s"] = memo((b.version, "C1_SENDER", sender.org, sender.member, req.cooperation_id, d), lambda: chk(
            b, "C1_SENDER", sender.member,
            f"{sender.org} {'er' if sender.member else 'er ikke'} medlem af "
            f"{req.cooperation_id} {d.isoformat()}"))
        # recipient-independent checks after C1
        post: list[tuple[str, CheckResult]] = []
        ok = req.purpose in coop.purposes
        post.append(("C8", memo((b.version, "C8", req.purpose, str(basis)), lambda: chk(
            b, "C8", ok, f"formål {req.purpose._value_} {'er' if ok else 'er ikke'} "
                         f"tilladt i {coop.basis} ({coop.purposes_text})"))))
        if ok:
            matched, detail = self._scope(b, coop, req, d)
            s["matched"] = matched
            ok = matched is not None
            post.append(("C3", chk(b, "C3", ok, detail)))
        if ok:
            n = len((req.necessity or "").strip())
            ok = n >= b.necessity_min
            post.append(("C4_NECESSITY", memo((b.version, "C4_NECESSITY", n), lambda: chk(
                b, "C4_NECESSITY", ok, f"begrundelse {n} tegn (mindst {b.necessity_min})"))))
        if ok:
            tp = cats & b.third_party
            if tp:
                ok = bool((req.third_party_justification or "").strip())
                post.append(("C4_THIRD_PARTY", chk(b, "C4_THIRD_PARTY", ok,
                                                   "tredjemandsoplysninger; begrundelse "
                                                   + ("angivet" if ok else "mangler"))))
            else:
                post.append(("C4_THIRD_PARTY", memo((b.version, "C4_THIRD_PARTY", None), lambda: chk(
                    b, "C4_THIRD_PARTY", True, "ingen tredjemandsoplysninger"))))
        s["post"] = post

    def _scope(self, b: Bundle, coop, req: ExchangeRequest, d: date):
        """C3: returns (names of matched scopes | None, detail)."""
        sub = req.subject
        max_age = self.directory.max_age(req.cooperation_id)
        if max_age is not None and (sub.age is None or sub.age > max_age):
            return None, (f"{req.cooperation_id} har aldersgrænse {max_age} år; "
                          f"personens alder: {sub.age if sub.age is not None else 'ukendt'}")
        if not coop.scopes:
            return (), (f"ingen lovbestemt personkreds for {coop.basis}"
                        + (f"; alder {sub.age} ≤ {max_age}" if max_age is not None else ""))
        age = sub.age
        cust = sub.custody_status
        rd = sub.release_date
        delta = (rd - d).days if rd is not None else None
        in_window = delta is not None and -coop.window_before <= delta <= coop.window_after
        matched = tuple(
            sc.name for sc in coop.scopes
            if all(getattr(sub, f) for f in sc.require_true)
            and (sc.custody_in is None or cust in sc.custody_in)
            and (sc.age_below is None or (age is not None and age < sc.age_below))
            and (not sc.release_window or in_window))
        if matched:
            extra = f" (løsladelse {rd.isoformat()}, {delta:+d} dage)" if rd is not None else ""
            return matched, "omfattet af " + ", ".join(matched) + extra
        # not in scope: explain every scope's failing conditions
        why: list[str] = []
        for sc in coop.scopes:
            bad = [f"{f} er ikke sand" for f in sc.require_true if not getattr(sub, f)]
            if sc.custody_in is not None and cust not in sc.custody_in:
                bad.append(f"custody_status {cust._value_}")
            if sc.age_below is not None and (age is None or age >= sc.age_below):
                bad.append(f"alder {age if age is not None else 'ukendt'} "
                           f"(skal være under {sc.age_below})")
            if sc.release_window and not in_window:
                bad.append("ingen løsladelsesdato" if rd is None else
                           f"løsladelse {rd} er {delta:+d} dage fra udvekslingen "
                           f"(vindue -{coop.window_before}..+{coop.window_after})")
            why.append(f"{sc.name}: " + ", ".join(bad))
        return None, "ikke omfattet: " + "; ".join(why)

    def _decide_one(self, b: Bundle, req: ExchangeRequest, d: date, sender: _Party,
                    r: _Party, present, s: dict) -> RecipientDecision:
        trace: list[CheckResult] = [s["c7s"]]
        org = r.org
        if not sender.ok:
            return self._deny(b, org, "C7", "C7_SENDER", trace)
        memo = self._memo
        trace.append(memo((b.version, "C7_RECIPIENT", r.ok, r.why),
                          lambda: self._chk(b, "C7_RECIPIENT", r.ok, r.why)))
        if not r.ok:
            return self._deny(b, org, "C7", "C7_RECIPIENT", trace)
        c4p = s.get("c4p")
        if c4p is not None:
            trace.append(c4p)
            if not c4p.passed:
                return self._deny(b, org, "C4", "C4_PRESENT", trace)
        h1 = s["h1"]
        trace.append(h1)
        if not h1.passed:
            return self._deny(b, org, "H1", "H1", trace)
        h2 = s.get("h2")
        if h2 is not None:
            trace.append(h2)
            if not h2.passed:
                return self._deny(b, org, "H2", "H2", trace)
        e1 = s["e1_ctx"] or r.role in b.pet_roles
        trace.append(memo((b.version, "E1", req.context, r.role), lambda: self._chk(
            b, "E1", not e1, f"kontekst {req.context._value_}, modtagerrolle {r.role}")))
        if e1:
            return self._deny(b, org, "E1", "E1", trace, ESCALATE)
        e2 = s["e2_sender"] or r.role in b.other_basis_roles
        trace.append(memo((b.version, "E2", sender.role, r.role), lambda: self._chk(
            b, "E2", not e2, f"afsenderrolle {sender.role}, modtagerrolle {r.role}")))
        if e2:
            return self._deny(b, org, "E2", "E2", trace, ESCALATE)
        a3 = s["a3"]
        trace.append(a3)
        if a3.passed:
            return self._allow(b, req, s, org, "A3", None, trace)
        if "a2_bad" in s:
            bad = list(s["a2_bad"])
            if r.role not in b.notif_recipients:
                bad.append(f"modtagerrolle {r.role} er ikke kommunens børneområde")
            trace.append(self._chk(b, "A2", not bad, "; ".join(bad) if bad else
                                   f"{sender.role} → {r.role}, barn {req.subject.age} år, "
                                   f"{req.purpose._value_}"))
            if bad:
                return self._deny(b, org, "A2", "A2", trace)
            return self._allow(b, req, s, org, "A2", None, trace)
        h3 = s.get("h3")
        if h3 is not None:
            trace.append(h3)
            if not h3.passed:
                if req.consent is not None and self._consent(b, req, s, org, trace):
                    return self._allow(b, req, s, org, "A1", None, trace)
                return self._deny(b, org, "H3", "H3", trace)
        if s["ctx115"]:
            failed = self._checks_115(b, req, s, sender, r, trace)
            if failed is None:
                coop = s["coop"]
                if sender.role in b.self_gov_roles or r.role in b.self_gov_roles:
                    rule = b.self_gov_rule
                    why = "selvejende institution deltager"
                else:
                    rule, why = None, ""
                    matched = s["matched"]
                    for rl, roles, scope in coop.rules:
                        if (roles is None or sender.role in roles) and (
                                scope is None or scope in matched):
                            rule = rl
                            why = (f"{coop.basis}, afsender {sender.role}"
                                   + (f", {scope}" if scope else ""))
                            break
                    if rule is None:  # bundle without a catch-all rule
                        return self._deny(b, org, "D0", "D0", trace)
                trace.append(memo((b.version, "RULE", rule, why), lambda: self._chk(b, "RULE", True, f"{rule}: {why}")))
                return self._allow(b, req, s, org, rule, s["via"], trace)
            slot, rule = failed
            if req.consent is not None:
                if self._consent(b, req, s, org, trace):
                    return self._allow(b, req, s, org, "A1", None, trace)
                return self._deny(b, org, "A1", "A1", trace)
            return self._deny(b, org, rule, slot, trace)
        # step 8: anything else
        if req.consent is not None:
            if self._consent(b, req, s, org, trace):
                return self._allow(b, req, s, org, "A1", None, trace)
            return self._deny(b, org, "A1", "A1", trace)
        trace.append(self._chk(b, "D0", False,
                               f"kontekst {req.context._value_}: ingen § 115-hjemmel og intet samtykke"))
        return self._deny(b, org, "D0", "D0", trace)

    def _checks_115(self, b: Bundle, req, s: dict, sender: _Party, r: _Party,
                    trace: list) -> tuple[str, str] | None:
        """Step 7 checks in order; returns (slot, rule) of the first failure or None."""
        p9 = s.get("p9")
        if p9 is not None:
            trace.append(p9)
            if not p9.passed:
                return "P9_BASIS", "P9"
        private = r.role in b.private_roles
        memo = self._memo
        trace.append(memo((b.version, "C5", r.role), lambda: self._chk(b, "C5", not private, f"modtagerrolle {r.role}")))
        if private:
            return "C5", "C5"
        coop = s["coop"]
        c2s = s["c2s"]
        trace.append(c2s)
        if not c2s.passed:
            return "C2_SENDER", "C2"
        ok = r.role in coop.roles
        trace.append(memo((b.version, "C2_RECIPIENT", r.role, coop.basis), lambda: self._chk(
            b, "C2_RECIPIENT", ok, f"rolle {r.role} {'er' if ok else 'er ikke'} blandt {coop.basis}-rollerne")))
        if not ok:
            return "C2_RECIPIENT", "C2"
        c1s = s["c1s"]
        trace.append(c1s)
        if not c1s.passed:
            return "C1_SENDER", "C1"
        trace.append(memo((b.version, "C1_RECIPIENT", r.org, r.member, req.cooperation_id, req.occurred_at.date()),
                          lambda: self._chk(b, "C1_RECIPIENT", r.member,
                                            f"{r.org} {'er' if r.member else 'er ikke'} medlem af "
                                            f"{req.cooperation_id} {req.occurred_at.date().isoformat()}")))
        if not r.member:
            return "C1_RECIPIENT", "C1"
        for slot, c in s["post"]:
            trace.append(c)
            if not c.passed:
                return slot, c.step
        return None

    def _consent(self, b: Bundle, req, s: dict, org: str, trace: list) -> bool:
        bad = s["consent_bad"]
        if org not in req.consent.recipients:
            bad = bad + [f"modtageren {org} er ikke nævnt"]
        ok = not bad
        trace.append(self._chk(b, "A1", ok, "; ".join(bad) if bad else
                               f"udtrykkeligt samtykke ({req.consent.given_by}) dækker modtager, "
                               "formål og kategorier"))
        return ok

    def _allow(self, b: Bundle, req, s: dict, org: str, rule: str, via, trace: list
               ) -> RecipientDecision:
        warnings: list[str] = []
        if req.mandatory and s["ctx115"]:
            w = b.warning
            warnings.append(w.code)
            trace.append(CheckResult(w.step, w.name, False,
                                     "anmodningen er markeret som pligtig (mandatory)"))
        return RecipientDecision(org, ALLOW, rule, via, None, b.citations[rule], warnings, trace)

    def _deny(self, b: Bundle, org: str, rule: str, slot: str, trace: list,
              outcome: Outcome = DENY) -> RecipientDecision:
        reason = b.checks[slot].reason
        return RecipientDecision(org, outcome, rule, None, reason, b.citations[reason], [], trace)
