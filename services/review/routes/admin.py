"""Users and roles, for administrators (read-only here: `xledger users` changes them)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.review.web import USERS_ROLES, api_ctx, page_ctx

router = APIRouter()


@router.get("/admin/users", include_in_schema=False)
def users_page(request: Request):
    web, ctx = page_ctx(request, USERS_ROLES)
    return web.render(ctx, "users.html", title=ctx.t("users"), users=web.users.list())


@router.get("/api/users", tags=["users"], summary="Users and roles (admin)")
def api_users(request: Request):
    web, ctx = api_ctx(request, USERS_ROLES)
    return web.json_out(ctx, [{"username": u.username, "roles": list(u.roles), "created_at": u.created_at}
                              for u in web.users.list()])
