"""The decision queue and one decision with its check trace (pages and /api/decisions).

Every query here reads the read models by index and pages with LIMIT, and the filter choices
come from the bundles and the directory, so a queue page costs the same on a large ledger as
on a small one (tests/review/test_scale.py counts it). Counts are exact up to ``COUNT_CAP`` and
said to be "more than" beyond it; the unfiltered counts come from the ``stats`` read model.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Optional
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request

from ledger.access import log_access
from services.review.web import (DECISION_ROLES, QUEUE_ROLES, REVIEW_ROLES, SUBJECT_ROLES, AuthError, Ctx,
                                 PageError, Web, api_ctx, nonempty, page_ctx)

router = APIRouter()

PAGE = 50
MAX_PAGE = 100_000
COUNT_CAP = 10_000
OUTCOMES = ("ALLOW", "DENY", "ESCALATE")
STATUSES = ("PENDING", "UPHELD", "OVERTURNED", "FLAGGED")
SORTS = {  # name -> ORDER BY (newest first is the default)
    "newest": "d.occurred_at DESC, d.position DESC, d.recipient",
    "oldest": "d.occurred_at ASC, d.position ASC, d.recipient",
    "recorded": "d.position DESC, d.recipient",
}
FILTERS = ("outcome", "cooperation", "rule", "reason", "authority", "since", "until", "status", "pending")
OPTIONS = ("sort", "escalated_first")
ACTIONS = ("UPHOLD", "OVERTURN", "FLAG", "NOTE")


def _day(params: dict[str, str], key: str) -> Optional[str]:
    value = params.get(key) or ""
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise PageError(422, "bad_date", f"{key} must be a date YYYY-MM-DD")


def _where(web: Web, ctx: Ctx, params: dict[str, str]) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for col, key in (("outcome", "outcome"), ("context", "cooperation"), ("rule", "rule"), ("reason", "reason"),
                     ("review_status", "status")):
        if params.get(key):
            where.append(f"d.{col} = ?")
            args.append(params[key][:100])
    if params.get("authority"):
        where.append("(d.sender = ? OR d.recipient = ?)")
        args += [params["authority"][:200]] * 2
    for key, op in (("since", ">="), ("until", "<=")):
        day = _day(params, key)
        if day:
            where.append(f"d.day {op} ?")
            args.append(day)
    if params.get("pending") == "1":
        # Awaiting manual assessment: escalated, and the escalation is still open.
        where.append("d.outcome = 'ESCALATE' AND EXISTS (SELECT 1 FROM " + web.models.t("escalations") +
                     " e WHERE e.exchange_id = d.exchange_id AND e.recipient = d.recipient AND e.status = 'OPEN')")
    if not ctx.full_access:
        agencies = ctx.agencies or ("-",)
        where.append(f"d.sender IN ({', '.join('?' * len(agencies))})")
        args += list(agencies)
    return where, args


def _sql_where(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _capped_count(web: Web, where: list[str], args: list[Any]) -> int:
    table = web.models.t("decisions")
    row = web.models.tables.fetchone(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} d{_sql_where(where)} LIMIT {COUNT_CAP + 1}) AS q", args)
    return int(row[0])


def _counts(web: Web, ctx: Ctx, params: dict[str, str], where: list[str], args: list[Any]) -> dict[str, int]:
    stats_only = ctx.full_access and not any(params.get(k) for k in ("authority", "status", "pending"))
    if stats_only:
        # The stats read model holds counts by day, cooperation, outcome, rule and reason: a few
        # rows per day, however many decisions there are.
        sw, sa = [], []
        for col, key in (("outcome", "outcome"), ("cooperation", "cooperation"), ("rule", "rule"),
                         ("reason", "reason")):
            if params.get(key):
                sw.append(f"{col} = ?")
                sa.append(params[key][:100])
        for key, op in (("since", ">="), ("until", "<=")):
            day = _day(params, key)
            if day:
                sw.append(f"day {op} ?")
                sa.append(day)
        rows = web.models.tables.fetchall(
            f"SELECT outcome, SUM(n) FROM {web.models.t('stats')}{_sql_where(sw)} GROUP BY outcome", sa)
        return {o: int(next((n for out, n in rows if out == o), 0) or 0) for o in OUTCOMES}
    out = {}
    for o in OUTCOMES:
        if params.get("outcome") and params["outcome"] != o:
            out[o] = 0
        else:
            out[o] = _capped_count(web, [*where, "d.outcome = ?"], [*args, o])
    return out


def _rows(web: Web, where: list[str], args: list[Any], order: str, limit: int, offset: int) -> list[dict[str, Any]]:
    cols = ["exchange_id", "recipient", "message_id", "occurred_at", "sender", "context", "cooperation_id",
            "purpose", "outcome", "rule", "via", "reason", "warnings", "review_status", "review_count"]
    if limit <= 0:
        return []
    rows = web.models.tables.fetchall(
        f"SELECT {', '.join('d.' + c for c in cols)} FROM {web.models.t('decisions')} d{_sql_where(where)} "
        f"ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}", args)
    return [dict(zip(cols, r)) for r in rows]


def queue_data(web: Web, ctx: Ctx, params: dict[str, str], page: int) -> dict[str, Any]:
    web.models.catch_up()
    where, args = _where(web, ctx, params)
    order = SORTS.get(params.get("sort") or "newest")
    if order is None:
        raise PageError(422, "bad_sort", f"sort must be one of {', '.join(SORTS)}")
    counts = _counts(web, ctx, params, where, args)
    total = sum(counts.values())
    offset = (page - 1) * PAGE
    if params.get("escalated_first") == "1" and params.get("outcome") in ("", None):
        # Escalated cases first, then the rest, each part in the chosen order.
        n_esc = counts["ESCALATE"]
        items = _rows(web, [*where, "d.outcome = 'ESCALATE'"], args, order, PAGE, offset) if offset < n_esc else []
        rest_offset = max(0, offset - n_esc)
        items += _rows(web, [*where, "d.outcome <> 'ESCALATE'"], args, order, PAGE - len(items), rest_offset)
    else:
        items = _rows(web, where, args, order, PAGE, offset)
    return {"total": total, "total_capped": total >= COUNT_CAP, "counts": counts, "items": items, "page": page,
            "page_size": PAGE, "choices": choices(web, ctx)}


def choices(web: Web, ctx: Ctx) -> dict[str, list[str]]:
    """The filter form's choices: from the bundles, the vocabulary and the directory (no query)."""
    codes = web.labels_codes
    authorities = ctx.agencies if not ctx.full_access else sorted(web.labels.orgs, key=lambda o: web.labels.orgs[o])
    return {"outcome": list(OUTCOMES), "cooperation": codes["context"], "rule": codes["rule"],
            "reason": codes["reason"], "status": list(STATUSES), "authority": list(authorities)}


def load_exchange(web: Web, ctx: Ctx, exchange_id: str):
    try:
        eid = UUID(exchange_id)
    except ValueError:
        raise PageError(404, "not_found", "no such exchange")
    try:
        ex = web.ledger.get_exchange(eid)
    except Exception:
        raise PageError(404, "not_found", "no such exchange")
    if getattr(ex, "decision", None) is None:
        raise PageError(404, "not_found", "no such exchange")
    if not ctx.full_access and ex.sender not in ctx.agencies:
        raise AuthError(403, "forbidden")
    return ex


def _review_times(web: Web, ex: Any) -> list[str]:
    # Reviews are recorded as events; their times are the events' own.
    times = []
    for stored in web.ledger.recorder.select_events(ex.id):
        if stored.topic.endswith(".Reviewed"):
            times.append(web.ledger.mapper.to_domain_event(stored).timestamp.isoformat())
    return times


def decision_data(web: Web, ctx: Ctx, ex: Any) -> dict[str, Any]:
    version = ex.decision.get("policy_version", "")
    bundle = web.bundles.by_version(version) if web.bundles is not None else None
    cits = bundle.trace_citations() if bundle is not None else {}
    results = []
    for r in ex.decision["results"]:
        trace = [{**c, "citation": r.get("citation", "") if c["step"] == "P" else cits.get(c["step"], "")}
                 for c in r.get("trace", [])]
        results.append({**{k: v for k, v in r.items() if k != "trace"}, "trace": trace})
    times = _review_times(web, ex)
    reviews = []
    for i, rv in enumerate(ex.reviews):
        entry = {"action": rv.get("action"), "recipient": rv.get("recipient"), "at": times[i] if i < len(times) else None}
        if ctx.full_access:
            # Internal: who reviewed and what they wrote is for legal officers and auditors only.
            entry.update(reviewer=rv.get("reviewer"), reason=rv.get("reason", ""), note=rv.get("note", ""))
        reviews.append(entry)
    data = {
        "exchange_id": str(ex.id), "message_id": ex.message_id, "sender": ex.sender, "summary": ex.summary,
        "policy_version": version, "bundle": bundle.name if bundle else None,
        # The directory (authorities, cooperations) the decision was made with; none before versions.
        "directory_version": ex.decision.get("directory_version") or None,
        "bundle_effective_from": bundle.effective_from.isoformat() if bundle else None,
        "request_digest": ex.decision.get("request_digest"), "results": results, "reviews": reviews,
        "recorded_at": ex.created_on.isoformat(),
    }
    if ctx.has(*SUBJECT_ROLES):
        data["subject"] = ex.subject  # the pseudonym; never the CPR number
    return data


def _params(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "")[:200] for k in (*FILTERS, *OPTIONS)}


@router.get("/queue", include_in_schema=False)
def queue_page(request: Request, page: int = Query(1, ge=1, le=MAX_PAGE)):
    web, ctx = page_ctx(request, QUEUE_ROLES)
    params = _params(request)
    data = queue_data(web, ctx, params, page)
    base = nonempty(params)
    flipped = "oldest" if (params.get("sort") or "newest") == "newest" else "newest"
    return web.render(ctx, "queue.html", title=ctx.t("queue"), params=params, data=data, sorts=list(SORTS),
                      sort_url="/queue?" + urlencode({**{k: v for k, v in base.items() if k != "page"},
                                                      "sort": flipped}),
                      prev_url=("/queue?" + urlencode({**base, "page": page - 1})) if page > 1 else None,
                      next_url=("/queue?" + urlencode({**base, "page": page + 1}))
                      if page * PAGE < data["total"] else None)


@router.get("/decisions/{exchange_id}", include_in_schema=False)
def decision_page(request: Request, exchange_id: str):
    web, ctx = page_ctx(request, DECISION_ROLES)
    return render_decision(web, ctx, exchange_id)


def render_decision(web: Web, ctx: Ctx, exchange_id: str, status: int = 200, error: Optional[str] = None,
                    typed: Optional[dict[str, str]] = None):
    ex = load_exchange(web, ctx, exchange_id)
    data = decision_data(web, ctx, ex)
    log_access(web.ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_decision",
               target_kind="exchange", target=str(ex.id), via="web")
    return web.render(ctx, "decision.html", status=status, title=f"{ctx.t('decision')} {str(ex.id)[:8]}", d=data,
                      can_review=ctx.has(*REVIEW_ROLES), actions=ACTIONS, error=error, typed=typed or {})


@router.get("/api/decisions", tags=["decisions"], summary="The decision queue with filters and counts")
def api_decisions(request: Request, outcome: str = "", cooperation: str = "", rule: str = "", reason: str = "",
                  authority: str = "", since: str = "", until: str = "", status: str = "",
                  pending: bool = False, sort: str = "newest", escalated_first: bool = False,
                  page: int = Query(1, ge=1, le=MAX_PAGE)):
    web, ctx = api_ctx(request, QUEUE_ROLES)
    params = {"outcome": outcome, "cooperation": cooperation, "rule": rule, "reason": reason, "authority": authority,
              "since": since, "until": until, "status": status, "pending": "1" if pending else "",
              "sort": sort, "escalated_first": "1" if escalated_first else ""}
    return web.json_out(ctx, queue_data(web, ctx, params, page))


@router.get("/api/decisions/{exchange_id}", tags=["decisions"], summary="One decision with its check trace")
def api_decision(request: Request, exchange_id: str):
    web, ctx = api_ctx(request, DECISION_ROLES)
    ex = load_exchange(web, ctx, exchange_id)
    data = decision_data(web, ctx, ex)
    log_access(web.ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_decision",
               target_kind="exchange", target=str(ex.id), via="api")
    return web.json_out(ctx, data)
