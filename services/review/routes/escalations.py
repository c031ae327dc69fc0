"""Escalations in the review app: the queue (with the overdue flag and statistics), an exchange's whole
chain, and the legal officer's approve and refuse forms; the same under ``/api/escalations``.

Legal officers and auditors see escalations (every view of one is access-logged); only legal
officers give verdicts, recorded with their user name through ``services.escalations.EscalationDesk``.
A refused form is shown again with what was typed and why, in the page's language.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from ledger.access import log_access
from services.escalations import EscalationDesk, EscalationError
from services.review.web import ESCALATION_ROLES as VIEW_ROLES
from services.review.web import VERDICT_ROLES, PageError, api_ctx, page_ctx, web_of

router = APIRouter()

STATUSES = ("OPEN", "APPROVED", "REFUSED")
#: EscalationError codes that are a conflict with the case's state (HTTP 409); others are bad input (422)
CONFLICTS = {"CLOSED", "SAME_OFFICER", "CONFLICT"}
MESSAGES = {
    "SAME_OFFICER": ("Du har allerede godkendt. Den anden godkendelse skal komme fra en anden jurist.",
                     "You have already approved. The second approval must come from another legal officer."),
    "CLOSED": ("Eskalationen er allerede afgjort.", "The escalation has already been decided."),
    "CONFLICT": ("En anden jurist har netop afgivet en afgørelse. Se sagen igen.",
                 "Another legal officer has just given a verdict. Look at the case again."),
    "BASIS_REQUIRED": ("Angiv hjemmelsgrundlaget med ord.", "State the legal basis in words."),
    "CITATION_REQUIRED": ("Angiv en henvisning, fx lov og paragraf.", "Give a citation, e.g. act and section."),
    "REASON_REQUIRED": ("Angiv en begrundelse for afvisningen.", "Give a reason for the refusal."),
    "TOO_LONG": ("Teksten er for lang.", "The text is too long."),
    "RECIPIENT_REQUIRED": ("Vælg modtageren.", "Choose the recipient."),
    "NOT_ESCALATED": ("Modtageren er ikke eskaleret.", "The recipient is not escalated."),
}


class ApproveBody(BaseModel):
    recipient: Optional[str] = Field(None, description="The escalated recipient; needed when several are escalated",
                                     max_length=200)
    basis: str = Field(description="The legal basis in words", max_length=4000)
    citation: str = Field(description="The citation, e.g. 'PET-loven § 4, stk. 1'", max_length=600)


class RefuseBody(BaseModel):
    recipient: Optional[str] = Field(None, description="The escalated recipient; needed when several are escalated",
                                     max_length=200)
    reason: str = Field(description="Why the disclosure is refused; the sender's receipt carries it (no personal data)",
                        max_length=4000)


def _desk(request: Request) -> EscalationDesk:
    state = request.app.state
    desk = getattr(state, "escalation_desk", None)
    if desk is None:
        max_open = getattr(state, "escalation_max_open", None)
        if max_open is None:
            from services.config import Settings

            max_open = timedelta(hours=Settings.from_env().escalation_max_open_hours)
        web = web_of(request)
        desk = state.escalation_desk = EscalationDesk(web.ledger, web.bundles, max_open=max_open)
    return desk


def _status(value: str) -> Optional[str]:
    if value in ("", "OPEN"):
        return "OPEN"
    if value == "all":
        return None
    if value not in STATUSES:
        raise PageError(422, "bad_status", f"status must be one of {', '.join(STATUSES)} or all")
    return value


def _chain(request: Request, ctx: Any, exchange_id: str, via: str) -> dict[str, Any]:
    try:
        chain = _desk(request).chain(exchange_id)
    except EscalationError as exc:
        raise PageError(404 if exc.code in ("NOT_FOUND", "NOT_ESCALATED") else 422, "not_found", exc.message)
    log_access(web_of(request).ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_escalation",
               target_kind="exchange", target=chain["exchange_id"], via=via)
    return chain


def _verdict(request: Request, ctx: Any, exchange_id: str, action: str, via: str, **fields: Any) -> dict[str, Any]:
    desk = _desk(request)
    record = desk.approve if action == "approve" else desk.refuse
    return record(exchange_id, officer=ctx.user.username, roles=list(ctx.roles), via=via, **fields)


# -- pages ----------------------------------------------------------------------------------------


@router.get("/escalations", include_in_schema=False)
def queue_page(request: Request, status: str = "", overdue: str = ""):
    web, ctx = page_ctx(request, VIEW_ROLES)
    desk = _desk(request)
    rows = desk.queue(status=_status(status[:20]), overdue_only=overdue == "1")
    return web.render(ctx, "escalations.html", title=ctx.t("escalations"), rows=rows, stats=desk.statistics(),
                      filter_status=status or "OPEN", overdue=overdue == "1")


@router.get("/escalations/{exchange_id}", include_in_schema=False)
def chain_page(request: Request, exchange_id: str):
    web, ctx = page_ctx(request, VIEW_ROLES)
    chain = _chain(request, ctx, exchange_id, "web")
    return web.render(ctx, "escalation.html", title=f"{ctx.t('escalation')} {chain['exchange_id'][:8]}", c=chain,
                      can_decide=ctx.has(*VERDICT_ROLES), error=None, typed={})


def _form_verdict(request: Request, exchange_id: str, action: str, typed: dict[str, str], csrf_token: str):
    web, ctx = page_ctx(request, VERDICT_ROLES)
    web.check_csrf(ctx, csrf_token)
    fields: dict[str, Any] = {"recipient": typed["recipient"] or None}
    if action == "approve":
        fields.update(basis=typed["basis"], citation=typed["citation"])
    else:
        fields.update(reason=typed["reason"])
    try:
        _verdict(request, ctx, exchange_id, action, "web", **fields)
    except EscalationError as exc:
        # The page again, with what was typed and the reason in the page's language.
        chain = _chain(request, ctx, exchange_id, "web")
        pair = MESSAGES.get(exc.code)
        message = pair[0 if ctx.lang == "da" else 1] if pair else exc.message
        return web.render(ctx, "escalation.html", status=409 if exc.code in CONFLICTS else 422,
                          title=f"{ctx.t('escalation')} {chain['exchange_id'][:8]}", c=chain, can_decide=True,
                          error=message, typed={**typed, "action": action})
    return web.finish(ctx, RedirectResponse(f"/escalations/{exchange_id}#afgoerelser", status_code=303))


@router.post("/escalations/{exchange_id}/approve", include_in_schema=False)
def approve_form(request: Request, exchange_id: str, csrf_token: str = Form(""), recipient: str = Form(""),
                 basis: str = Form(""), citation: str = Form("")):
    typed = {"recipient": recipient[:200], "basis": basis[:4000], "citation": citation[:600], "reason": ""}
    return _form_verdict(request, exchange_id, "approve", typed, csrf_token)


@router.post("/escalations/{exchange_id}/refuse", include_in_schema=False)
def refuse_form(request: Request, exchange_id: str, csrf_token: str = Form(""), recipient: str = Form(""),
                reason: str = Form("")):
    typed = {"recipient": recipient[:200], "basis": "", "citation": "", "reason": reason[:4000]}
    return _form_verdict(request, exchange_id, "refuse", typed, csrf_token)


# -- API ------------------------------------------------------------------------------------------


@router.get("/api/escalations", tags=["escalations"],
            summary="Escalations (open ones by default), oldest first, with approvals and the overdue flag")
def api_queue(request: Request, status: str = "", overdue: bool = False):
    web, ctx = api_ctx(request, VIEW_ROLES)
    return web.json_out(ctx, {"items": _desk(request).queue(status=_status(status), overdue_only=overdue)})


@router.get("/api/escalations/statistics", tags=["escalations"],
            summary="Open, overdue, awaiting a second approval, approved, refused; median hours to a verdict")
def api_statistics(request: Request):
    web, ctx = api_ctx(request, VIEW_ROLES)
    return web.json_out(ctx, _desk(request).statistics())


@router.get("/api/escalations/{exchange_id}", tags=["escalations"],
            summary="An exchange's chain: request, escalation, verdicts, deliveries (access-logged)")
def api_chain(request: Request, exchange_id: str):
    web, ctx = api_ctx(request, VIEW_ROLES)
    return web.json_out(ctx, _chain(request, ctx, exchange_id, "api"))


def _api_verdict(request: Request, exchange_id: str, action: str, **fields: Any):
    web, ctx = api_ctx(request, VERDICT_ROLES)
    web.check_csrf(ctx)
    try:
        verdict = _verdict(request, ctx, exchange_id, action, "api", **fields)
    except EscalationError as exc:
        code = 404 if exc.code == "NOT_FOUND" else 409 if exc.code in CONFLICTS else 422
        return web.json_out(ctx, {"detail": exc.message, "code": exc.code}, status=code)
    return web.json_out(ctx, verdict, status=201)


@router.post("/api/escalations/{exchange_id}/approve", tags=["escalations"], status_code=201,
             summary="Approve (legal officers): basis in words and a citation; recorded with your name and time")
def api_approve(request: Request, exchange_id: str, body: ApproveBody):
    return _api_verdict(request, exchange_id, "approve", recipient=body.recipient, basis=body.basis,
                              citation=body.citation)


@router.post("/api/escalations/{exchange_id}/refuse", tags=["escalations"], status_code=201,
             summary="Refuse (legal officers): a reason; recorded with your name and time")
def api_refuse(request: Request, exchange_id: str, body: RefuseBody):
    return _api_verdict(request, exchange_id, "refuse", recipient=body.recipient, reason=body.reason)


__all__ = ["router"]
