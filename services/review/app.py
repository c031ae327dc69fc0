"""The review app: server-rendered pages for legal officers and auditors, and the same operations under /api/.

Roles: ``legal_officer`` (queue, decisions with trace, reviews, escalations, subject reports,
statistics, ledger status), ``auditor`` (the same, read-only), ``agency:<id>`` (its own receipts
only: decisions where it is the sender, without internal review notes or reviewers' names),
``admin`` (users, statistics, ledger status; no personal data). Every view of personal data is
recorded in the ledger as an ``AccessRecord``.

``create_app`` only assembles: the shared objects (``services.review.web.Web``), the middleware
(body limit, security headers), the error pages and the routers of services/review/routes/.
"""

from __future__ import annotations

from typing import Any, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from urllib.parse import urlencode

from ledger.readmodels import ReadModels
from services.review.labels import Labels
from services.review.limits import DEFAULT_MAX_BODY, BodyLimit
from services.review.routes import ROUTERS
from services.review.sessions import SessionCodec, SessionStore, session_secret
from services.review.throttle import LoginThrottle
from services.review.users import UserStore
from services.review.web import HERE, AuthError, PageError, Web

API_MESSAGES = {"login": "not logged in", "forbidden": "forbidden for your role",
                "csrf_failed": "CSRF token missing or wrong"}


def create_app(ledger: Any, *, pseudonym_secret: bytes, session_secret_value: str | None = None,
               secure_cookies: bool | None = None, bundles: Any = None, checkpoint_public_key: Any = None,
               origin: str | None = None, login_throttle: LoginThrottle | None = None,
               trusted_proxies: Iterable[str] = (), max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """``secure_cookies``: None decides per request (Secure unless the host is a loopback name).
    ``login_throttle``: locks out repeated failed log-ins (default: 5 in 15 min, 30 s doubling).
    ``trusted_proxies``: addresses or networks whose X-Forwarded-For is believed (default none).
    ``max_body_bytes``: larger request bodies are refused with 413 before they are read."""
    app = FastAPI(title="exchange-ledger review API", version="1", docs_url=None, redoc_url=None,
                  description="Decision queue, decisions with check traces, reviews, escalations, subject "
                              "reports, statistics and ledger status. Log in with POST /api/login; send the "
                              "returned csrf_token as X-CSRF-Token on every other POST.")
    if bundles is None:
        from policies.bundle import BundleSet

        bundles = BundleSet.load()
    web = Web(ledger=ledger, models=ReadModels(ledger), bundles=bundles, users=UserStore(ledger.tables),
              sessions=SessionStore(ledger.tables), codec=SessionCodec(session_secret_value or session_secret()),
              throttle=login_throttle or LoginThrottle(), labels=Labels(), pseudonym_secret=pseudonym_secret,
              secure_cookies=secure_cookies, trusted_proxies=trusted_proxies,
              checkpoint_public_key=checkpoint_public_key, origin=origin)
    app.state.web = web
    app.state.ledger, app.state.users, app.state.models = ledger, web.users, web.models
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)
    _error_pages(app, web)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("Content-Security-Policy",
                                        "default-src 'self'; img-src 'self' data:; form-action 'self'; "
                                        "frame-ancestors 'none'")
        else:
            # Swagger UI and ReDoc start from an inline script and style themselves inline; nothing may
            # leave the app (ReDoc's bundle would fetch its logo from Redocly's CDN; blocked, it hides it).
            response.headers.setdefault("Content-Security-Policy", DOCS_CSP)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Outermost: a body over the limit is refused before any other layer reads it.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'")


def _error_pages(app: FastAPI, web: Web) -> None:
    """JSON under /api/, a page in the user's language everywhere else."""

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"

    def page(request: Request, status: int, key: str, detail: str = ""):
        ctx = web.context(request)
        t = ctx.t
        return web.render(ctx, "error.html", status=status, title=t(f"error_{status}_title"),
                          heading=t(f"error_{status}_title"), message=t(key), detail=detail)

    @app.exception_handler(AuthError)
    def _auth(request: Request, exc: AuthError):
        if is_api(request):
            return JSONResponse({"detail": API_MESSAGES.get(exc.key, exc.key)}, status_code=exc.status)
        ctx = web.context(request)
        if exc.status == 401:
            return web.finish(ctx, RedirectResponse("/login?" + urlencode({"next": request.url.path}),
                                                    status_code=303))
        return page(request, exc.status, exc.key)

    @app.exception_handler(PageError)
    def _page(request: Request, exc: PageError):
        if is_api(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        return page(request, exc.status, exc.key)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError):
        fields = sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})
        if is_api(request):
            return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")}
                                            for e in exc.errors()]}, status_code=422)
        return page(request, 422, "invalid_input", ", ".join(fields))

    @app.exception_handler(Exception)
    def _crash(request: Request, exc: Exception):
        # Logged by the server; the user gets a page (or JSON) that gives nothing away.
        if is_api(request):
            return JSONResponse({"detail": "internal error"}, status_code=500)
        try:
            return page(request, 500, "server_error")
        except Exception:
            return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException):
        if is_api(request) or exc.status_code not in (404, 405, 422):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return page(request, exc.status_code, {404: "not_found", 405: "not_allowed", 422: "invalid_input"}
                    [exc.status_code])


__all__ = ["create_app"]
