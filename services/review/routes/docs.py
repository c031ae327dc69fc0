"""The API's own documentation: Swagger UI at /docs and ReDoc at /redoc, from local files
(static/vendor/, see its README for versions and licences): no CDN."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

router = APIRouter()

SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
VENDOR = "/static/vendor"


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request):
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title + " – Swagger UI",
                               swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
                               swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
                               swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png")


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request):
    return get_redoc_html(openapi_url="/openapi.json", title=request.app.title + " – ReDoc",
                          redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
                          redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png", with_google_fonts=False)
