"""Escalations held for a legal officer: approve (a basis in words and a citation) or refuse (a reason).

An ESCALATE is recorded like any decision and nothing is delivered; the sender's receipt says it
awaits legal review. A legal officer's verdict is an ``Exchange.EscalationVerdict`` event on the
exchange, with the officer's identity and the time. A verdict that closes the escalation carries
the result the relay acts on: ALLOW by rule L1 (the payload is delivered, with C6 when the request
was ``mandatory``) or DENY by rule L1 with ``DENY_REFUSED_ON_REVIEW``; it keeps the original
decision's policy version. The bundle of that version may require two different officers'
approval for given data categories (four eyes); one refusal closes the case.

``verdict_for`` is the rule, pure over an exchange and its bundle; ``EscalationDesk`` reads and
records through the ledger (list, statistics, the whole chain for auditors, approve, refuse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable
from uuid import UUID

from ledger.application import IntegrityError
from ledger.domain import delivery_id
from policies.bundle import Bundle

#: in the warnings of an ESCALATE receipt: the decision waits for a legal officer
AWAITING_REVIEW = "AWAITING_LEGAL_REVIEW"
#: delivery kind of the receipt that reports a verdict (the ESCALATE's own receipt is "receipt")
REVIEW_RECEIPT = "review-receipt"
APPROVE, REFUSE = "APPROVE", "REFUSE"
OPEN, APPROVED, REFUSED = "OPEN", "APPROVED", "REFUSED"
OFFICER_ROLE = "legal_officer"
MAX_TEXT = 2000
MAX_CITATION = 300
DEFAULT_MAX_OPEN = timedelta(hours=48)


class EscalationError(ValueError):
    """A verdict that cannot be recorded; ``code`` is stable, the message says what is wrong."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Escalation:
    """One escalated recipient of one exchange, and the verdicts on it so far."""

    exchange_id: str
    recipient: str
    message_id: str
    sender: str
    summary: dict[str, Any]
    decision: dict[str, Any]
    original: dict[str, Any]
    opened_at: datetime
    approvals_required: int
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def policy_version(self) -> str:
        return self.decision.get("policy_version", "")

    @property
    def status(self) -> str:
        for v in self.verdicts:
            if v["status"] != OPEN:
                return v["status"]
        return OPEN

    @property
    def approvers(self) -> list[str]:
        return [v["officer"] for v in self.verdicts if v["verdict"] == APPROVE]

    def overdue(self, now: datetime, max_open: timedelta) -> bool:
        return self.status == OPEN and now - self.opened_at > max_open


def categories_of(summary: dict[str, Any]) -> set[str]:
    """The categories four eyes is judged by: what the gate found in the payload (the declared
    ones where nothing was scanned). The read models hold the same set."""
    return set(summary.get("present_categories") or summary.get("declared_categories") or [])


def approvals_required(bundle: Bundle, categories: Iterable[str]) -> int:
    return 2 if set(categories) & set(bundle.review.four_eyes_categories) else 1


def escalation_of(exchange: Any, recipient: str | None, bundle: Bundle) -> Escalation:
    """The escalated recipient ``recipient`` of ``exchange`` (the only one when None)."""
    decision = exchange.decision or {}
    escalated = [r for r in decision.get("results", []) if r["outcome"] == "ESCALATE"]
    if not escalated:
        raise EscalationError("NOT_ESCALATED", "the exchange has no escalated recipient")
    if recipient is None:
        if len(escalated) > 1:
            raise EscalationError("RECIPIENT_REQUIRED", "several recipients are escalated; name one: "
                                  + ", ".join(r["recipient"] for r in escalated))
        original = escalated[0]
    else:
        original = next((r for r in escalated if r["recipient"] == recipient), None)
        if original is None:
            raise EscalationError("NOT_ESCALATED", f"{recipient} is not an escalated recipient of the exchange")
    rec = original["recipient"]
    return Escalation(
        str(exchange.id), rec, exchange.message_id, exchange.sender, exchange.summary, decision, original,
        exchange.created_on, approvals_required(bundle, categories_of(exchange.summary)),
        [v for v in getattr(exchange, "verdicts", []) if v.get("recipient") == rec])


def _text(value: str | None, what: str, limit: int, code: str) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise EscalationError(code, f"{what} is required")
    if len(text) > limit:
        raise EscalationError("TOO_LONG", f"{what} is longer than {limit} characters")
    return text


def verdict_for(esc: Escalation, bundle: Bundle, *, verdict: str, officer: str, roles: Iterable[str],
                basis: str | None = None, citation: str | None = None, reason: str | None = None,
                via: str = "cli", at: datetime | None = None) -> dict[str, Any]:
    """The verdict event's content, or EscalationError naming why it cannot be given."""
    roles = list(roles)
    if OFFICER_ROLE not in roles:
        raise EscalationError("NOT_A_LEGAL_OFFICER", f"{officer!r} is not a legal officer")
    if esc.status != OPEN:
        raise EscalationError("CLOSED", f"the escalation is already closed ({esc.status})")
    at = at or datetime.now(timezone.utc)
    out: dict[str, Any] = {
        "recipient": esc.recipient, "verdict": verdict, "officer": officer, "officer_roles": roles,
        "at": at.isoformat(), "via": via, "policy_version": esc.policy_version,
        "request_digest": esc.decision.get("request_digest"), "approvals_required": esc.approvals_required,
        "basis": None, "citation": None, "reason": None, "result": None,
    }
    if verdict == APPROVE:
        if officer in esc.approvers:
            raise EscalationError("SAME_OFFICER", f"{officer} has already approved; the second approval "
                                  "must come from another legal officer")
        out["basis"] = _text(basis, "the basis (in words)", MAX_TEXT, "BASIS_REQUIRED")
        out["citation"] = _text(citation, "the citation", MAX_CITATION, "CITATION_REQUIRED")
        approvals = len(esc.approvers) + 1
        out["status"] = APPROVED if approvals >= esc.approvals_required else OPEN
    elif verdict == REFUSE:
        out["reason"] = _text(reason, "the reason", MAX_TEXT, "REASON_REQUIRED")
        out["status"] = REFUSED
    else:
        raise EscalationError("BAD_VERDICT", f"verdict must be {APPROVE} or {REFUSE}")
    if out["status"] != OPEN:
        out["result"] = _result(esc, bundle, [*esc.verdicts, out])
    return out


def _result(esc: Escalation, bundle: Bundle, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The recipient's result after review: what the relay delivers and the sender's receipt says."""
    review = bundle.review
    closing = verdicts[-1]
    if closing["verdict"] == APPROVE:
        approvals = [v for v in verdicts if v["verdict"] == APPROVE]
        cited = "; ".join(dict.fromkeys(v["citation"] for v in approvals))
        mandatory = bool(esc.summary.get("mandatory"))
        warnings = [bundle.warning.code] if mandatory else []
        detail = "godkendt af " + " og ".join(v["officer"] for v in approvals) + ": " + \
                 " / ".join(dict.fromkeys(v["basis"] for v in approvals))
        return {"recipient": esc.recipient, "outcome": "ALLOW", "rule": review.rule, "via": None, "reason": None,
                "citation": f"{review.citation_prefix} {cited}", "warnings": warnings,
                "trace": [{"step": review.rule, "name": review.name, "passed": True, "detail": detail[:MAX_TEXT]}]}
    return {"recipient": esc.recipient, "outcome": "DENY", "rule": review.rule, "via": None,
            "reason": review.refused_reason, "citation": f"{review.citation_prefix} {closing['reason']}",
            "warnings": [],
            "trace": [{"step": review.rule, "name": review.name, "passed": False,
                       "detail": f"afvist af {closing['officer']}: {closing['reason']}"[:MAX_TEXT]}]}


class EscalationDesk:
    """Escalations over one ledger: the queue, statistics, the chain, and recording verdicts."""

    def __init__(self, ledger: Any, bundles: Any = None, *, max_open: timedelta = DEFAULT_MAX_OPEN):
        if bundles is None:
            from services.audit import load_bundles

            bundles = load_bundles()
        self.ledger = ledger
        self.bundles = bundles
        self.max_open = max_open
        self._read_models: Any = None

    # -- reading ------------------------------------------------------------------------------

    def _models(self):
        """The live read models, caught up. Made once per desk: making them runs their CREATE ... IF
        NOT EXISTS statements (and on SQLite takes the schema lock), which every page view paid. The
        live set keeps its position in the database, not in the object, so one object serves every
        call and thread."""
        from ledger.readmodels import ReadModels

        if self._read_models is None:
            self._read_models = ReadModels(self.ledger)
        self._read_models.catch_up()
        return self._read_models

    def queue(self, *, status: str | None = OPEN, overdue_only: bool = False, now: datetime | None = None,
              limit: int = 500) -> list[dict[str, Any]]:
        """Escalations (open ones by default), oldest first, each with ``approvals_required``,
        ``open_hours`` and ``overdue``."""
        now = now or datetime.now(timezone.utc)
        models = self._models()
        where, args = ("status = ?", [status]) if status else ("", [])
        rows = models.query("escalations", where, args, order="opened_at, exchange_id, recipient", limit=limit)
        out = []
        for r in rows:
            r.pop("position", None)
            bundle = self.bundles.by_version(r["policy_version"])
            r["approvals_required"] = approvals_required(bundle, r["categories"].split(",")) if bundle else None
            opened = datetime.fromisoformat(r["opened_at"])
            end = datetime.fromisoformat(r["resolved_at"]) if r["resolved_at"] else now
            r["open_hours"] = round((end - opened).total_seconds() / 3600, 1)
            r["overdue"] = r["status"] == OPEN and now - opened > self.max_open
            if not overdue_only or r["overdue"]:
                out.append(r)
        return out

    def statistics(self, *, now: datetime | None = None) -> dict[str, Any]:
        """Counts of the escalations by status, the open ones overdue or awaiting a second approval,
        by reason, and the median hours to a verdict. Counted by the database on the escalations'
        indexes (status; status, opened_at) instead of building every escalation's queue row, as
        this did: on a large ledger that was most of the escalation page. The median still reads
        the two timestamps of each closed escalation (the equal of a recount is tested:
        tests/escalations/test_desk.py)."""
        now = now or datetime.now(timezone.utc)
        models = self._models()
        table = models.t("escalations")
        fetch = models.tables.fetchall
        by_status = {str(s): int(n) for s, n in fetch(f"SELECT status, COUNT(*) FROM {table} GROUP BY status")}
        # opened_at is the event's UTC timestamp in ISO form (ReadModels): as text, earlier is smaller.
        overdue_before = (now - self.max_open).astimezone(timezone.utc).isoformat()
        overdue = models.count("escalations", "status = ? AND opened_at < ?", [OPEN, overdue_before])
        awaiting = models.count("escalations", "status = ? AND approvals >= 1", [OPEN])
        closed = sorted(round((datetime.fromisoformat(r) - datetime.fromisoformat(o)).total_seconds() / 3600, 1)
                        for o, r in fetch(f"SELECT opened_at, resolved_at FROM {table} WHERE status <> ?", [OPEN]))
        by_reason = {str(k): int(n) for k, n in fetch(f"SELECT reason, COUNT(*) FROM {table} GROUP BY reason")}
        return {
            "open": by_status.get(OPEN, 0),
            "overdue": overdue,
            "awaiting_second_approval": awaiting,
            "approved": by_status.get(APPROVED, 0),
            "refused": by_status.get(REFUSED, 0),
            "max_open_hours": self.max_open.total_seconds() / 3600,
            "median_hours_to_verdict": closed[len(closed) // 2] if closed else None,
            "by_reason": dict(sorted(by_reason.items())),
        }

    def exchange(self, exchange_id: str | UUID) -> tuple[Any, Bundle]:
        """The decided exchange and the bundle of its decision."""
        try:
            eid = exchange_id if isinstance(exchange_id, UUID) else UUID(str(exchange_id))
        except ValueError:
            raise EscalationError("NOT_FOUND", f"not an exchange id: {exchange_id!r}") from None
        try:
            ex = self.ledger.get_exchange(eid)
        except Exception:  # eventsourcing raises AggregateNotFoundError
            raise EscalationError("NOT_FOUND", f"no exchange {eid}") from None
        if getattr(ex, "decision", None) is None:
            raise EscalationError("NOT_FOUND", f"no decided exchange {eid}")
        bundle = self.bundles.by_version(ex.decision.get("policy_version", ""))
        if bundle is None:
            raise EscalationError("UNKNOWN_POLICY_VERSION",
                                  f"the decision's policy version {ex.decision.get('policy_version')} is not known")
        return ex, bundle

    def load(self, exchange_id: str | UUID, recipient: str | None = None) -> tuple[Any, Escalation, Bundle]:
        ex, bundle = self.exchange(exchange_id)
        return ex, escalation_of(ex, recipient, bundle), bundle

    def chain(self, exchange_id: str | UUID, *, now: datetime | None = None) -> dict[str, Any]:
        """Everything an auditor needs about one exchange's escalations: the request (its summary,
        no personal data), the decision, every verdict, and what the relay published."""
        now = now or datetime.now(timezone.utc)
        ex, bundle = self.exchange(exchange_id)
        items = []
        for r in ex.decision["results"]:
            if r["outcome"] != "ESCALATE":
                continue
            esc = escalation_of(ex, r["recipient"], bundle)
            items.append({
                "recipient": esc.recipient, "decision": {k: v for k, v in r.items() if k != "trace"},
                "trace": r.get("trace", []), "approvals_required": esc.approvals_required, "status": esc.status,
                "opened_at": esc.opened_at.isoformat(), "overdue": esc.overdue(now, self.max_open),
                "verdicts": esc.verdicts, "deliveries": self.deliveries(ex.id, esc.recipient),
            })
        if not items:
            raise EscalationError("NOT_ESCALATED", "the exchange has no escalated recipient")
        return {"exchange_id": str(ex.id), "message_id": ex.message_id, "sender": ex.sender, "summary": ex.summary,
                "recorded_at": ex.created_on.isoformat(), "policy_version": ex.decision.get("policy_version"),
                "bundle": bundle.name, "request_digest": ex.decision.get("request_digest"), "escalations": items}

    def deliveries(self, exchange: UUID, recipient: str) -> list[dict[str, Any]]:
        """What the relay recorded for one recipient: the receipt, and after a verdict the delivery
        to the inbox and the review receipt (from the ledger's deliveries of the exchange)."""
        kinds = ("receipt", "inbox", REVIEW_RECEIPT)
        legacy = [delivery_id(exchange, recipient, k) for k in kinds]  # ledgers with one Delivery per delivery
        found = [d for d in self.ledger.deliveries(exchange, legacy) if d["recipient"] == recipient
                 and d["kind"] in kinds]
        return [{"kind": d["kind"], "topic": d["topic"], "outcome": d["outcome"], "delivery_id": d["delivery_id"],
                 "at": d["at"]} for d in sorted(found, key=lambda d: kinds.index(d["kind"]))]

    # -- recording ------------------------------------------------------------------------------

    def approve(self, exchange_id: str | UUID, *, officer: str, roles: Iterable[str], basis: str, citation: str,
                recipient: str | None = None, via: str = "cli") -> dict[str, Any]:
        return self._record(exchange_id, recipient, verdict=APPROVE, officer=officer, roles=roles, basis=basis,
                            citation=citation, via=via)

    def refuse(self, exchange_id: str | UUID, *, officer: str, roles: Iterable[str], reason: str,
               recipient: str | None = None, via: str = "cli") -> dict[str, Any]:
        return self._record(exchange_id, recipient, verdict=REFUSE, officer=officer, roles=roles, reason=reason,
                            via=via)

    def _record(self, exchange_id, recipient, **kw) -> dict[str, Any]:
        ex, esc, bundle = self.load(exchange_id, recipient)
        verdict = verdict_for(esc, bundle, **kw)
        ex.record_verdict(verdict)
        try:
            self.ledger.record([ex])
        except IntegrityError:
            # Another verdict on this exchange was recorded since it was read: judge again on the new state.
            raise EscalationError("CONFLICT", "another verdict was recorded meanwhile; look again and retry") from None
        approvals = len(esc.approvers) + (verdict["verdict"] == APPROVE)
        return {**verdict, "approvals": approvals, "exchange_id": str(ex.id), "message_id": ex.message_id,
                "sender": ex.sender}


def audit_verdicts(summary: dict[str, Any], decision: dict[str, Any], verdicts: list[dict[str, Any]],
                   bundle: Bundle | None) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The verdict chain of one exchange as an auditor checks it: each escalated recipient's status,
    and (recipient, problem code, detail) for anything that breaks the rules of review."""
    escalated = {r["recipient"] for r in decision.get("results", []) if r["outcome"] == "ESCALATE"}
    status = {r: OPEN for r in escalated}
    approvers: dict[str, list[str]] = {r: [] for r in escalated}
    problems: list[tuple[str, str, str]] = []
    required = approvals_required(bundle, categories_of(summary)) if bundle is not None else 1
    for v in verdicts:
        rec = v.get("recipient", "")
        if rec not in escalated:
            problems.append((rec, "VERDICT_WITHOUT_ESCALATION", "the recorded decision did not escalate it"))
            continue
        if status[rec] != OPEN:
            problems.append((rec, "VERDICT_AFTER_CLOSE", f"{v.get('officer')} after {status[rec]}"))
            continue
        if v.get("policy_version") != decision.get("policy_version"):
            problems.append((rec, "VERSION_MISMATCH", str(v.get("policy_version"))))
        if v.get("verdict") == APPROVE:
            if v.get("officer") in approvers[rec]:
                problems.append((rec, "SAME_OFFICER_TWICE", str(v.get("officer"))))
                continue
            approvers[rec].append(v.get("officer"))
            if v.get("status") == APPROVED and len(approvers[rec]) < required:
                problems.append((rec, "TOO_FEW_APPROVALS", f"{len(approvers[rec])} of {required}"))
        status[rec] = v.get("status", OPEN)
    return status, problems


__all__ = ["AWAITING_REVIEW", "REVIEW_RECEIPT", "APPROVE", "REFUSE", "OPEN", "APPROVED", "REFUSED", "EscalationError",
           "Escalation", "EscalationDesk", "escalation_of", "verdict_for", "approvals_required", "categories_of",
           "audit_verdicts"]
