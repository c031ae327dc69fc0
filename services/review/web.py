"""What every router of the review app shares: the request context (user, language, CSRF), role
checks, rendering in the user's language, and the objects one app serves (ledger, read models,
users, sessions, labels).

``create_app`` (services/review/app.py) builds one ``Web`` and keeps it as ``app.state.web``; a
route gets it with ``web_of(request)``. Routes are plain ``def`` functions: FastAPI runs them in
its thread pool, so database work and scrypt never block the event loop.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from services.review.i18n import LANGS, translator
from services.review.labels import Labels, choice_codes
from services.review.sessions import COOKIE, LANG_COOKIE, MAX_AGE, SessionCodec, SessionStore, new_csrf
from services.review.throttle import LoginThrottle
from services.review.users import User, UserStore

HERE = Path(__file__).parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

# Who may see what. The browser suite and the page walk read these through services.review.pages.
QUEUE_ROLES = ("legal_officer", "auditor", "agency")
DECISION_ROLES = ("legal_officer", "auditor", "agency")
REVIEW_ROLES = ("legal_officer",)
SUBJECT_ROLES = ("legal_officer", "auditor")
STATS_ROLES = ("legal_officer", "auditor", "admin")
LEDGER_ROLES = ("legal_officer", "auditor", "admin")
USERS_ROLES = ("admin",)
ESCALATION_ROLES = ("legal_officer", "auditor")
VERDICT_ROLES = ("legal_officer",)
ANY_ROLE = ("legal_officer", "auditor", "admin", "agency")

NAV = [("/queue", "queue", QUEUE_ROLES), ("/escalations", "escalations", ESCALATION_ROLES),
       ("/subjects", "subjects", SUBJECT_ROLES), ("/stats", "stats", STATS_ROLES),
       ("/ledger", "ledger", LEDGER_ROLES), ("/admin/users", "users", USERS_ROLES)]


class AuthError(Exception):
    """401 (not logged in), 403 (role or CSRF). Pages get a Danish/English page, /api/ JSON."""

    def __init__(self, status: int, key: str):
        self.status, self.key = status, key


class PageError(Exception):
    """A page's 404 or 422 with a text key; the handler renders error.html (JSON under /api/)."""

    def __init__(self, status: int, key: str, detail: str = ""):
        self.status, self.key, self.detail = status, key, detail or key


@dataclass
class Ctx:
    request: Request
    user: Optional[User]
    csrf: str
    lang: str
    api: bool
    sid: Optional[str] = None
    new_cookie: Optional[str] = None

    @property
    def roles(self) -> tuple[str, ...]:
        return self.user.roles if self.user else ()

    def has(self, *allowed: str) -> bool:
        return any(r in allowed or (r.startswith("agency:") and "agency" in allowed) for r in self.roles)

    @property
    def full_access(self) -> bool:
        """Sees every decision, reviewers' names and notes (not only one agency's own receipts)."""
        return any(r in ("legal_officer", "auditor") for r in self.roles)

    @property
    def agencies(self) -> tuple[str, ...]:
        return self.user.agencies if self.user else ()

    @property
    def t(self):
        return translator(self.lang)


class Web:
    def __init__(self, *, ledger: Any, models: Any, bundles: Any, users: UserStore, sessions: SessionStore,
                 codec: SessionCodec, throttle: LoginThrottle, labels: Labels, pseudonym_secret: bytes,
                 secure_cookies: bool | None, trusted_proxies: Iterable[str] = (), checkpoint_public_key: Any = None,
                 origin: str | None = None):
        self.ledger, self.models, self.bundles, self.users = ledger, models, bundles, users
        self.sessions, self.codec, self.throttle, self.labels = sessions, codec, throttle, labels
        self.pseudonym_secret, self.secure_cookies = pseudonym_secret, secure_cookies
        self.checkpoint_public_key, self.origin = checkpoint_public_key, origin
        self.trusted_proxies = [ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies if p.strip()]
        self.labels_codes = choice_codes(bundles)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["L"] = labels

    # -- who is asking ------------------------------------------------------------------------------

    def client_address(self, request: Request) -> str:
        """The client's address. X-Forwarded-For is believed only from a configured proxy
        (none by default): anyone else could rotate it to dodge the log-in throttle."""
        peer = request.client.host if request.client else "-"
        if not self.trusted_proxies:
            return peer
        try:
            peer_ip = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if not any(peer_ip in net for net in self.trusted_proxies):
            return peer
        # The right-most address a trusted proxy did not add is the client.
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                ip = ipaddress.ip_address(hop)
            except ValueError:
                return peer
            if not any(ip in net for net in self.trusted_proxies):
                return hop
        return hops[0] if hops else peer

    def is_secure(self, request: Request) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return (request.url.hostname or "") not in LOCAL_HOSTS

    def context(self, request: Request, api: bool = False) -> Ctx:
        data = self.codec.loads(request.cookies.get(COOKIE)) or {}
        user, sid = None, None
        if data.get("u") and data.get("s"):
            # Signed and unexpired is not enough: the session must still be on record (log-out
            # and password changes delete it there).
            if self.sessions.active(data["s"], data["u"]):
                u = self.users.get(data["u"])
                if u is not None and data.get("v") == u.fingerprint:
                    user, sid = u, data["s"]
        lang = request.query_params.get("lang")
        if lang not in LANGS:
            lang = request.cookies.get(LANG_COOKIE)
        if lang not in LANGS:
            lang = "da"
        csrf = data.get("c") or ""
        ctx = Ctx(request, user, csrf, lang, api, sid=sid)
        if not csrf or (data.get("u") and user is None):
            ctx.csrf = new_csrf()
            ctx.new_cookie = self.codec.dumps({"u": None, "c": ctx.csrf})
        return ctx

    def log_in(self, ctx: Ctx, user: User) -> None:
        ctx.csrf = new_csrf()  # a fresh token for the new session
        sid = self.sessions.create(user.username)
        ctx.new_cookie = self.codec.dumps({"u": user.username, "v": user.fingerprint, "s": sid, "c": ctx.csrf})

    def log_out(self, ctx: Ctx) -> None:
        if ctx.sid:
            self.sessions.revoke(ctx.sid)
        ctx.csrf = new_csrf()
        ctx.new_cookie = self.codec.dumps({"u": None, "c": ctx.csrf})

    def require(self, ctx: Ctx, allowed: tuple[str, ...]) -> None:
        if ctx.user is None:
            raise AuthError(401, "login")
        if not ctx.has(*allowed):
            raise AuthError(403, "forbidden")

    def check_csrf(self, ctx: Ctx, sent: Optional[str] = None) -> None:
        if ctx.api:
            sent = ctx.request.headers.get("x-csrf-token")
        if not sent or not ctx.csrf or not hmac.compare_digest(str(sent), ctx.csrf):
            raise AuthError(403, "csrf_failed")

    # -- answering ----------------------------------------------------------------------------------

    def finish(self, ctx: Ctx, response: Response) -> Response:
        if ctx.new_cookie is not None:
            response.set_cookie(COOKIE, ctx.new_cookie, max_age=MAX_AGE, httponly=True, samesite="strict",
                                secure=self.is_secure(ctx.request), path="/")
        if ctx.request.query_params.get("lang") in LANGS:
            response.set_cookie(LANG_COOKIE, ctx.lang, max_age=365 * 86400, httponly=True, samesite="strict",
                                secure=self.is_secure(ctx.request), path="/")
        return response

    def nav(self, ctx: Ctx) -> list[tuple[str, str]]:
        return [(href, key) for href, key, roles in NAV if ctx.has(*roles)]

    def render(self, ctx: Ctx, name: str, status: int = 200, **values: Any) -> Response:
        t = ctx.t
        here = ctx.request.url.path
        q = dict(ctx.request.query_params)
        q.pop("lang", None)
        other = "en" if ctx.lang == "da" else "da"
        values.setdefault("title", t("app"))
        response = self.templates.TemplateResponse(ctx.request, name, {
            "t": t, "ctx": ctx, "user": ctx.user, "csrf": ctx.csrf, "lang": ctx.lang,
            "lab": self.labels.for_lang(ctx.lang),
            "lang_url": here + "?" + urlencode({**q, "lang": other}), "other_lang": other,
            "nav": self.nav(ctx), **values}, status_code=status)
        return self.finish(ctx, response)

    def json_out(self, ctx: Ctx, data: Any, status: int = 200) -> Response:
        return self.finish(ctx, JSONResponse(data, status_code=status))


def web_of(request: Request) -> Web:
    return request.app.state.web


def page_ctx(request: Request, allowed: tuple[str, ...]) -> tuple[Web, Ctx]:
    """The Web and a page request's context, after the role check."""
    web = web_of(request)
    ctx = web.context(request)
    web.require(ctx, allowed)
    return web, ctx


def api_ctx(request: Request, allowed: tuple[str, ...]) -> tuple[Web, Ctx]:
    web = web_of(request)
    ctx = web.context(request, api=True)
    web.require(ctx, allowed)
    return web, ctx


def safe_next(value: str) -> str:
    # Only local paths: never redirect off-site after logging in.
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def nonempty(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if v}


__all__ = ["Web", "Ctx", "AuthError", "PageError", "web_of", "page_ctx", "api_ctx", "safe_next"]
