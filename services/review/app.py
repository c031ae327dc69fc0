"""The review app: server-rendered pages for legal officers and auditors, and the same operations under /api/.

Roles: ``legal_officer`` (queue, decisions with trace, reviews, subject reports,
statistics, ledger status), ``auditor`` (the same, read-only), ``agency:<id>``
(its own receipts only: decisions where it is the sender), ``admin`` (users,
statistics, ledger status; no personal data). Every view of personal data is
recorded in the ledger as an ``AccessRecord``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional
from urllib.parse import urlencode
from uuid import UUID

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from ledger.access import log_access
from ledger.readmodels import ReadModels
from services.review import escalations
from services.review.charts import stacked_bars
from services.review.i18n import LANGS, translator
from services.review.sessions import COOKIE, LANG_COOKIE, MAX_AGE, SessionCodec, new_csrf, session_secret
from services.review.throttle import LoginThrottle
from services.review.users import User, UserStore

HERE = Path(__file__).parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

QUEUE_ROLES = ("legal_officer", "auditor", "agency")
DECISION_ROLES = ("legal_officer", "auditor", "agency")
REVIEW_ROLES = ("legal_officer",)
SUBJECT_ROLES = ("legal_officer", "auditor")
STATS_ROLES = ("legal_officer", "auditor", "admin")
LEDGER_ROLES = ("legal_officer", "auditor", "admin")
USERS_ROLES = ("admin",)
ACTIONS = ("UPHOLD", "OVERTURN", "FLAG", "NOTE")
FILTERS = ("outcome", "cooperation", "rule", "reason", "authority", "since", "until", "status")
PAGE = 50


class AuthError(Exception):
    def __init__(self, status: int, key: str):
        self.status, self.key = status, key


@dataclass
class Ctx:
    request: Request
    user: Optional[User]
    csrf: str
    lang: str
    api: bool
    new_cookie: Optional[str] = None

    @property
    def roles(self) -> tuple[str, ...]:
        return self.user.roles if self.user else ()

    def has(self, *allowed: str) -> bool:
        return any(r in allowed or (r.startswith("agency:") and "agency" in allowed) for r in self.roles)

    @property
    def full_access(self) -> bool:
        """Sees every decision (not only one agency's own receipts)."""
        return any(r in ("legal_officer", "auditor") for r in self.roles)

    @property
    def agencies(self) -> tuple[str, ...]:
        return self.user.agencies if self.user else ()


class LoginBody(BaseModel):
    username: str
    password: str


class ReviewBody(BaseModel):
    action: str = Field(description="UPHOLD, OVERTURN, FLAG or NOTE")
    recipient: Optional[str] = Field(None, description="One recipient of the exchange, or all when omitted")
    reason: str = ""
    note: str = ""


class LookupBody(BaseModel):
    subject: str = Field(description="A CPR number (validated, never stored) or a 64-hex pseudonym")


def create_app(ledger: Any, *, pseudonym_secret: bytes, session_secret_value: str | None = None,
               secure_cookies: bool | None = None, bundles: Any = None, checkpoint_public_key: Any = None,
               origin: str | None = None, login_throttle: LoginThrottle | None = None) -> FastAPI:
    """``secure_cookies``: None decides per request (Secure unless the host is a loopback name).
    ``login_throttle``: locks out repeated failed log-ins (default: 5 in 15 min, 30 s doubling)."""
    app = FastAPI(title="exchange-ledger review API", version="1",
                  description="Decision queue, decisions with check traces, reviews, subject reports, statistics "
                              "and ledger status. Log in with POST /api/login; send the returned csrf_token as "
                              "X-CSRF-Token on every other POST.")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    codec = SessionCodec(session_secret_value or session_secret())
    users = UserStore(ledger.tables)
    throttle = login_throttle or LoginThrottle()
    models = ReadModels(ledger)
    if bundles is None:
        from policies.bundle import BundleSet

        bundles = BundleSet.load()
    app.state.ledger, app.state.users, app.state.models = ledger, users, models
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- sessions, roles, CSRF ---------------------------------------------------------------------

    def throttle_keys(request: Request, username: str) -> tuple[str, str]:
        # The user name first: a success clears it, while the address keeps its failures.
        return f"user:{username.strip().lower()}", f"addr:{request.client.host if request.client else '-'}"

    def is_secure(request: Request) -> bool:
        if secure_cookies is not None:
            return secure_cookies
        return (request.url.hostname or "") not in LOCAL_HOSTS

    def context(request: Request, api: bool = False) -> Ctx:
        data = codec.loads(request.cookies.get(COOKIE)) or {}
        user = None
        if data.get("u"):
            u = users.get(data["u"])
            if u is not None and data.get("v") == u.fingerprint:
                user = u
        lang = request.query_params.get("lang")
        if lang not in LANGS:
            lang = request.cookies.get(LANG_COOKIE)
        if lang not in LANGS:
            lang = "da"
        csrf = data.get("c") or ""
        ctx = Ctx(request, user, csrf, lang, api)
        if not csrf:
            ctx.csrf = new_csrf()
            ctx.new_cookie = codec.dumps({"u": None, "c": ctx.csrf})
        return ctx

    def finish(ctx: Ctx, response: Response) -> Response:
        if ctx.new_cookie is not None:
            response.set_cookie(COOKIE, ctx.new_cookie, max_age=MAX_AGE, httponly=True, samesite="strict",
                                secure=is_secure(ctx.request), path="/")
        if ctx.request.query_params.get("lang") in LANGS:
            response.set_cookie(LANG_COOKIE, ctx.lang, max_age=365 * 86400, httponly=True, samesite="strict",
                                secure=is_secure(ctx.request), path="/")
        return response

    def require(ctx: Ctx, allowed: tuple[str, ...]) -> None:
        if ctx.user is None:
            raise AuthError(401, "login")
        if not ctx.has(*allowed):
            raise AuthError(403, "forbidden")

    async def check_csrf(ctx: Ctx, form: Any = None) -> None:
        sent = ctx.request.headers.get("x-csrf-token") if ctx.api else (form.get("csrf_token") if form else None)
        import hmac

        if not sent or not ctx.csrf or not hmac.compare_digest(str(sent), ctx.csrf):
            raise AuthError(403, "csrf_failed")

    def render(ctx: Ctx, name: str, status: int = 200, **values: Any) -> Response:
        t = translator(ctx.lang)
        here = ctx.request.url.path
        q = dict(ctx.request.query_params)
        q.pop("lang", None)
        other = "en" if ctx.lang == "da" else "da"
        values.setdefault("title", t("app"))
        response = templates.TemplateResponse(ctx.request, name, {
            "t": t, "ctx": ctx, "user": ctx.user, "csrf": ctx.csrf, "lang": ctx.lang,
            "lang_url": here + "?" + urlencode({**q, "lang": other}), "other_lang": other,
            "nav": nav(ctx), **values}, status_code=status)
        return finish(ctx, response)

    def nav(ctx: Ctx) -> list[tuple[str, str]]:
        items = [("/queue", "queue", QUEUE_ROLES), ("/escalations", "escalations", escalations.VIEW_ROLES),
                 ("/subjects", "subjects", SUBJECT_ROLES),
                 ("/stats", "stats", STATS_ROLES), ("/ledger", "ledger", LEDGER_ROLES),
                 ("/admin/users", "users", USERS_ROLES)]
        return [(href, key) for href, key, roles in items if ctx.has(*roles)]

    def json_out(ctx: Ctx, data: Any, status: int = 200) -> Response:
        return finish(ctx, JSONResponse(data, status_code=status))

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError):
        api = request.url.path.startswith("/api/")
        if api:
            msg = {"login": "not logged in", "forbidden": "forbidden for your role", "csrf_failed": "CSRF token missing or wrong"}
            return JSONResponse({"detail": msg.get(exc.key, exc.key)}, status_code=exc.status)
        ctx = context(request)
        if exc.status == 401:
            return finish(ctx, RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303))
        return render(ctx, "error.html", status=exc.status, message=translator(ctx.lang)(exc.key))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy",
                                        "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # -- shared operations (pages and API) ---------------------------------------------------------

    def day_range(params: dict[str, str], where: list[str], args: list[Any]) -> None:
        """Adds the ``since``/``until`` day bounds of a filter."""
        for key, op in (("since", ">="), ("until", "<=")):
            if params.get(key):
                try:
                    date.fromisoformat(params[key])
                except ValueError:
                    raise HTTPException(422, f"{key} must be a date YYYY-MM-DD")
                where.append(f"day {op} ?")
                args.append(params[key])

    def queue_filter(ctx: Ctx, params: dict[str, str]) -> tuple[str, list[Any]]:
        where, args = [], []
        for col, key in (("outcome", "outcome"), ("context", "cooperation"), ("rule", "rule"), ("reason", "reason"),
                         ("review_status", "status")):
            if params.get(key):
                where.append(f"{col} = ?")
                args.append(params[key])
        if params.get("authority"):
            where.append("(sender = ? OR recipient = ?)")
            args += [params["authority"], params["authority"]]
        day_range(params, where, args)
        if not ctx.full_access:
            agencies = ctx.agencies or ("-",)
            where.append(f"sender IN ({', '.join('?' * len(agencies))})")
            args += list(agencies)
        return " AND ".join(where), args

    def queue_data(ctx: Ctx, params: dict[str, str], page: int) -> dict[str, Any]:
        models.catch_up()
        where, args = queue_filter(ctx, params)
        total = models.count("decisions", where, args)
        counts = {}
        for o in ("ALLOW", "DENY", "ESCALATE"):
            w = f"({where}) AND outcome = ?" if where else "outcome = ?"
            counts[o] = models.count("decisions", w, [*args, o])
        items = models.query("decisions", where, args, order="position DESC, recipient", limit=PAGE,
                             offset=max(page - 1, 0) * PAGE)
        for i in items:
            i.pop("position", None)
        # the choices for the filter form come from what this role may see
        scope_w, scope_a = queue_filter(ctx, {})
        choices = {}
        for key, col in (("outcome", "outcome"), ("cooperation", "context"), ("rule", "rule"), ("reason", "reason"),
                         ("status", "review_status")):
            rows = models.tables.fetchall(
                f"SELECT DISTINCT {col} FROM {models.t('decisions')}" + (f" WHERE {scope_w}" if scope_w else ""),
                scope_a)
            choices[key] = sorted(r[0] for r in rows if r[0])
        rows = models.tables.fetchall(
            f"SELECT DISTINCT sender FROM {models.t('decisions')}" + (f" WHERE {scope_w}" if scope_w else ""), scope_a)
        rows2 = models.tables.fetchall(
            f"SELECT DISTINCT recipient FROM {models.t('decisions')}" + (f" WHERE {scope_w}" if scope_w else ""), scope_a)
        choices["authority"] = sorted({r[0] for r in rows + rows2 if r[0]})
        return {"total": total, "counts": counts, "items": items, "page": page, "page_size": PAGE, "choices": choices}

    def load_exchange(ctx: Ctx, exchange_id: str):
        try:
            eid = UUID(exchange_id)
        except ValueError:
            raise HTTPException(404, "no such exchange")
        try:
            ex = ledger.get_exchange(eid)
        except Exception:
            raise HTTPException(404, "no such exchange")
        if getattr(ex, "decision", None) is None:
            raise HTTPException(404, "no such exchange")
        if not ctx.full_access and ex.sender not in ctx.agencies:
            raise AuthError(403, "forbidden")
        return ex

    def bundle_of(version: str) -> dict[str, Any]:
        """The bundle that made the decision (the rules version shown beside the policy version)."""
        b = bundles.by_version(version) if bundles is not None else None
        return {"bundle": b.name if b else None, "bundle_effective_from": b.effective_from.isoformat() if b else None}

    def citations_for(version: str) -> dict[str, str]:
        b = bundles.by_version(version) if bundles is not None else None
        return b.trace_citations() if b is not None else {}

    def decision_data(ctx: Ctx, ex) -> dict[str, Any]:
        cits = citations_for(ex.decision.get("policy_version", ""))
        results = []
        for r in ex.decision["results"]:
            trace = []
            for c in r.get("trace", []):
                cit = r.get("citation", "") if c["step"] == "P" else cits.get(c["step"], "")
                trace.append({**c, "citation": cit})
            results.append({**{k: v for k, v in r.items() if k != "trace"}, "trace": trace})
        data = {
            "exchange_id": str(ex.id), "message_id": ex.message_id, "sender": ex.sender,
            "summary": ex.summary, "policy_version": ex.decision.get("policy_version"),
            **bundle_of(ex.decision.get("policy_version", "")),
            "request_digest": ex.decision.get("request_digest"), "results": results, "reviews": list(ex.reviews),
            "recorded_at": ex.created_on.isoformat(),
        }
        if ctx.has(*SUBJECT_ROLES):
            data["subject"] = ex.subject  # the pseudonym; never the CPR number
        return data

    def add_review(ctx: Ctx, exchange_id: str, body: ReviewBody) -> dict[str, Any]:
        ex = load_exchange(ctx, exchange_id)
        action = body.action.upper()
        if action not in ACTIONS:
            raise HTTPException(422, f"action must be one of {', '.join(ACTIONS)}")
        recipients = [r["recipient"] for r in ex.decision["results"]]
        if body.recipient and body.recipient not in recipients:
            raise HTTPException(422, "recipient is not a recipient of this exchange")
        if action == "OVERTURN" and not body.reason.strip():
            raise HTTPException(422, "overturning needs a reason")
        review = {
            "action": action, "recipient": body.recipient or None, "reason": body.reason.strip()[:2000],
            "note": body.note.strip()[:4000], "reviewer": ctx.user.username,
            "reviewer_roles": list(ctx.roles), "policy_version": ex.decision.get("policy_version"),
        }
        ex.review(review)
        ledger.record([ex])
        models.catch_up()
        return {**review, "exchange_id": str(ex.id), "at": ex.modified_on.isoformat()}

    def subject_data(ctx: Ctx, pseudonym: str, via: str) -> dict[str, Any]:
        from services.audit import subject_report

        pseudonym = pseudonym.lower()
        if len(pseudonym) != 64 or any(ch not in "0123456789abcdef" for ch in pseudonym):
            raise HTTPException(404, "not a pseudonym")
        report = subject_report(ledger, pseudonym)
        log_access(ledger, who=ctx.user.username, roles=list(ctx.roles), action="subject_report",
                   target_kind="subject", target=pseudonym, via=via)
        return report

    def resolve(value: str) -> Optional[str]:
        from schemas.cpr import InvalidCPR
        from services.audit import resolve_subject

        try:
            return resolve_subject(value, pseudonym_secret)
        except InvalidCPR:
            return None

    def stats_data(params: dict[str, str]) -> dict[str, Any]:
        models.catch_up()
        where, args = [], []
        day_range(params, where, args)
        rows = models.query("stats", " AND ".join(where), args, order="day, cooperation, outcome, rule, reason")
        return {"rows": rows}

    def run_verify() -> dict[str, Any]:
        if checkpoint_public_key is None or not hasattr(ledger, "verify"):
            return {"available": False}
        try:
            report = ledger.verify(checkpoint_public_key, origin=origin)
        except Exception as exc:  # a damaged tree raises (ledger.integrity.TreeCorrupted)
            return {"available": True, "ok": False, "findings": [f"{type(exc).__name__}: {exc}"], "warnings": []}
        return {"available": True, "ok": report.ok, "tree_size": report.tree_size, "pending": report.pending,
                "checkpoints": report.checkpoints, "findings_total": report.findings_total,
                "findings": [f.describe() for f in report.findings[:20]], "warnings": list(report.warnings)}

    def ledger_status(verify: bool = False) -> dict[str, Any]:
        models.catch_up()
        counts = ledger.counts()
        checkpoints = []
        try:
            for size, signed in ledger.tables.fetchall(
                    "SELECT tree_size, signed_json FROM xl_checkpoints ORDER BY tree_size DESC LIMIT 10"):
                entry: dict[str, Any] = {"tree_size": int(size)}
                try:
                    doc = json.loads(signed)
                    for k in ("timestamp", "root_hash", "origin", "key_id"):
                        if isinstance(doc, dict) and k in doc:
                            entry[k] = doc[k]
                    if isinstance(doc, dict) and isinstance(doc.get("checkpoint"), dict):
                        entry.update({k: v for k, v in doc["checkpoint"].items() if isinstance(v, (str, int))})
                except ValueError:
                    pass
                checkpoints.append(entry)
        except Exception:
            checkpoints = []
        verify_available = (checkpoint_public_key is not None and hasattr(ledger, "verify")
                            and importlib.util.find_spec("ledger.verify") is not None)
        return {"counts": counts, "latest_notification_id": ledger.max_notification_id(),
                "readmodels_position": models.position(), "checkpoints": checkpoints,
                "verification_available": verify_available,
                "verification": run_verify() if (verify and verify_available) else None}

    # The helpers the area routers (services/review/escalations.py) use: the same sessions, roles,
    # CSRF check, templates and ledger as the routes here.
    app.state.web = SimpleNamespace(context=context, require=require, check_csrf=check_csrf, render=render,
                                    json_out=json_out, finish=finish, ledger=ledger, models=models, bundles=bundles)
    app.include_router(escalations.router)

    # -- pages ---------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home(request: Request):
        ctx = context(request)
        if ctx.user is None:
            return finish(ctx, RedirectResponse("/login", status_code=303))
        first = nav(ctx)
        return finish(ctx, RedirectResponse(first[0][0] if first else "/login", status_code=303))

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, next: str = "/"):
        ctx = context(request)
        return render(ctx, "login.html", next=_safe_next(next), failed=False)

    @app.post("/login", include_in_schema=False)
    async def login_submit(request: Request):
        ctx = context(request)
        form = await request.form()
        await check_csrf(ctx, form)
        username = str(form.get("username", ""))
        keys = throttle_keys(request, username)
        wait = throttle.retry_after(*keys)
        if wait > 0:
            response = render(ctx, "login.html", status=429, next=_safe_next(str(form.get("next", "/"))),
                              failed=False, retry_after=math.ceil(wait))
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        user = users.authenticate(username, str(form.get("password", "")))
        if user is None:
            throttle.failed(*keys)
            return render(ctx, "login.html", status=401, next=_safe_next(str(form.get("next", "/"))), failed=True)
        throttle.succeeded(keys[0])
        ctx.csrf = new_csrf()  # a fresh token for the new session
        ctx.new_cookie = codec.dumps({"u": user.username, "v": user.fingerprint, "c": ctx.csrf})
        return finish(ctx, RedirectResponse(_safe_next(str(form.get("next", "/"))), status_code=303))

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        ctx = context(request)
        await check_csrf(ctx, await request.form())
        ctx.csrf = new_csrf()
        ctx.new_cookie = codec.dumps({"u": None, "c": ctx.csrf})
        return finish(ctx, RedirectResponse("/login", status_code=303))

    @app.get("/queue", include_in_schema=False)
    async def queue_page(request: Request, page: int = 1):
        ctx = context(request)
        require(ctx, QUEUE_ROLES)
        params = {k: request.query_params.get(k, "") for k in FILTERS}
        data = queue_data(ctx, params, page)
        base = {k: v for k, v in params.items() if v}
        return render(ctx, "queue.html", params=params, data=data,
                      prev_url=("/queue?" + urlencode({**base, "page": page - 1})) if page > 1 else None,
                      next_url=("/queue?" + urlencode({**base, "page": page + 1})) if page * PAGE < data["total"] else None)

    @app.get("/decisions/{exchange_id}", include_in_schema=False)
    async def decision_page(request: Request, exchange_id: str):
        ctx = context(request)
        require(ctx, DECISION_ROLES)
        ex = load_exchange(ctx, exchange_id)
        data = decision_data(ctx, ex)
        log_access(ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_decision",
                   target_kind="exchange", target=str(ex.id), via="web")
        return render(ctx, "decision.html", d=data, can_review=ctx.has(*REVIEW_ROLES), actions=ACTIONS,
                      error=request.query_params.get("error"))

    @app.post("/decisions/{exchange_id}/review", include_in_schema=False)
    async def review_submit(request: Request, exchange_id: str):
        ctx = context(request)
        require(ctx, REVIEW_ROLES)
        form = await request.form()
        await check_csrf(ctx, form)
        body = ReviewBody(action=str(form.get("action", "")), recipient=str(form.get("recipient", "")) or None,
                          reason=str(form.get("reason", "")), note=str(form.get("note", "")))
        try:
            add_review(ctx, exchange_id, body)
        except HTTPException as exc:
            if exc.status_code == 422:
                return finish(ctx, RedirectResponse(f"/decisions/{exchange_id}?error=reason_required", status_code=303))
            raise
        return finish(ctx, RedirectResponse(f"/decisions/{exchange_id}#reviews", status_code=303))

    @app.get("/subjects", include_in_schema=False)
    async def subjects_page(request: Request):
        ctx = context(request)
        require(ctx, SUBJECT_ROLES)
        return render(ctx, "subjects.html", invalid=False)

    @app.post("/subjects", include_in_schema=False)
    async def subjects_lookup(request: Request):
        ctx = context(request)
        require(ctx, SUBJECT_ROLES)
        form = await request.form()
        await check_csrf(ctx, form)
        p = resolve(str(form.get("subject", "")))
        if p is None:
            return render(ctx, "subjects.html", status=422, invalid=True)
        # The CPR number never reaches a URL, a log line or the page: only its pseudonym does.
        return finish(ctx, RedirectResponse(f"/subjects/{p}", status_code=303))

    @app.get("/subjects/{pseudonym}", include_in_schema=False)
    async def subject_page(request: Request, pseudonym: str):
        ctx = context(request)
        require(ctx, SUBJECT_ROLES)
        report = subject_data(ctx, pseudonym, "web")
        return render(ctx, "subject.html", r=report)

    @app.get("/stats", include_in_schema=False)
    async def stats_page(request: Request):
        ctx = context(request)
        require(ctx, STATS_ROLES)
        params = {k: request.query_params.get(k, "") for k in ("since", "until")}
        rows = stats_data(params)["rows"]
        by_coop: dict[str, dict[str, int]] = {}
        by_reason: dict[str, dict[str, int]] = {}
        for r in rows:
            c = by_coop.setdefault(r["cooperation"] or "—", {})
            c[r["day"]] = c.get(r["day"], 0) + int(r["n"])
            key = r["reason"] or f"{r['outcome']} {r['rule']}"
            s = by_reason.setdefault(key, {})
            s[r["day"]] = s.get(r["day"], 0) + int(r["n"])
        t = translator(ctx.lang)
        return render(ctx, "stats.html", params=params, rows=rows,
                      chart_coop=stacked_bars(by_coop, title=t("by_cooperation")),
                      chart_reason=stacked_bars(by_reason, title=t("by_reason")))

    @app.get("/ledger", include_in_schema=False)
    async def ledger_page(request: Request):
        ctx = context(request)
        require(ctx, LEDGER_ROLES)
        return render(ctx, "ledger.html", s=ledger_status(request.query_params.get("verify") == "1"))

    @app.get("/admin/users", include_in_schema=False)
    async def users_page(request: Request):
        ctx = context(request)
        require(ctx, USERS_ROLES)
        return render(ctx, "users.html", users=users.list())

    # -- API -----------------------------------------------------------------------------------------

    @app.post("/api/login", tags=["session"], summary="Log in; returns the CSRF token for later POSTs")
    async def api_login(request: Request, body: LoginBody):
        ctx = context(request, api=True)
        keys = throttle_keys(request, body.username)
        wait = throttle.retry_after(*keys)
        if wait > 0:
            return JSONResponse({"detail": f"too many failed log-ins; try again in {math.ceil(wait)} s"},
                                status_code=429, headers={"Retry-After": str(math.ceil(wait))})
        user = users.authenticate(body.username, body.password)
        if user is None:
            throttle.failed(*keys)
            return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
        throttle.succeeded(keys[0])
        ctx.csrf = new_csrf()
        ctx.new_cookie = codec.dumps({"u": user.username, "v": user.fingerprint, "c": ctx.csrf})
        return json_out(ctx, {"username": user.username, "roles": list(user.roles), "csrf_token": ctx.csrf})

    @app.post("/api/logout", tags=["session"])
    async def api_logout(request: Request):
        ctx = context(request, api=True)
        require(ctx, ("legal_officer", "auditor", "admin", "agency"))
        await check_csrf(ctx)
        ctx.new_cookie = codec.dumps({"u": None, "c": new_csrf()})
        return json_out(ctx, {"ok": True})

    @app.get("/api/me", tags=["session"])
    async def api_me(request: Request):
        ctx = context(request, api=True)
        require(ctx, ("legal_officer", "auditor", "admin", "agency"))
        return json_out(ctx, {"username": ctx.user.username, "roles": list(ctx.roles), "csrf_token": ctx.csrf})

    @app.get("/api/decisions", tags=["decisions"], summary="The decision queue with filters and counts")
    async def api_decisions(request: Request, outcome: str = "", cooperation: str = "", rule: str = "",
                            reason: str = "", authority: str = "", since: str = "", until: str = "",
                            status: str = "", page: int = 1):
        ctx = context(request, api=True)
        require(ctx, QUEUE_ROLES)
        params = {"outcome": outcome, "cooperation": cooperation, "rule": rule, "reason": reason,
                  "authority": authority, "since": since, "until": until, "status": status}
        return json_out(ctx, queue_data(ctx, params, page))

    @app.get("/api/decisions/{exchange_id}", tags=["decisions"], summary="One decision with its check trace")
    async def api_decision(request: Request, exchange_id: str):
        ctx = context(request, api=True)
        require(ctx, DECISION_ROLES)
        ex = load_exchange(ctx, exchange_id)
        data = decision_data(ctx, ex)
        log_access(ledger, who=ctx.user.username, roles=list(ctx.roles), action="view_decision",
                   target_kind="exchange", target=str(ex.id), via="api")
        return json_out(ctx, data)

    @app.post("/api/decisions/{exchange_id}/reviews", tags=["decisions"], status_code=201,
              summary="Record a review (legal officers): appended to the ledger")
    async def api_review(request: Request, exchange_id: str, body: ReviewBody):
        ctx = context(request, api=True)
        require(ctx, REVIEW_ROLES)
        await check_csrf(ctx)
        return json_out(ctx, add_review(ctx, exchange_id, body), status=201)

    @app.post("/api/subjects/lookup", tags=["subjects"], summary="Subject report by CPR number or pseudonym")
    async def api_subject_lookup(request: Request, body: LookupBody):
        ctx = context(request, api=True)
        require(ctx, SUBJECT_ROLES)
        await check_csrf(ctx)
        p = resolve(body.subject)
        if p is None:
            return json_out(ctx, {"detail": "neither a valid CPR number nor a pseudonym"}, status=422)
        return json_out(ctx, subject_data(ctx, p, "api"))

    @app.get("/api/subjects/{pseudonym}", tags=["subjects"], summary="Subject report (GDPR art. 15) by pseudonym")
    async def api_subject(request: Request, pseudonym: str):
        ctx = context(request, api=True)
        require(ctx, SUBJECT_ROLES)
        return json_out(ctx, subject_data(ctx, pseudonym, "api"))

    @app.get("/api/stats", tags=["statistics"], summary="Decision counts by day, cooperation, outcome, rule, reason")
    async def api_stats(request: Request, since: str = "", until: str = ""):
        ctx = context(request, api=True)
        require(ctx, STATS_ROLES)
        return json_out(ctx, stats_data({"since": since, "until": until}))

    @app.get("/api/ledger", tags=["ledger"], summary="Ledger status: counts, latest entry, checkpoints")
    async def api_ledger(request: Request, verify: bool = False):
        ctx = context(request, api=True)
        require(ctx, LEDGER_ROLES)
        return json_out(ctx, ledger_status(verify))

    @app.get("/api/users", tags=["users"], summary="Users and roles (admin)")
    async def api_users(request: Request):
        ctx = context(request, api=True)
        require(ctx, USERS_ROLES)
        return json_out(ctx, [{"username": u.username, "roles": list(u.roles), "created_at": u.created_at}
                              for u in users.list()])

    return app


def _safe_next(value: str) -> str:
    # Only local paths: never redirect off-site after logging in.
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


__all__ = ["create_app"]
