"""`xledger witness serve`: the C2SP tlog-witness HTTP service around ``ledger.witness.Witness``.

An independent body (a supervisory authority, an auditor, a region) runs it with its own key
and its own small SQLite database. It serves one endpoint::

    POST /add-checkpoint     body: old <size>, proof lines, blank line, checkpoint note
      200 text/plain         the cosignature line
      400 / 403 / 404 / 422  malformed / not signed by the log / unknown log / bad proof
      409 text/x.tlog.size   "<the witness's size>\\n": ask again from that size (or a fork)
      413                    body larger than 64 KiB

and ``GET /checkpoint/<origin>`` (the last checkpoint it cosigned, for monitors). Every
refusal is logged (``witness.refused``, with ``alert=true`` for a fork, rollback or bad
proof), and those are also kept in its database as evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ledger.checkpoint import load_private_key
from ledger.note import ED25519, Cosigner, Ed25519Verifier, NoteError, verifier_from_vkey
from ledger.witness import SqliteWitnessStore, Witness, WitnessRefusal
from services.logging import get_logger

log = get_logger(__name__)

MAX_BODY = 64 * 1024
_ALERTS = frozenset({"fork", "rollback", "bad-proof"})


class WitnessSetupError(ValueError):
    pass


def load_log_keys(vkeys: Iterable[str]) -> dict[str, list[Ed25519Verifier]]:
    """The logs this witness follows: one log verifier key per line or item (``<origin>+<hash>+<key>``,
    as `xledger ledger checkpoint-key --note` prints it); several keys per origin during a rotation."""
    logs: dict[str, list[Ed25519Verifier]] = {}
    for number, vkey in enumerate(vkeys, 1):
        vkey = vkey.strip()
        if not vkey or vkey.startswith("#"):
            continue
        try:
            verifier = verifier_from_vkey(vkey, ED25519)
        except NoteError as exc:
            raise WitnessSetupError(f"log key {number}: {exc}") from None
        logs.setdefault(verifier.name, []).append(verifier)
    if not logs:
        raise WitnessSetupError("no log keys configured: the witness would have nothing to witness")
    return logs


def load_cosigner(name: str, private_key_text: str) -> Cosigner:
    try:
        return Cosigner(name, load_private_key(private_key_text.strip()))
    except (ValueError, NoteError) as exc:
        raise WitnessSetupError(f"witness key: {exc}") from None


def cosigner_vkey(cosigner: Cosigner) -> str:
    return cosigner.verifier().vkey


def build_witness(name: str, key_file: Path, db: Path, log_keys: Iterable[str]) -> Witness:
    try:
        key_text = key_file.read_text()
    except OSError as exc:
        raise WitnessSetupError(f"cannot read the witness key {key_file}: {exc.strerror or exc}") from None
    cosigner = load_cosigner(name, key_text)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteWitnessStore(db)
    except OSError as exc:
        raise WitnessSetupError(f"cannot open the witness database {db}: {exc}") from None
    return Witness(cosigner, load_log_keys(log_keys), store)


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="exchange-ledger witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not (declared.isascii() and declared.isdigit()) or int(declared) > MAX_BODY):
            return PlainTextResponse(f"request body larger than {MAX_BODY} bytes\n", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse(f"request body larger than {MAX_BODY} bytes\n", status_code=413)
        try:
            line = await run_in_threadpool(witness.add_checkpoint, body)
        except WitnessRefusal as refusal:
            event = log.error if refusal.reason in _ALERTS else log.warning
            event("witness.refused", alert=refusal.reason in _ALERTS, origin=refusal.origin, status=refusal.status,
                  reason=refusal.reason, detail=refusal.message[:300])
            return Response(refusal.body, status_code=refusal.status, media_type=refusal.content_type)
        log.info("witness.cosigned", line_bytes=len(line))
        return PlainTextResponse(line)

    @app.get("/checkpoint/{origin:path}")
    def last_cosigned(origin: str) -> Response:
        note = witness.store.checkpoint(origin) if hasattr(witness.store, "checkpoint") else None
        if note is None:
            return PlainTextResponse(f"no checkpoint cosigned for {origin!r}\n", status_code=404)
        return PlainTextResponse(note)

    return app
