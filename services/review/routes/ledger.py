"""Ledger status: entries, the Merkle tree, read models, totals and signed checkpoints; on request a
full verification.

Status reads the Merkle tree's size and the read models' totals (each one indexed lookup), never
the log itself, so the page costs the same on a ledger of any size. Only "verify now" reads
everything, and says so.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from fastapi import APIRouter, Request

from ledger.checkpoint import SignedCheckpoint
from services.review.web import LEDGER_ROLES, Web, api_ctx, page_ctx

router = APIRouter()


def run_verify(web: Web) -> dict[str, Any]:
    if web.checkpoint_public_key is None or not hasattr(web.ledger, "verify"):
        return {"available": False}
    try:
        report = web.ledger.verify(web.checkpoint_public_key, origin=web.origin)
    except Exception as exc:  # a damaged tree raises (ledger.integrity.TreeCorrupted)
        return {"available": True, "ok": False, "findings": [f"{type(exc).__name__}: {exc}"], "warnings": []}
    return {"available": True, "ok": report.ok, "tree_size": report.tree_size, "pending": report.pending,
            "checkpoints": report.checkpoints, "findings_total": report.findings_total,
            "findings": [f.describe() for f in report.findings[:20]], "warnings": list(report.warnings)}


def checkpoints(web: Web, limit: int = 10) -> list[dict[str, Any]]:
    out = []
    for size, signed in web.ledger.tables.fetchall(
            "SELECT tree_size, signed_json FROM xl_checkpoints ORDER BY tree_size DESC LIMIT ?", [limit]):
        entry: dict[str, Any] = {"tree_size": int(size)}
        try:
            sc = SignedCheckpoint.parse(signed)
            entry.update(origin=sc.checkpoint.origin, root_hash=sc.checkpoint.root_hash.hex(),
                         timestamp=sc.checkpoint.timestamp, key_id=sc.key_id)
        except Exception:  # shown as its size only; `xledger verify` names what is wrong with it
            pass
        out.append(entry)
    return out


def ledger_status(web: Web, verify: bool = False) -> dict[str, Any]:
    web.models.catch_up()
    totals = web.models.totals()
    integrity = web.ledger.integrity
    tree_size = integrity.tree_size()
    counts = {"entries": web.ledger.max_notification_id(), "requests": totals["requests"],
              "allowed": totals["ALLOW"], "denied": totals["DENY"], "escalated": totals["ESCALATE"],
              "rejected": totals["rejected"]}
    verify_available = (web.checkpoint_public_key is not None and hasattr(web.ledger, "verify")
                        and importlib.util.find_spec("ledger.verify") is not None)
    return {"counts": counts, "latest_notification_id": counts["entries"], "tree_size": tree_size,
            "pending": integrity.pending(), "readmodels_position": web.models.position(),
            "checkpoints": checkpoints(web), "verification_available": verify_available,
            "verification": run_verify(web) if (verify and verify_available) else None}


@router.get("/ledger", include_in_schema=False)
def ledger_page(request: Request):
    web, ctx = page_ctx(request, LEDGER_ROLES)
    return web.render(ctx, "ledger.html", title=ctx.t("ledger"),
                      s=ledger_status(web, request.query_params.get("verify") == "1"))


@router.get("/api/ledger", tags=["ledger"], summary="Ledger status: counts, tree size, latest entry, checkpoints")
def api_ledger(request: Request, verify: bool = False):
    web, ctx = api_ctx(request, LEDGER_ROLES)
    return web.json_out(ctx, ledger_status(web, verify))
