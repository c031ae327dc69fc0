"""Escalations in the review app: the queue (with the overdue flag and statistics), an exchange's whole
chain, and the legal officer's approve and refuse forms; the same under ``/api/escalations``.

``services/review/app.py`` mounts ``router``; the routes use the app's own sessions, roles, CSRF
check, templates and ledger, which ``create_app`` publishes as ``app.state.web``. Legal officers
and auditors see escalations (every view of one is access-logged); only legal officers give
verdicts, recorded with their user name through ``services.escalations.EscalationDesk``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ledger.access import log_access
from services.escalations import EscalationDesk, EscalationError

router = APIRouter()

VIEW_ROLES = ("legal_officer", "auditor")
VERDICT_ROLES = ("legal_officer",)
STATUSES = ("OPEN", "APPROVED", "REFUSED")
#: EscalationError codes that are a conflict with the case's state (HTTP 409); others are bad input (422)
CONFLICTS = {"CLOSED", "SAME_OFFICER", "CONFLICT"}
MESSAGES_DA = {
    "SAME_OFFICER": "Du har allerede godkendt. Den anden godkendelse skal komme fra en anden jurist.",
    "CLOSED": "Eskalationen er allerede afgjort.",
    "CONFLICT": "En anden jurist har netop afgivet en afgørelse. Se sagen igen.",
    "BASIS_REQUIRED": "Angiv hjemmelsgrundlaget med ord.",
    "CITATION_REQUIRED": "Angiv en henvisning, fx lov og paragraf.",
    "REASON_REQUIRED": "Angiv en begrundelse for afvisningen.",
    "TOO_LONG": "Teksten er for lang.",
    "RECIPIENT_REQUIRED": "Vælg modtageren.",
    "NOT_ESCALATED": "Modtageren er ikke eskaleret.",
}


class ApproveBody(BaseModel):
    recipient: Optional[str] = Field(None, description="The escalated recipient; needed when several are escalated")
    basis: str = Field(description="The legal basis in words")
    citation: str = Field(description="The citation, e.g. 'PET-loven § 4, stk. 1'")


class RefuseBody(BaseModel):
    recipient: Optional[str] = Field(None, description="The escalated recipient; needed when several are escalated")
    reason: str = Field(description="Why the disclosure is refused; the sender's receipt carries it (no personal data)")


def _web(request: Request) -> Any:
    return request.app.state.web


def _desk(request: Request) -> EscalationDesk:
    state = request.app.state
    desk = getattr(state, "escalation_desk", None)
    if desk is None:
        max_open = getattr(state, "escalation_max_open", None)
        if max_open is None:
            from services.config import Settings

            max_open = timedelta(hours=Settings.from_env().escalation_max_open_hours)
        desk = state.escalation_desk = EscalationDesk(_web(request).ledger, _web(request).bundles, max_open=max_open)
    return desk


def _status(value: str) -> Optional[str]:
    if value in ("", "OPEN"):
        return "OPEN"
    if value == "all":
        return None
    if value not in STATUSES:
        raise HTTPException(422, f"status must be one of {', '.join(STATUSES)} or all")
    return value


def _chain(request: Request, ctx: Any, exchange_id: str, via: str) -> dict[str, Any]:
    try:
        chain = _desk(request).chain(exchange_id)
    except EscalationError as exc:
        raise HTTPException(404 if exc.code in ("NOT_FOUND", "NOT_ESCALATED") else 422, exc.message)
    log_access(_web(request).ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_escalation",
               target_kind="exchange", target=chain["exchange_id"], via=via)
    return chain


def _verdict(request: Request, ctx: Any, exchange_id: str, action: str, via: str, **fields: Any) -> dict[str, Any]:
    desk = _desk(request)
    record = desk.approve if action == "approve" else desk.refuse
    return record(exchange_id, officer=ctx.user.username, roles=list(ctx.roles), via=via, **fields)


# -- pages ----------------------------------------------------------------------------------------


@router.get("/escalations", include_in_schema=False)
def queue_page(request: Request, status: str = "", overdue: str = ""):
    web = _web(request)
    ctx = web.context(request)
    web.require(ctx, VIEW_ROLES)
    desk = _desk(request)
    rows = desk.queue(status=_status(status), overdue_only=overdue == "1")
    return web.render(ctx, "escalations.html", title="Eskalationer", rows=rows, stats=desk.statistics(),
                      filter_status=status or "OPEN", overdue=overdue == "1")


@router.get("/escalations/{exchange_id}", include_in_schema=False)
def chain_page(request: Request, exchange_id: str):
    web = _web(request)
    ctx = web.context(request)
    web.require(ctx, VIEW_ROLES)
    chain = _chain(request, ctx, exchange_id, "web")
    return web.render(ctx, "escalation.html", title="Eskalation", c=chain, can_decide=ctx.has(*VERDICT_ROLES),
                      error=None, typed={})


async def _form_verdict(request: Request, exchange_id: str, action: str):
    web = _web(request)
    ctx = web.context(request)
    web.require(ctx, VERDICT_ROLES)
    form = await request.form()
    await web.check_csrf(ctx, form)
    typed = {k: str(form.get(k, "")) for k in ("recipient", "basis", "citation", "reason")}
    fields = {"recipient": typed["recipient"] or None}
    if action == "approve":
        fields.update(basis=typed["basis"], citation=typed["citation"])
    else:
        fields.update(reason=typed["reason"])
    try:
        await run_in_threadpool(_verdict, request, ctx, exchange_id, action, "web", **fields)
    except EscalationError as exc:
        # The page again, with what was typed and the reason in Danish.
        chain = await run_in_threadpool(_chain, request, ctx, exchange_id, "web")
        return web.render(ctx, "escalation.html", status=409 if exc.code in CONFLICTS else 422, title="Eskalation",
                          c=chain, can_decide=True, error=MESSAGES_DA.get(exc.code, exc.message),
                          typed={**typed, "action": action})
    return web.finish(ctx, RedirectResponse(f"/escalations/{exchange_id}#afgoerelser", status_code=303))


@router.post("/escalations/{exchange_id}/approve", include_in_schema=False)
async def approve_form(request: Request, exchange_id: str):
    return await _form_verdict(request, exchange_id, "approve")


@router.post("/escalations/{exchange_id}/refuse", include_in_schema=False)
async def refuse_form(request: Request, exchange_id: str):
    return await _form_verdict(request, exchange_id, "refuse")


# -- API ------------------------------------------------------------------------------------------


@router.get("/api/escalations", tags=["escalations"],
            summary="Escalations (open ones by default), oldest first, with approvals and the overdue flag")
def api_queue(request: Request, status: str = "", overdue: bool = False):
    web = _web(request)
    ctx = web.context(request, api=True)
    web.require(ctx, VIEW_ROLES)
    return web.json_out(ctx, {"items": _desk(request).queue(status=_status(status), overdue_only=overdue)})


@router.get("/api/escalations/statistics", tags=["escalations"],
            summary="Open, overdue, awaiting a second approval, approved, refused; median hours to a verdict")
def api_statistics(request: Request):
    web = _web(request)
    ctx = web.context(request, api=True)
    web.require(ctx, VIEW_ROLES)
    return web.json_out(ctx, _desk(request).statistics())


@router.get("/api/escalations/{exchange_id}", tags=["escalations"],
            summary="An exchange's chain: request, escalation, verdicts, deliveries (access-logged)")
def api_chain(request: Request, exchange_id: str):
    web = _web(request)
    ctx = web.context(request, api=True)
    web.require(ctx, VIEW_ROLES)
    return web.json_out(ctx, _chain(request, ctx, exchange_id, "api"))


async def _api_verdict(request: Request, exchange_id: str, action: str, **fields: Any):
    web = _web(request)
    ctx = web.context(request, api=True)
    web.require(ctx, VERDICT_ROLES)
    await web.check_csrf(ctx)
    try:
        verdict = await run_in_threadpool(_verdict, request, ctx, exchange_id, action, "api", **fields)
    except EscalationError as exc:
        code = 404 if exc.code == "NOT_FOUND" else 409 if exc.code in CONFLICTS else 422
        return web.json_out(ctx, {"detail": exc.message, "code": exc.code}, status=code)
    return web.json_out(ctx, verdict, status=201)


@router.post("/api/escalations/{exchange_id}/approve", tags=["escalations"], status_code=201,
             summary="Approve (legal officers): basis in words and a citation; recorded with your name and time")
async def api_approve(request: Request, exchange_id: str, body: ApproveBody):
    return await _api_verdict(request, exchange_id, "approve", recipient=body.recipient, basis=body.basis,
                              citation=body.citation)


@router.post("/api/escalations/{exchange_id}/refuse", tags=["escalations"], status_code=201,
             summary="Refuse (legal officers): a reason; recorded with your name and time")
async def api_refuse(request: Request, exchange_id: str, body: RefuseBody):
    return await _api_verdict(request, exchange_id, "refuse", recipient=body.recipient, reason=body.reason)


__all__ = ["router"]
