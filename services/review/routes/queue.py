"""The decision queue and one decision with its check trace (pages and /api/decisions).

Every query here reads the read models by index, and the filter choices come from the bundles and
the directory. The pages link to each other by cursor (keyset: the rows after or before one row,
an index walk from it), so the thousandth page costs what the first does; page numbers (OFFSET)
still work for the API. Counts come from the read models' counters (``stats`` by day, cooperation,
rule and reason; ``counts`` per sender, authority and review status; the open escalations); other
combinations of filters are counted exactly up to ``COUNT_CAP`` and said to be "more than" beyond
it. So a queue page costs the same on a large ledger as on a small one (tests/review/test_scale.py
counts it; bench/bench_review.py times it).
"""

from __future__ import annotations

from datetime import date, timedelta
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
# name -> ORDER BY (newest first is the default). position and recipient make every row's place unique: a
# cursor (cursor_of) names one place in each order.
SORTS = {
    "newest": "d.occurred_at DESC, d.position DESC, d.recipient ASC",
    "oldest": "d.occurred_at ASC, d.position ASC, d.recipient ASC",
    "recorded": "d.position DESC, d.recipient ASC",
}
ROW_COLS = ["exchange_id", "recipient", "message_id", "occurred_at", "sender", "context", "cooperation_id",
            "purpose", "outcome", "rule", "via", "reason", "warnings", "review_status", "review_count", "position"]
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
        where.append(EITHER)
        args += [params["authority"][:200]] * 2
    # The days as a range of occurred_at (a day is its first ten characters): the page is then a walk
    # of the (…, occurred_at, position) indexes from the range's end, not a sort of the days' rows.
    since, until = _day(params, "since"), _day(params, "until")
    if since:
        where.append("d.occurred_at >= ?")
        args.append(since)
    if until:
        where.append("d.occurred_at < ?")
        args.append((date.fromisoformat(until) + timedelta(days=1)).isoformat())
    if params.get("pending") == "1":
        # Awaiting manual assessment: escalated, and the escalation is still open.
        # Driven from the open escalations (a work queue, short), not from every escalated decision.
        where.append("d.outcome = 'ESCALATE' AND (d.exchange_id, d.recipient) IN (SELECT exchange_id, recipient FROM "
                     + web.models.t("escalations") + " WHERE status = 'OPEN')")
    if not ctx.full_access:
        agencies = ctx.agencies or ("-",)
        where.append(f"d.sender IN ({', '.join('?' * len(agencies))})")
        args += list(agencies)
    return where, args


EITHER = "(d.sender = ? OR d.recipient = ?)"  # the authority filter: it sent or it received


def _sql_where(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _capped_count(web: Web, where: list[str], args: list[Any]) -> int:
    table = web.models.t("decisions")
    row = web.models.tables.fetchone(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} d{_sql_where(where)} LIMIT {COUNT_CAP + 1}) AS q", args)
    return int(row[0])


def _counts(web: Web, ctx: Ctx, params: dict[str, str], where: list[str], args: list[Any]) -> dict[str, int]:
    maintained = _maintained_counts(web, ctx, params)
    if maintained is not None:
        return {o: 0 if params.get("outcome") and params["outcome"] != o else maintained.get(o, 0)
                for o in OUTCOMES}
    out = {}
    for o in OUTCOMES:
        if params.get("outcome") and params["outcome"] != o:
            out[o] = 0
        else:
            out[o] = _capped_count(web, [*where, "d.outcome = ?"], [*args, o])
    return out


def _maintained_counts(web: Web, ctx: Ctx, params: dict[str, str]) -> Optional[dict[str, int]]:
    """Counts by outcome from the read models' counters (a few rows, however many decisions), when
    the filters are ones they keep: the stats (day, cooperation, rule, reason) for full access, or
    one of an agency's own, an authority, a review status. None: count the rows (capped)."""
    stats_keys = [k for k in ("cooperation", "rule", "reason", "since", "until") if params.get(k)]
    other = {k: params[k][:200] for k in ("authority", "status") if params.get(k)}
    if params.get("pending"):
        if ctx.full_access and not other and not stats_keys:
            # Awaiting assessment: the open escalations, counted by the escalations' status index.
            return {"ESCALATE": web.models.count("escalations", "status = 'OPEN'")}
        return None
    if ctx.full_access and not other:
        # The stats read model holds counts by day, cooperation, outcome, rule and reason: a few
        # rows per day, however many decisions there are.
        sw, sa = [], []
        for col, key in (("cooperation", "cooperation"), ("rule", "rule"), ("reason", "reason")):
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
        return {str(o): int(n or 0) for o, n in rows}
    if stats_keys:
        return None
    if not ctx.full_access:
        return web.models.counts("sender", list(ctx.agencies or ("-",))) if not other else None
    if len(other) == 1:
        kind, value = next(iter(other.items()))
        return web.models.counts(kind, [value])
    return None


def _rows(web: Web, where: list[str], args: list[Any], order: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    if limit <= 0:
        return []
    cols = ", ".join("d." + c for c in ROW_COLS)
    table = web.models.t("decisions")
    tail = f" ORDER BY {order} LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else "")
    if EITHER not in where:
        sql, sql_args = f"SELECT {cols} FROM {table} d{_sql_where(where)}{tail}", args
    else:
        # Sent or received: the union of two index walks (by sender, by recipient), each at most a
        # page long, instead of one walk that filters every row (or a sort of all of the authority's).
        i = where.index(EITHER)
        at = sum(w.count("?") for w in where[:i])
        value, rest_args = args[at], args[:at] + args[at + 2:]
        rest = where[:i] + where[i + 1:]
        inner = f" ORDER BY {order} LIMIT {int(limit) + int(offset)}"
        parts = [f"SELECT * FROM (SELECT {cols} FROM {table} d{_sql_where([*rest, f'd.{col} = ?'])}{inner}) AS {col}"
                 for col in ("sender", "recipient")]
        sql = f"SELECT * FROM ({parts[0]} UNION {parts[1]}) AS d{tail}"
        sql_args = [*rest_args, value, *rest_args, value]
    rows = web.models.tables.fetchall(sql, sql_args)
    return [dict(zip(ROW_COLS, r)) for r in rows]


def cursor_of(row: dict[str, Any], segment: str = "") -> str:
    """A queue row's place in every sort order: where the next (or previous) page starts."""
    return f"{row['occurred_at']}|{row['position']}|{row['recipient']}|{segment}"


def _parse_cursor(value: str) -> tuple[str, int, str, str]:
    parts = value.split("|")
    try:
        if len(parts) != 4 or parts[3] not in ("", "e", "r"):
            raise ValueError(value)
        return parts[0], int(parts[1]), parts[2], parts[3]
    except ValueError:
        raise PageError(422, "bad_cursor", "after/before must be a cursor the queue gave")


def _beyond(sort: str, cursor: tuple[str, int, str, str], forward: bool) -> tuple[str, list[Any]]:
    """Rows after (``forward``) or before the cursor in the sort order. The leading bound on the
    index's first column makes the page an index walk from the cursor, however deep it is."""
    at, pos, rcp, _ = cursor
    keys = [("d.occurred_at", at, False), ("d.position", pos, False), ("d.recipient", rcp, True)] \
        if sort in ("newest", "oldest") else [("d.position", pos, False), ("d.recipient", rcp, True)]
    descending = sort in ("newest", "recorded")
    terms, args, eq, eq_args = [], [], [], []
    for col, value, ascending_always in keys:
        down = (descending and not ascending_always) != (not forward)
        op = "<" if down else ">"
        terms.append("(" + " AND ".join([*eq, f"{col} {op} ?"]) + ")")
        args += [*eq_args, value]
        eq, eq_args = [*eq, f"{col} = ?"], [*eq_args, value]
    lead_down = descending != (not forward)
    op = "<=" if lead_down else ">="
    if len(keys) == 3:
        # occurred_at and position as one row value: the index (occurred_at, position) is entered at the
        # cursor itself. A bound on occurred_at alone walked every row of the cursor's occurred_at before
        # it, and ties are common (one time for a day's events, a batch, a copy): 11.6 ms against
        # 0.15 at 1M (bench/README.md, "The deep queue page at 1M").
        lead, lead_args = f"({keys[0][0]}, {keys[1][0]}) {op} (?, ?)", [keys[0][1], keys[1][1]]
    else:
        lead, lead_args = f"{keys[0][0]} {op} ?", [keys[0][1]]
    return (f"{lead} AND ({' OR '.join(terms)})", [*lead_args, *args])


def _reversed(order: str) -> str:
    flip = {"DESC": "ASC", "ASC": "DESC"}
    out = []
    for part in order.split(","):
        words = part.split()
        out.append(" ".join([words[0], flip.get(words[1] if len(words) > 1 else "ASC", "DESC")]))
    return ", ".join(out)


def _page(web: Web, where: list[str], args: list[Any], sort: str, cursor, forward: bool,
          limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` rows from the cursor (from the start without one), in the sort order."""
    order = SORTS[sort]
    w, a = list(where), list(args)
    if cursor is not None:
        cond, cargs = _beyond(sort, cursor, forward)
        w.append(cond)
        a += cargs
    if forward:
        return _rows(web, w, a, order, limit)
    return list(reversed(_rows(web, w, a, _reversed(order), limit)))


ESC, REST = "d.outcome = 'ESCALATE'", "d.outcome <> 'ESCALATE'"


def _keyset(web: Web, where: list[str], args: list[Any], sort: str, escalated_first: bool, after: str,
            before: str) -> tuple[list[dict[str, Any]], bool]:
    """One page by cursor, and whether there is more in its direction. With ``escalated_first``
    the escalated rows come first, then the rest; the cursor says which part it is in."""
    forward = not before
    cursor = _parse_cursor(after or before) if (after or before) else None
    want = PAGE + 1
    if not escalated_first:
        items = _page(web, where, args, sort, cursor, forward, want)
        more = len(items) > PAGE
        return (items[:PAGE] if forward else items[-PAGE:]), more
    segment = cursor[3] if cursor else ("e" if forward else "r")
    parts = [("e", ESC), ("r", REST)] if forward else [("r", REST), ("e", ESC)]
    items: list[dict[str, Any]] = []
    started = False
    for name, cond in parts:
        if name == segment:
            started = True
            got = _page(web, [*where, cond], args, sort, cursor, forward, want - len(items))
        elif started:
            got = _page(web, [*where, cond], args, sort, None, forward, want - len(items))
        else:
            continue
        for r in got:
            r["segment"] = name
        items = items + got if forward else got + items
        if len(items) >= want:
            break
    more = len(items) > PAGE
    return (items[:PAGE] if forward else items[-PAGE:]), more


def queue_data(web: Web, ctx: Ctx, params: dict[str, str], page: int = 1, after: str = "",
               before: str = "") -> dict[str, Any]:
    """A page of the queue: by cursor (``after``/``before``, what the pages link to: an index walk
    from the cursor at any depth) or by number (``page``, OFFSET; kept for the API, bounded by
    MAX_PAGE)."""
    web.models.catch_up()
    where, args = _where(web, ctx, params)
    sort = params.get("sort") or "newest"
    if sort not in SORTS:
        raise PageError(422, "bad_sort", f"sort must be one of {', '.join(SORTS)}")
    counts = _counts(web, ctx, params, where, args)
    total = sum(counts.values())
    esc_first = params.get("escalated_first") == "1" and params.get("outcome") in ("", None)
    offset = (page - 1) * PAGE
    if after or before or offset == 0:
        items, more = _keyset(web, where, args, sort, esc_first, after, before)
        has_next = more if not before else True
        has_prev = bool(after) or (bool(before) and more)
    elif esc_first:
        # Escalated cases first, then the rest, each part in the chosen order.
        n_esc = counts["ESCALATE"]
        items = _rows(web, [*where, ESC], args, SORTS[sort], PAGE, offset) if offset < n_esc else []
        for r in items:
            r["segment"] = "e"
        rest = _rows(web, [*where, REST], args, SORTS[sort], PAGE + 1 - len(items), max(0, offset - n_esc))
        for r in rest:
            r["segment"] = "r"
        items += rest
        has_next, has_prev = len(items) > PAGE, True
        items = items[:PAGE]
    else:
        items = _rows(web, where, args, SORTS[sort], PAGE + 1, offset)
        has_next, has_prev = len(items) > PAGE, True
        items = items[:PAGE]
    marks = [cursor_of(r, r.pop("segment", "") if esc_first else "") for r in items]
    for r in items:
        r.pop("position", None)
    return {"total": total, "total_capped": total >= COUNT_CAP, "counts": counts, "items": items, "page": page,
            "page_size": PAGE, "choices": choices(web, ctx),
            "next": marks[-1] if items and has_next else None, "prev": marks[0] if items and has_prev else None}


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


def _cursor_param():
    # A Query object each: FastAPI must not share one between two parameters (it takes on the name).
    return Query("", max_length=400, description="a cursor the queue gave (next/prev): the page after or before it")


@router.get("/queue", include_in_schema=False)
def queue_page(request: Request, page: int = Query(1, ge=1, le=MAX_PAGE), after: str = _cursor_param(),
               before: str = _cursor_param()):
    web, ctx = page_ctx(request, QUEUE_ROLES)
    params = _params(request)
    data = queue_data(web, ctx, params, page, after, before)
    base = nonempty(params)
    flipped = "oldest" if (params.get("sort") or "newest") == "newest" else "newest"
    # The pager links by cursor, so the thousandth page costs what the first does.
    return web.render(ctx, "queue.html", title=ctx.t("queue"), params=params, data=data, sorts=list(SORTS),
                      sort_url="/queue?" + urlencode({**base, "sort": flipped}),
                      prev_url=("/queue?" + urlencode({**base, "before": data["prev"]})) if data["prev"] else None,
                      next_url=("/queue?" + urlencode({**base, "after": data["next"]})) if data["next"] else None)


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


@router.get("/api/decisions", tags=["decisions"], summary="The decision queue with filters and counts",
            description="Pages: follow `next` (as `after`) and `prev` (as `before`); `page` numbers still work "
                        "but cost more the deeper they go.")
def api_decisions(request: Request, outcome: str = "", cooperation: str = "", rule: str = "", reason: str = "",
                  authority: str = "", since: str = "", until: str = "", status: str = "",
                  pending: bool = False, sort: str = "newest", escalated_first: bool = False,
                  page: int = Query(1, ge=1, le=MAX_PAGE), after: str = _cursor_param(),
                  before: str = _cursor_param()):
    web, ctx = api_ctx(request, QUEUE_ROLES)
    params = {"outcome": outcome, "cooperation": cooperation, "rule": rule, "reason": reason, "authority": authority,
              "since": since, "until": until, "status": status, "pending": "1" if pending else "",
              "sort": sort, "escalated_first": "1" if escalated_first else ""}
    return web.json_out(ctx, queue_data(web, ctx, params, page, after, before))


@router.get("/api/decisions/{exchange_id}", tags=["decisions"], summary="One decision with its check trace")
def api_decision(request: Request, exchange_id: str):
    web, ctx = api_ctx(request, DECISION_ROLES)
    ex = load_exchange(web, ctx, exchange_id)
    data = decision_data(web, ctx, ex)
    log_access(web.ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_decision",
               target_kind="exchange", target=str(ex.id), via="api")
    return web.json_out(ctx, data)
