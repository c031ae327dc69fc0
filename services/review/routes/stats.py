"""Statistics: decisions per day by cooperation and by reason, as charts with tables beside them.

Read from the ``stats`` read model (a few rows per day), never from the log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.review.charts import Series, chart_table, stacked_bars
from services.review.routes.queue import _day
from services.review.web import STATS_ROLES, Ctx, Web, api_ctx, page_ctx

router = APIRouter()


def stats_data(web: Web, params: dict[str, str]) -> dict[str, Any]:
    web.models.catch_up()
    where, args = [], []
    for key, op in (("since", ">="), ("until", "<=")):
        day = _day(params, key)
        if day:
            where.append(f"day {op} ?")
            args.append(day)
    rows = web.models.query("stats", " AND ".join(where), args, order="day, cooperation, outcome, rule, reason")
    return {"rows": rows}


def _series(by: dict[str, dict[str, int]], label) -> list[Series]:
    out = [Series(k, label(k), days) for k, days in by.items()]
    return sorted(out, key=lambda s: (-s.total, s.label))


def charts(ctx: Ctx, rows: list[dict[str, Any]]) -> dict[str, Any]:
    lab = ctx.request.app.state.web.labels.for_lang(ctx.lang)
    by_coop: dict[str, dict[str, int]] = {}
    by_reason: dict[str, dict[str, int]] = {}
    for r in rows:
        c = by_coop.setdefault(r["cooperation"] or "NONE", {})
        c[r["day"]] = c.get(r["day"], 0) + int(r["n"])
        # An ALLOW has no reason: it is counted under its rule.
        key = r["reason"] or f"{r['outcome']}|{r['rule']}"
        s = by_reason.setdefault(key, {})
        s[r["day"]] = s.get(r["day"], 0) + int(r["n"])

    def reason_label(key: str) -> str:
        if "|" in key:
            outcome, rule = key.split("|", 1)
            return f"{lab.outcome(outcome)}: {lab.rule(rule)}"
        return lab.reason(key)

    coop = _series(by_coop, lab.context)
    reason = _series(by_reason, reason_label)
    t = ctx.t
    return {"coop": {"svg": stacked_bars(coop, title=t("by_cooperation"), chart_id="chart-coop", empty=t("no_data")),
                     "table": chart_table(coop, "chart-coop")},
            "reason": {"svg": stacked_bars(reason, title=t("by_reason"), chart_id="chart-reason", empty=t("no_data")),
                       "table": chart_table(reason, "chart-reason")}}


@router.get("/stats", include_in_schema=False)
def stats_page(request: Request):
    web, ctx = page_ctx(request, STATS_ROLES)
    params = {k: request.query_params.get(k, "")[:20] for k in ("since", "until")}
    rows = stats_data(web, params)["rows"]
    return web.render(ctx, "stats.html", title=ctx.t("stats"), params=params, rows=rows, charts=charts(ctx, rows))


@router.get("/api/stats", tags=["statistics"], summary="Decision counts by day, cooperation, outcome, rule, reason")
def api_stats(request: Request, since: str = "", until: str = ""):
    web, ctx = api_ctx(request, STATS_ROLES)
    return web.json_out(ctx, stats_data(web, {"since": since, "until": until}))
