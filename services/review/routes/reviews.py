"""Legal officers' reviews of a decision (uphold, overturn, flag, note), appended to the ledger.

A rejected form is shown again with what was typed and the reason, never lost behind a redirect.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from services.review.routes.queue import ACTIONS, load_exchange, render_decision
from services.review.web import REVIEW_ROLES, Ctx, PageError, Web, api_ctx, page_ctx

router = APIRouter()


class ReviewBody(BaseModel):
    action: str = Field(description="UPHOLD, OVERTURN, FLAG or NOTE", max_length=20)
    recipient: Optional[str] = Field(None, description="One recipient of the exchange, or all when omitted",
                                     max_length=200)
    reason: str = Field("", max_length=2000)
    note: str = Field("", max_length=4000)


def add_review(web: Web, ctx: Ctx, exchange_id: str, body: ReviewBody) -> dict[str, Any]:
    ex = load_exchange(web, ctx, exchange_id)
    action = body.action.upper()
    if action not in ACTIONS:
        raise PageError(422, "bad_action", f"action must be one of {', '.join(ACTIONS)}")
    recipients = [r["recipient"] for r in ex.decision["results"]]
    if body.recipient and body.recipient not in recipients:
        raise PageError(422, "bad_recipient", "recipient is not a recipient of this exchange")
    if action == "OVERTURN" and not body.reason.strip():
        raise PageError(422, "reason_required", "overturning needs a reason")
    review = {
        "action": action, "recipient": body.recipient or None, "reason": body.reason.strip()[:2000],
        "note": body.note.strip()[:4000], "reviewer": ctx.user.username,
        "reviewer_roles": list(ctx.roles), "policy_version": ex.decision.get("policy_version"),
    }
    ex.review(review)
    web.ledger.record([ex])
    web.models.catch_up()
    return {**review, "exchange_id": str(ex.id), "at": ex.modified_on.isoformat()}


@router.post("/decisions/{exchange_id}/review", include_in_schema=False)
def review_submit(request: Request, exchange_id: str, csrf_token: str = Form(""), action: str = Form(""),
                  recipient: str = Form(""), reason: str = Form(""), note: str = Form("")):
    web, ctx = page_ctx(request, REVIEW_ROLES)
    web.check_csrf(ctx, csrf_token)
    typed = {"action": action, "recipient": recipient, "reason": reason[:2000], "note": note[:4000]}
    try:
        add_review(web, ctx, exchange_id, ReviewBody(action=action[:20], recipient=recipient[:200] or None,
                                                      reason=reason[:2000], note=note[:4000]))
    except PageError as exc:
        if exc.status != 422:
            raise
        return render_decision(web, ctx, exchange_id, status=422, error=exc.key, typed=typed)
    return web.finish(ctx, RedirectResponse(f"/decisions/{exchange_id}#reviews", status_code=303))


@router.post("/api/decisions/{exchange_id}/reviews", tags=["decisions"], status_code=201,
             summary="Record a review (legal officers): appended to the ledger")
def api_review(request: Request, exchange_id: str, body: ReviewBody):
    web, ctx = api_ctx(request, REVIEW_ROLES)
    web.check_csrf(ctx)
    return web.json_out(ctx, add_review(web, ctx, exchange_id, body), status=201)
