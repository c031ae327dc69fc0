"""Subject reports (GDPR art. 15) by CPR number or pseudonym; every view is access-logged.

The CPR number is turned into the pseudonym at once and never reaches a URL, a log line or a page.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from ledger.access import log_access
from services.review.web import SUBJECT_ROLES, Ctx, PageError, Web, api_ctx, page_ctx

router = APIRouter()


class LookupBody(BaseModel):
    subject: str = Field(description="A CPR number (validated, never stored) or a 64-hex pseudonym", max_length=100)


def subject_data(web: Web, ctx: Ctx, pseudonym: str, via: str) -> dict[str, Any]:
    from services.audit import subject_report

    pseudonym = pseudonym.lower()
    if len(pseudonym) != 64 or any(ch not in "0123456789abcdef" for ch in pseudonym):
        raise PageError(404, "not_a_pseudonym", "not a pseudonym")
    report = subject_report(web.ledger, pseudonym)
    log_access(web.ledger, who=ctx.user.username, roles=list(ctx.roles), action="subject_report",
               target_kind="subject", target=pseudonym, via=via)
    return report


def resolve(web: Web, value: str) -> Optional[str]:
    from schemas.cpr import InvalidCPR
    from services.audit import resolve_subject

    try:
        return resolve_subject(value, web.pseudonym_secret)
    except InvalidCPR:
        return None


@router.get("/subjects", include_in_schema=False)
def subjects_page(request: Request):
    web, ctx = page_ctx(request, SUBJECT_ROLES)
    return web.render(ctx, "subjects.html", title=ctx.t("subjects"), invalid=False)


@router.post("/subjects", include_in_schema=False)
def subjects_lookup(request: Request, subject: str = Form(""), csrf_token: str = Form("")):
    web, ctx = page_ctx(request, SUBJECT_ROLES)
    web.check_csrf(ctx, csrf_token)
    p = resolve(web, subject[:100])
    if p is None:
        return web.render(ctx, "subjects.html", status=422, title=ctx.t("subjects"), invalid=True)
    return web.finish(ctx, RedirectResponse(f"/subjects/{p}", status_code=303))


@router.get("/subjects/{pseudonym}", include_in_schema=False)
def subject_page(request: Request, pseudonym: str):
    web, ctx = page_ctx(request, SUBJECT_ROLES)
    report = subject_data(web, ctx, pseudonym, "web")
    return web.render(ctx, "subject.html", title=ctx.t("subjects"), r=report)


@router.post("/api/subjects/lookup", tags=["subjects"], summary="Subject report by CPR number or pseudonym")
def api_subject_lookup(request: Request, body: LookupBody):
    web, ctx = api_ctx(request, SUBJECT_ROLES)
    web.check_csrf(ctx)
    p = resolve(web, body.subject)
    if p is None:
        return web.json_out(ctx, {"detail": "neither a valid CPR number nor a pseudonym"}, status=422)
    return web.json_out(ctx, subject_data(web, ctx, p, "api"))


@router.get("/api/subjects/{pseudonym}", tags=["subjects"], summary="Subject report (GDPR art. 15) by pseudonym")
def api_subject(request: Request, pseudonym: str):
    web, ctx = api_ctx(request, SUBJECT_ROLES)
    return web.json_out(ctx, subject_data(web, ctx, pseudonym, "api"))
