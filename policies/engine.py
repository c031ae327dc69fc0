"""The policy engine: the decision procedure of docs/rules.md, steps 0-8 in each bundle's order.

The engine is generic: it owns what each step and check examines.  The order of
the steps, which failures deny and which escalate, what invalid consent does where
a step falls back on consent, roles, purposes, purpose families, subject scopes and
the release window, numbers, reason codes, check names and citations come from the
bundle in force on the exchange date (:mod:`policies.bundle`); organisations,
validity and memberships from the directory (:mod:`policies.directory`).

Per request, the bundle's steps become a *plan* (memoised per kind of request):
runs of shared trace items and the per-recipient operations between them, up to
the first step that decides every recipient reaching it.

Trace items (:class:`CheckResult`) are immutable and shared: per bundle, an
item is built once per distinct input (e.g. E1 per context and recipient role,
C7/C1 per resolved party) and reused by every later request.  Per request,
everything that does not depend on the recipient is evaluated once; each
recipient then assembles its trace from those shared items, and recipients that
differ only in identity (same role and membership, no consent) share one
evaluation.  Nothing is cached per request: every call evaluates its request and
computes its digest.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Iterable

from .bundle import INVALID_CONSENT_A1, INVALID_CONSENT_WARN, Bundle, BundleSet
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

#: Bound on every memo table (keys such as dates, text lengths or party ids are open-ended).
#: The tables hold pure functions of their keys, so clearing one only costs rebuilding.
_CACHE_MAX = 8192


def _in(d: date, vf: date | None, vt: date | None) -> bool:
    return (vf is None or vf <= d) and (vt is None or d <= vt)


def _span(vf, vt) -> str:
    return f"{vf or '…'} – {vt or '…'}"


def _is(flag: bool) -> str:
    return "er" if flag else "er ikke"


class _Memo(dict):
    """key -> ``build(key)``, built on first use.  A hit is a plain dict look-up
    (``__missing__`` runs only on a miss), which is why this is a dict subclass."""
    __slots__ = ("build",)

    def __init__(self, build):
        super().__init__()
        self.build = build

    def __missing__(self, key):
        v = self.build(key)
        if len(self) >= _CACHE_MAX:
            self.clear()
        self[key] = v
        return v


class _Party:
    """A resolved sender/recipient with its own trace items (C7 and C1 name the org)."""
    __slots__ = ("org", "role", "ok", "member", "c7s", "c7r", "c1s", "c1r")

    def __init__(self, t: "_Tables", org: str, role, ok: bool, why: str, member: bool,
                 coop_id: str | None, d: date):
        self.org = org
        self.role = role._value_ if role is not None else None
        self.ok = ok          # known and valid on the exchange date (C7)
        self.member = member  # member of request.cooperation_id on the exchange date (C1)
        self.c7s = t.item("C7_SENDER", ok, why)
        self.c7r = t.item("C7_RECIPIENT", ok, why)
        if ok:
            m = f"{org} {_is(member)} medlem af {coop_id} {d.isoformat()}"
            self.c1s = t.item("C1_SENDER", member, m)
            self.c1r = t.item("C1_RECIPIENT", member, m)
        else:  # an invalid party never gets as far as C1
            self.c1s = self.c1r = None


class _Tables:
    """One bundle's trace items, each built once per distinct input, plus the
    resolved parties (whose items carry this bundle's check names)."""

    def __init__(self, b: Bundle):
        self.b = b
        self.parties: dict[tuple, _Party] = {}
        self.reason = {slot: spec.reason for slot, spec in b.checks.items()}
        self.reason_cit = {slot: b.check_citation(slot) for slot in b.checks}
        self.outcome = {slot: Outcome(o) for slot, o in b.outcome.items()}
        # a shared check that fails for every recipient: its item is already in the trace
        self.stop_h1 = lambda t, q, r, trace: _deny(t, r.org, "H1", "H1", trace)
        self.stop_h2 = lambda t, q, r, trace: _deny(t, r.org, "H2", "H2", trace)
        self.h1 = _Memo(self._h1)
        self.c4p = _Memo(self._c4p)
        self.h2 = _Memo(self._h2)
        self.e1 = _Memo(self._e1)
        self.e2 = _Memo(self._e2)
        self.a3 = _Memo(self._a3)
        self.a2 = _Memo(self._a2)
        self.h3 = _Memo(self._h3)
        self.p9 = _Memo(self._p9)
        self.c5 = _Memo(self._c5)
        self.esc = _Memo(self._esc)
        self.roles115 = _Memo(self._roles115)
        self.c2s = _Memo(lambda k: self._c2("C2_SENDER", *k))
        self.c2r = _Memo(lambda k: self._c2("C2_RECIPIENT", *k))
        self.c8 = _Memo(self._c8)
        self.c3_in = _Memo(self._c3_in)
        self.c3_open = _Memo(self._c3_open)
        self.c4n = _Memo(self._c4n)
        self.rule = _Memo(self._rule)
        self.plans = _Memo(self._plan)
        self.d0 = _Memo(lambda ctx: self.item(
            "D0", False, f"kontekst {ctx._value_}: ingen § 115-hjemmel og intet samtykke"))
        self.c4tp_none = self.item("C4_THIRD_PARTY", True, "ingen tredjemandsoplysninger")
        self.c4tp_given = self.item("C4_THIRD_PARTY", True,
                                    "tredjemandsoplysninger; begrundelse angivet")
        self.c4tp_missing = self.item("C4_THIRD_PARTY", False,
                                      "tredjemandsoplysninger; begrundelse mangler")
        self.self_gov = self.item("RULE", True, f"{b.self_gov_rule}: selvejende institution deltager")
        w = b.warning
        self.warn_code = w.code
        self.warn = CheckResult(w.step, w.name, False, "anmodningen er markeret som pligtig (mandatory)")
        self.warn_consent_code = b.warning_consent.code if b.warning_consent is not None else None

    def _plan(self, k) -> tuple[tuple, str | None]:
        """The bundle's steps for one kind of request (the key holds every input of the shared
        checks), as a plan: runs of shared trace items (tuples) and per-recipient operations,
        up to the first step that decides every recipient reaching it.  Also returns that step
        when the request's consent and § 115 facts are needed (H3, SECTION_115, D0), else None."""
        purpose, ctx, prov_ctx, prov_purpose, cats = k
        b = self.b
        plan: list = []
        seg: list[CheckResult] = []  # shared items not yet in the plan

        def then(op, last: str | None = None) -> tuple[tuple, str | None]:
            if seg:
                plan.append(tuple(seg))
                seg.clear()
            plan.append(op)
            return tuple(plan), last

        steps = b.steps
        n = len(steps)
        i = 0
        while i < n:
            step = steps[i]
            i += 1
            if step == "H1":
                c = self.h1[purpose, ctx, prov_ctx]
                seg.append(c)
                if not c.passed:
                    return then(self.stop_h1)
            elif step == "H2":
                if ctx == b.network_context:
                    c = self.h2[cats]
                    seg.append(c)
                    if not c.passed:
                        return then(self.stop_h2)
            elif step == "E1":
                if i < n and steps[i] == "E2":  # the usual pair: one look-up for both
                    i += 1
                    then(_op_e1e2)
                else:
                    then(_op_e1)
            elif step == "E2":
                then(_op_e2)
            elif step == "A3":
                c = self.a3[cats]
                seg.append(c)
                if c.passed:  # every recipient that gets here is allowed by A3
                    return then(_op_a3)
            elif step == "A2":
                if ctx == b.notif_context:  # every recipient that gets here is decided by A2
                    return then(_op_a2)
            elif step == "H3":
                if prov_ctx is not None and prov_ctx in b.contexts_115:
                    c = self.h3[prov_ctx, prov_purpose, ctx, purpose]
                    seg.append(c)
                    if not c.passed:  # consent or the fallback decide
                        return then(_op_h3, step)
            elif step == "SECTION_115":
                if ctx in b.contexts_115:  # step 7 decides every recipient that gets here
                    return then(_op_115, step)
            else:  # D0
                return then(_op_d0, step)
        raise AssertionError("a bundle's steps end with D0")  # pragma: no cover

    def item(self, slot: str, passed: bool, detail: str) -> CheckResult:
        step, name = self.b.check_sn[slot]
        return CheckResult(step, name, passed, detail)

    # Builders: each key holds every input of its check's outcome and detail text.
    def _h1(self, k) -> CheckResult:
        purpose, ctx, prov_ctx = k
        b = self.b
        inv = purpose in b.investigative
        fail = inv and (ctx in b.contexts_115 or (prov_ctx is not None and prov_ctx in b.contexts_115))
        return self.item("H1", not fail,
                         f"formål {purpose._value_} ({'efterforskning' if inv else 'ikke efterforskning'}); "
                         f"kontekst {ctx._value_}"
                         + (f"; oplysninger fra {prov_ctx._value_}" if prov_ctx is not None else ""))

    def _c4p(self, extra: frozenset) -> CheckResult:
        return self.item("C4_PRESENT", not extra,
                         "ikke anmeldt: " + ", ".join(sorted(extra)) if extra
                         else "alle fundne kategorier er anmeldt")

    def _h2(self, cats: frozenset) -> CheckResult:
        extra = cats.difference(self.b.network_allowed)
        return self.item("H2", not extra,
                         "personoplysninger: " + ", ".join(sorted(extra)) if extra
                         else "kun " + ", ".join(sorted(cats)))

    def _e1(self, k) -> CheckResult:
        ctx, role = k
        b = self.b
        return self.item("E1", not (ctx in b.pet_contexts or role in b.pet_roles),
                         f"kontekst {ctx._value_}, modtagerrolle {role}")

    def _e2(self, k) -> CheckResult:
        sender_role, role = k
        other = self.b.other_basis_roles
        return self.item("E2", not (sender_role in other or role in other),
                         f"afsenderrolle {sender_role}, modtagerrolle {role}")

    def _esc(self, k) -> tuple[tuple[CheckResult, ...], tuple[str, str] | None]:
        """E1, E2 up to the first failure, and its (rule, slot)."""
        ctx, sender_role, role = k
        e1 = self.e1[ctx, role]
        if not e1.passed:
            return (e1,), ("E1", "E1")
        e2 = self.e2[sender_role, role]
        return (e1, e2), None if e2.passed else ("E2", "E2")

    def _roles115(self, k) -> tuple[tuple[CheckResult, ...], tuple[str, str] | None]:
        """C5, C2 sender, C2 recipient up to the first failure, and its (rule, slot)."""
        sender_role, role, basis = k
        c5 = self.c5[role]
        if not c5.passed:
            return (c5,), ("C5", "C5")
        c2s = self.c2s[sender_role, basis]
        if not c2s.passed:
            return (c5, c2s), ("C2", "C2_SENDER")
        c2r = self.c2r[role, basis]
        return (c5, c2s, c2r), None if c2r.passed else ("C2", "C2_RECIPIENT")

    def _a3(self, cats: frozenset) -> CheckResult:
        return self.item("A3", cats <= self.b.non_personal, "kategorier: " + ", ".join(sorted(cats)))

    def _a2(self, k) -> CheckResult:
        sender_role, role, age, purpose = k
        b = self.b
        bad = []
        if sender_role in b.notif_excluded_senders:
            bad.append(f"afsender {sender_role} er ikke en offentlig myndighed")
        if age is None or age >= b.notif_age_below:
            bad.append(f"personen er ikke under {b.notif_age_below} år (alder {age})")
        if purpose not in b.notif_purposes:
            bad.append(f"formål {purpose._value_}")
        if role not in b.notif_recipients:
            bad.append(f"modtagerrolle {role} er ikke kommunens børneområde")
        return self.item("A2", not bad, "; ".join(bad) if bad else
                         f"{sender_role} → {role}, barn {age} år, {purpose._value_}")

    def _h3(self, k) -> CheckResult:
        prov_ctx, prov_purpose, ctx, purpose = k
        b = self.b
        leaves = ctx not in b.contexts_115 or purpose not in b.preventive
        return self.item("H3", not leaves,
                         f"oplysninger fra {prov_ctx} ({prov_purpose}); ny kontekst {ctx._value_}, "
                         f"formål {purpose._value_}: " + ("forlader § 115 / det forebyggende formål"
                                                          if leaves else "forbliver"))

    def _p9(self, basis) -> CheckResult:
        return self.item("P9_BASIS", basis is not None,
                         f"underliggende grundlag: {basis}" if basis else "intet grundlag angivet")

    def _c5(self, role) -> CheckResult:
        return self.item("C5", role not in self.b.private_roles, f"modtagerrolle {role}")

    def _c2(self, slot: str, role, basis: str) -> CheckResult:
        coop = self.b.coops[basis]
        ok = role in coop.roles
        return self.item(slot, ok, f"rolle {role} {_is(ok)} blandt {coop.basis}-rollerne")

    def _c8(self, k) -> CheckResult:
        purpose, basis = k
        coop = self.b.coops[basis]
        ok = purpose in coop.purposes
        return self.item("C8", ok, f"formål {purpose._value_} {_is(ok)} "
                                   f"tilladt i {coop.basis} ({coop.purposes_text})")

    def _c3_in(self, k) -> CheckResult:
        matched, rd, delta, unscheduled = k
        extra = f" (løsladelse {rd.isoformat()}, {delta:+d} dage)" if rd is not None else (
            " (løsladelsesdato endnu ikke fastsat)" if unscheduled else "")
        return self.item("C3", True, "omfattet af " + ", ".join(matched) + extra)

    def _c3_open(self, k) -> CheckResult:
        basis, max_age, age = k
        return self.item("C3", True, f"ingen lovbestemt personkreds for {basis}"
                         + (f"; alder {age} ≤ {max_age}" if max_age is not None else ""))

    def _rule(self, k) -> tuple[str | None, CheckResult | None]:
        """The first of the cooperation's P-rules that fits the sender and the matched
        subject scopes, with its RULE item; (None, None) if none fits."""
        basis, sender_role, matched = k
        coop = self.b.coops[basis]
        for rule, roles, scope in coop.rules:
            if (roles is None or sender_role in roles) and (scope is None or scope in matched):
                return rule, self.item("RULE", True, f"{rule}: {coop.basis}, afsender {sender_role}"
                                                     + (f", {scope}" if scope else ""))
        return None, None

    def _c4n(self, n: int) -> CheckResult:
        m = self.b.necessity_min
        return self.item("C4_NECESSITY", n >= m, f"begrundelse {n} tegn (mindst {m})")


class _Shared:
    """What one request's recipients have in common, evaluated once per request
    (``_shared`` stops at what no recipient can get past).  Class attributes are the
    defaults for what a given request does not set."""
    pre_fail = consent = p9 = via = basis = post_fail = rule = rule_item = None
    ctx115 = warn = sender_self_gov = False
    plan: list = []


class PolicyEngine:
    def __init__(self, bundles: BundleSet, directory: Directory):
        self.bundles = bundles
        self.directory = directory
        self._tables: dict[Bundle, _Tables] = {}
        # exchange date -> tables of the bundle in force; in_force is a function of the date
        # and neither the bundle set nor the directory changes after construction
        self._on: dict[date, _Tables | None] = {}
        self._max_age = {cid: c.max_age for cid, c in directory.cooperations.items()}

    @classmethod
    def load_default(cls) -> "PolicyEngine":
        return cls(BundleSet.load(), Directory.load())

    def _tables_on(self, d: date) -> _Tables | None:
        b = self.bundles.in_force(d)
        if b is None:
            return None
        t = self._tables.get(b)
        if t is None:
            t = self._tables[b] = _Tables(b)
        if len(self._on) >= _CACHE_MAX:
            self._on.clear()
        self._on[d] = t
        return t

    # ------------------------------------------------------------------ parties
    def _resolve(self, t: _Tables, p, i: int, d: date, coop_id: str | None) -> _Party:
        """``_resolve_uncached``, memoised per (org, date, cooperation) for directory ids and
        for inline parties without memberships (per org, role, validity).  ``i`` is the
        recipient index, -1 for the sender."""
        if p.__class__ is str:
            key = (p, d, coop_id)
        elif not p.memberships:
            key = (p.org, p.role, p.valid_from, p.valid_to, d, coop_id)
        else:
            return self._resolve_uncached(t, p, i, d, coop_id)
        party = t.parties.get(key)
        if party is None:
            party = self._resolve_uncached(t, p, i, d, coop_id)  # may raise InvalidRequest: never cached
            if len(t.parties) >= _CACHE_MAX:
                t.parties.clear()
            t.parties[key] = party
        return party

    def _resolve_uncached(self, t: _Tables, p, i: int, d: date, coop_id: str | None) -> _Party:
        dr = self.directory
        if p.__class__ is str:
            org = dr.org(p)
            if org is None:
                return _Party(t, p, None, False, f"{p} er ukendt i organisationskataloget", False,
                              coop_id, d)
            if len(org.roles) != 1:
                raise InvalidRequest("sender" if i < 0 else f"recipients[{i}]", (
                    f"organisation {p!r} has several roles ({', '.join(org.roles)}); "
                    "give an inline party {org, role}"))
            role = org.roles[0]
            if not org.valid_on(d):
                return _Party(t, p, role, False,
                              f"{p} er ikke gyldig {d} (gyldig {_span(org.valid_from, org.valid_to)})",
                              False, coop_id, d)
            member = coop_id is not None and dr.is_member(p, coop_id, d)
            return _Party(t, p, role, True, f"{p} ({role}) gyldig {d.isoformat()}", member, coop_id, d)
        assert isinstance(p, InlineParty)
        org = dr.org(p.org)
        role = p.role
        if org is not None:
            if role not in dr.roles(p.org):
                return _Party(t, p.org, role, False,
                              f"rollen {role} er ikke registreret for {p.org}", False, coop_id, d)
            if not org.valid_on(d):
                return _Party(t, p.org, role, False,
                              f"{p.org} er ikke gyldig {d} (gyldig {_span(org.valid_from, org.valid_to)})",
                              False, coop_id, d)
        if not _in(d, p.valid_from, p.valid_to):
            return _Party(t, p.org, role, False,
                          f"{p.org} er ikke gyldig {d} (oplyst gyldighed {_span(p.valid_from, p.valid_to)})",
                          False, coop_id, d)
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
        return _Party(t, p.org, role, True, f"{p.org} ({role}) gyldig {d.isoformat()}", member,
                      coop_id, d)

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
        elif c.given_by is None:
            bad.append("det er ikke oplyst, hvem der har givet samtykket")
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
        d = req.occurred_at.date()
        t = self._on.get(d) or self._tables_on(d)
        if t is None:
            raise InvalidRequest("occurred_at", f"no policy bundle is in force on {d}")
        coop_id = req.cooperation_id
        resolve = self._resolve
        sender = resolve(t, req.sender, -1, d, coop_id)
        rl = req.recipients
        recips = ([resolve(t, rl[0], 0, d, coop_id)] if len(rl) == 1 else  # the common case, cheaper
                  [resolve(t, r, i, d, coop_id) for i, r in enumerate(rl)])
        if sender.ok:
            q = self._shared(t, req, d, sender, present_categories)
            if len(recips) == 1:
                results = [_decide_one(t, q, recips[0])]
            else:
                results = self._decide_peers(t, q, recips)
        else:
            c7s = sender.c7s
            results = [_deny(t, r.org, "C7", "C7_SENDER", [c7s]) for r in recips]
        return Decision(req.id, req.digest(), t.b.version, results)

    def _shared(self, t: _Tables, req: ExchangeRequest, d: date, sender: _Party,
                present) -> _Shared:
        """Everything that does not depend on the recipient (the sender is valid), and the
        request's *plan*: the bundle's steps as runs of shared trace items and per-recipient
        operations, up to the first step that decides for every recipient."""
        b = t.b
        q = _Shared()
        q.c7s = sender.c7s
        cats = frozenset(req.data_categories)
        ctx = req.context
        purpose = req.purpose
        prov = req.provenance
        pre = q.pre = []
        if present is not None:  # undeclared data: always right after C7
            c = t.c4p[frozenset(present).difference(cats)]
            pre.append(c)
            if not c.passed:
                q.pre_fail = ("C4", "C4_PRESENT")
                return q
        q.ctx = ctx
        q.sender_role = sender.role
        ctx115 = q.ctx115 = ctx in b.contexts_115
        q.warn = req.mandatory and ctx115
        q.age = req.subject.age
        q.purpose = purpose
        plan, last = t.plans[purpose, ctx, prov.context if prov is not None else None,
                             prov.purpose if prov is not None else None, cats]
        q.plan = plan
        if last is not None:  # the plan ends in H3, § 115 or D0: consent may decide
            self._consent_shared(b, req, q, cats)
            if last == "SECTION_115":
                self._shared_115(t, req, d, sender, q, cats)
        return q

    def _consent_shared(self, b: Bundle, req: ExchangeRequest, q: _Shared, cats: frozenset) -> None:
        if req.consent is not None:
            q.consent = req.consent
            q.consent_bad = self._consent_common(b, req, cats)

    def _shared_115(self, t: _Tables, req: ExchangeRequest, d: date, sender: _Party,
                    q: _Shared, cats: frozenset) -> None:
        b = t.b
        ctx = req.context
        if ctx == b.infohus_context:
            basis = req.underlying_basis
            q.p9 = t.p9[basis]
            q.via = b.via_rule
            if basis is None:  # P9 fails before anything below is needed
                return
        else:
            basis = ctx
        basis = q.basis = basis._value_
        coop = b.coops[basis]
        q.c1s = sender.c1s
        q.sender_self_gov = sender.role in b.self_gov_roles
        # recipient-independent checks after C1, up to the first failure
        post = q.post = []
        c = t.c8[req.purpose, basis]
        post.append(c)
        if not c.passed:
            q.post_fail = (c.step, "C8")
            return
        matched, c = self._scope(t, coop, req, d)
        post.append(c)
        if matched is None:
            q.post_fail = (c.step, "C3")
            return
        c = t.c4n[len((req.necessity or "").strip())]
        post.append(c)
        if not c.passed:
            q.post_fail = (c.step, "C4_NECESSITY")
            return
        if cats & b.third_party:
            c = t.c4tp_given if (req.third_party_justification or "").strip() else t.c4tp_missing
        else:
            c = t.c4tp_none
        post.append(c)
        if not c.passed:
            q.post_fail = (c.step, "C4_THIRD_PARTY")
            return
        # the P-rule for recipients that are not self-governing (see _decide_one)
        q.rule, q.rule_item = t.rule[basis, sender.role, matched]

    def _scope(self, t: _Tables, coop, req: ExchangeRequest, d: date):
        """C3: returns (names of matched scopes | None, check)."""
        sub = req.subject
        max_age = self._max_age.get(req.cooperation_id)
        if max_age is not None and (sub.age is None or sub.age > max_age):
            return None, t.item("C3", False, f"{req.cooperation_id} har aldersgrænse {max_age} år; "
                                             f"personens alder: {sub.age if sub.age is not None else 'ukendt'}")
        if not coop.scopes:
            return (), t.c3_open[coop.basis, max_age, sub.age if max_age is not None else None]
        age = sub.age
        cust = sub.custody_status
        rd = sub.release_date
        delta = (rd - d).days if rd is not None else None
        in_window = delta is not None and -coop.window_before <= delta <= coop.window_after
        # A scope whose release date is optional takes a missing date as "not yet scheduled".
        # Plain loops, not a generator per scope and per fact: this runs for every § 115 request.
        found = []
        for sc in coop.scopes:
            for f in sc.require_true:
                if not getattr(sub, f):
                    break
            else:
                if ((sc.custody_in is None or cust in sc.custody_in)
                        and (sc.age_below is None or (age is not None and age < sc.age_below))
                        and (not sc.release_window or in_window or (rd is None and not sc.date_required))):
                    found.append(sc.name)
        matched = tuple(found)
        if matched:
            return matched, t.c3_in[matched, rd, delta,
                                    rd is None and any(sc.release_window for sc in coop.scopes
                                                       if sc.name in matched)]
        # not in scope: explain every scope's failing conditions
        why: list[str] = []
        for sc in coop.scopes:
            bad = [f"{f} er ikke sand" for f in sc.require_true if not getattr(sub, f)]
            if sc.custody_in is not None and cust not in sc.custody_in:
                bad.append(f"custody_status {cust._value_}")
            if sc.age_below is not None and (age is None or age >= sc.age_below):
                bad.append(f"alder {age if age is not None else 'ukendt'} "
                           f"(skal være under {sc.age_below})")
            if sc.release_window and not in_window and (rd is not None or sc.date_required):
                bad.append("ingen løsladelsesdato" if rd is None else
                           f"løsladelse {rd} er {delta:+d} dage fra udvekslingen "
                           f"(vindue -{coop.window_before}..+{coop.window_after})")
            why.append(f"{sc.name}: " + ", ".join(bad))
        return None, t.item("C3", False, "ikke omfattet: " + "; ".join(why))

    def _decide_peers(self, t: _Tables, q: _Shared, recips: list[_Party]) -> list[RecipientDecision]:
        """``_decide_one`` for each recipient, evaluated once per class of peers.

        Without consent, a valid recipient's decision depends on the recipient only
        through its role and membership, and its trace only through the two items that
        name it (C7 at index 1, and C1 if reached); its peers copy the first one's
        decision with those two items swapped in.  (Consent is checked per org.)"""
        one = _decide_one
        if q.consent is not None:
            return [one(t, q, r) for r in recips]
        out = []
        peers: dict[tuple, tuple[RecipientDecision, int]] = {}
        for r in recips:
            if not r.ok:
                out.append(one(t, q, r))
                continue
            key = (r.role, r.member)
            p = peers.get(key)
            if p is None:
                first = one(t, q, r)
                c1r = r.c1r
                i1 = next((i for i, c in enumerate(first.trace) if c is c1r), -1)
                peers[key] = (first, i1)
                out.append(first)
                continue
            first, i1 = p
            trace = first.trace.copy()
            trace[1] = r.c7r
            if i1 >= 0:
                trace[i1] = r.c1r
            out.append(RecipientDecision(r.org, first.outcome, first.rule, first.via, first.reason,
                                         first.citation, first.warnings.copy(), trace))
        return out


# ---------------------------------------------------------------------------- per recipient
# A request's plan (``_Shared.plan``) holds runs of shared trace items (tuples) and these
# operations; an operation appends its items and returns a decision, or None to go on.


def _decide_one(t: _Tables, q: _Shared, r: _Party) -> RecipientDecision:
    if not r.ok:
        return _deny(t, r.org, "C7", "C7_RECIPIENT", [q.c7s, r.c7r])
    trace = [q.c7s, r.c7r, *q.pre]
    if q.pre_fail is not None:
        return _deny(t, r.org, *q.pre_fail, trace)
    for op in q.plan:
        if op.__class__ is tuple:
            trace += op
            continue
        decided = op(t, q, r, trace)
        if decided is not None:
            return decided
    raise AssertionError("every plan ends with a deciding step")  # pragma: no cover


def _op_e1e2(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision | None:
    seg, failed = t.esc[q.ctx, q.sender_role, r.role]
    trace += seg
    if failed is not None:
        return _deny(t, r.org, *failed, trace)
    return None


def _op_e1(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision | None:
    c = t.e1[q.ctx, r.role]
    trace.append(c)
    return None if c.passed else _deny(t, r.org, "E1", "E1", trace)


def _op_e2(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision | None:
    c = t.e2[q.sender_role, r.role]
    trace.append(c)
    return None if c.passed else _deny(t, r.org, "E2", "E2", trace)


def _op_a3(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision:
    return _allow(t, q, r.org, "A3", None, trace)


def _op_a2(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision:
    c = t.a2[q.sender_role, r.role, q.age, q.purpose]
    trace.append(c)
    if not c.passed:
        return _deny(t, r.org, "A2", "A2", trace)
    return _allow(t, q, r.org, "A2", None, trace)


def _op_h3(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision:
    """H3 failed (the data leaves § 115 or the preventive purposes): valid consent, else the fallback."""
    if q.consent is not None and _consent(t, q, r.org, trace):
        return _allow(t, q, r.org, "A1", None, trace)
    return _fallback(t, q, r.org, "H3", trace)


def _op_115(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision:
    """Step 7: the § 115 checks, then the P-rule; a failed check is rescued only by valid consent."""
    org = r.org
    failed = _checks_115(t, q, r, trace)
    if failed is None:
        if q.sender_self_gov or r.role in t.b.self_gov_roles:
            rule, c = t.b.self_gov_rule, t.self_gov
        else:
            rule, c = q.rule, q.rule_item
            if rule is None:  # bundle without a catch-all rule
                return _deny(t, org, "D0", "D0", trace)
        trace.append(c)
        return _allow(t, q, org, rule, q.via, trace)
    if q.consent is not None:
        if _consent(t, q, org, trace):
            return _allow(t, q, org, "A1", None, trace)
        return _deny(t, org, "A1", "A1", trace)
    return _deny(t, org, *failed, trace)


def _op_d0(t: _Tables, q: _Shared, r: _Party, trace: list) -> RecipientDecision:
    """Step 8, no basis found: valid consent, else the fallback."""
    if q.consent is not None and _consent(t, q, r.org, trace):
        return _allow(t, q, r.org, "A1", None, trace)
    return _fallback(t, q, r.org, "D0", trace)


def _fallback(t: _Tables, q: _Shared, org: str, slot: str, trace: list) -> RecipientDecision:
    """H3 or D0 without valid consent: the step's own outcome (DENY or ESCALATE, from the
    bundle).  Consent that is present but invalid (its failed A1 item is in the trace) either
    decides instead (rule A1), adds a warning, or changes nothing (see bundle.FALLBACK_SLOTS)."""
    warnings = None
    if q.consent is not None:
        mode = t.b.invalid_consent[slot]
        if mode == INVALID_CONSENT_A1:
            return _deny(t, org, "A1", "A1", trace)
        if mode == INVALID_CONSENT_WARN:
            warnings = [t.warn_consent_code]
    if slot == "D0":
        trace.append(t.d0[q.ctx])
    return _deny(t, org, slot, slot, trace, warnings)


def _checks_115(t: _Tables, q: _Shared, r: _Party, trace: list) -> tuple[str, str] | None:
    """Step 7 checks in order; returns (rule, slot) of the first failure or None."""
    c = q.p9
    if c is not None:
        trace.append(c)
        if not c.passed:
            return "P9", "P9_BASIS"
    seg, failed = t.roles115[q.sender_role, r.role, q.basis]
    trace += seg
    if failed is not None:
        return failed
    c = q.c1s
    trace.append(c)
    if not c.passed:
        return "C1", "C1_SENDER"
    c = r.c1r
    trace.append(c)
    if not c.passed:
        return "C1", "C1_RECIPIENT"
    trace += q.post
    return q.post_fail


def _consent(t: _Tables, q: _Shared, org: str, trace: list) -> bool:
    bad = q.consent_bad
    if org not in q.consent.recipients:
        bad = bad + [f"modtageren {org} er ikke nævnt"]
    ok = not bad
    trace.append(t.item("A1", ok, "; ".join(bad) if bad else
                        f"udtrykkeligt samtykke ({q.consent.given_by}) dækker modtager, "
                        "formål og kategorier"))
    return ok


def _allow(t: _Tables, q: _Shared, org: str, rule: str, via, trace: list) -> RecipientDecision:
    if q.warn:
        trace.append(t.warn)
        warnings = [t.warn_code]
    else:
        warnings = []
    return RecipientDecision(org, ALLOW, rule, via, None, t.b.citations[rule], warnings, trace)


def _deny(t: _Tables, org: str, rule: str, slot: str, trace: list,
          warnings: list[str] | None = None) -> RecipientDecision:
    """A DENY or an ESCALATE (the slot's outcome in the bundle) by ``slot``."""
    return RecipientDecision(org, t.outcome[slot], rule, None, t.reason[slot], t.reason_cit[slot],
                             warnings if warnings is not None else [], trace)
