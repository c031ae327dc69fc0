"""`xledger ledger serve`: a read-only HTTP endpoint with the log's public tree data.

It serves only what a monitor needs and nothing personal (hashes, sizes, signatures)::

    GET /checkpoint                        the newest checkpoint, with its witness cosignatures
    GET /checkpoint/<size>                 the stored checkpoint of that size
    GET /proof/consistency?old=M&new=N     RFC 9162 consistency proof, one base64 hash per line

All as ``text/plain``; a checkpoint is a C2SP signed note. Bad or impossible sizes get 400
with a one-line reason, a missing checkpoint 404.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse

from ledger.merkle import MerkleError


def create_log_app(ledger: Any, log_public_key: Any = None) -> FastAPI:
    app = FastAPI(title="exchange-ledger log (read-only)", docs_url=None, redoc_url=None, openapi_url=None)
    integrity = ledger.integrity

    def note(signed) -> PlainTextResponse:
        return PlainTextResponse(signed.to_note(log_public_key))

    @app.get("/checkpoint")
    def latest() -> PlainTextResponse:
        signed = integrity.latest_checkpoint()
        if signed is None:
            return PlainTextResponse("the log has no signed checkpoint\n", status_code=404)
        return note(signed)

    @app.get("/checkpoint/{size}")
    def at(size: int) -> PlainTextResponse:
        signed = integrity.checkpoint(size) if size >= 0 else None
        if signed is None:
            return PlainTextResponse(f"no signed checkpoint of size {size}\n", status_code=404)
        return note(signed)

    @app.get("/proof/consistency")
    def consistency(old: int = Query(..., ge=0, le=2**62), new: int = Query(..., ge=0, le=2**62)) -> PlainTextResponse:
        if old > new:
            return PlainTextResponse("old must not be larger than new\n", status_code=400)
        try:
            proof = integrity.consistency_proof(old, new)
        except MerkleError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        return PlainTextResponse("".join(base64.b64encode(h).decode() + "\n" for h in proof.path))

    return app
