"""Logging in and out (form and /api/login), the start page and /api/me.

Log-ins are throttled per user name and per client address (``Web.client_address`` believes
X-Forwarded-For only from configured proxies). Log-out deletes the session's record, so a copied
cookie dies with it.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from services.review.users import normalise_username
from services.review.web import ANY_ROLE, Web, api_ctx, safe_next, web_of

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


def user_key(username: str) -> str:
    """The throttle's key for a user name, in the form the user store compares (NFC): "andré" typed with a
    combining accent is the same user, so it must not get a second count of failures."""
    return f"user:{normalise_username(username.strip()).lower()[:200]}"


def _keys(web: Web, request: Request, username: str) -> tuple[str, str]:
    # The user name first: a success clears it, while the address keeps its failures.
    return user_key(username), f"addr:{web.client_address(request)}"


@router.get("/", include_in_schema=False)
def home(request: Request):
    web = web_of(request)
    ctx = web.context(request)
    first = web.nav(ctx) if ctx.user else []
    return web.finish(ctx, RedirectResponse(first[0][0] if first else "/login", status_code=303))


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/"):
    web = web_of(request)
    ctx = web.context(request)
    return web.render(ctx, "login.html", title=ctx.t("login"), next=safe_next(next[:500]), failed=False, typed="")


@router.post("/login", include_in_schema=False)
def login_submit(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
                 next: str = Form("/")):
    web = web_of(request)
    ctx = web.context(request)
    web.check_csrf(ctx, csrf_token)
    nxt = safe_next(next[:500])
    keys = _keys(web, request, username)
    wait = web.throttle.retry_after(*keys)
    if wait > 0:
        response = web.render(ctx, "login.html", status=429, title=ctx.t("login"), next=nxt, failed=False,
                              retry_after=math.ceil(wait), typed=username[:200])
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    user = web.users.authenticate(username[:200], password[:1000])
    if user is None:
        web.throttle.failed(*keys)
        return web.render(ctx, "login.html", status=401, title=ctx.t("login"), next=nxt, failed=True,
                          typed=username[:200])
    web.throttle.succeeded(keys[0])
    web.log_in(ctx, user)
    return web.finish(ctx, RedirectResponse(nxt, status_code=303))


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf_token: str = Form("")):
    web = web_of(request)
    ctx = web.context(request)
    web.check_csrf(ctx, csrf_token)
    web.log_out(ctx)
    return web.finish(ctx, RedirectResponse("/login", status_code=303))


@router.post("/api/login", tags=["session"], summary="Log in; returns the CSRF token for later POSTs")
def api_login(request: Request, body: LoginBody):
    web = web_of(request)
    ctx = web.context(request, api=True)
    keys = _keys(web, request, body.username)
    wait = web.throttle.retry_after(*keys)
    if wait > 0:
        return JSONResponse({"detail": f"too many failed log-ins; try again in {math.ceil(wait)} s"},
                            status_code=429, headers={"Retry-After": str(math.ceil(wait))})
    user = web.users.authenticate(body.username, body.password)
    if user is None:
        web.throttle.failed(*keys)
        return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
    web.throttle.succeeded(keys[0])
    web.log_in(ctx, user)
    return web.json_out(ctx, {"username": user.username, "roles": list(user.roles), "csrf_token": ctx.csrf})


@router.post("/api/logout", tags=["session"], summary="Log out: the session is revoked on the server")
def api_logout(request: Request):
    web, ctx = api_ctx(request, ANY_ROLE)
    web.check_csrf(ctx)
    web.log_out(ctx)
    return web.json_out(ctx, {"ok": True})


@router.get("/api/me", tags=["session"])
def api_me(request: Request):
    web, ctx = api_ctx(request, ANY_ROLE)
    return web.json_out(ctx, {"username": ctx.user.username, "roles": list(ctx.roles), "csrf_token": ctx.csrf})
