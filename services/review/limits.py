"""A request-body limit for the review app, enforced before anything reads the body.

A declared Content-Length over the limit is refused at once with 413; a body sent without one
(chunked) is counted as it arrives and refused as soon as it passes the limit, so an
unauthenticated client cannot make the server hold a large body in memory.
"""

from __future__ import annotations

import json

DEFAULT_MAX_BODY = 256 * 1024  # the largest form (a review: reason and note) is a few KiB


class BodyLimit:
    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await self._refuse(scope, send, 400, "invalid Content-Length")
        if declared is not None and declared > self.max_bytes:
            return await self._refuse(scope, send, 413, f"request body too large (limit {self.max_bytes} bytes)")
        seen = 0
        started = refused = False

        async def counted_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now, then tell the app the client has gone: whatever it makes of a
                    # cut-off body (FastAPI says 400) is never sent.
                    refused = True
                    if not started:
                        await self._refuse(scope, send, 413, f"request body too large (limit {self.max_bytes} bytes)")
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise

    @staticmethod
    async def _refuse(scope, send, status: int, detail: str) -> None:
        if scope.get("path", "").startswith("/api/"):
            body, ctype = json.dumps({"detail": detail}).encode(), b"application/json"
        else:
            text = "Forespørgslen er for stor." if status == 413 else "Ugyldig forespørgsel."
            body = (f'<!doctype html><html lang="da"><head><meta charset="utf-8"><title>{text}</title></head>'
                    f"<body><main><h1>{text}</h1></main></body></html>").encode()
            ctype = b"text/html; charset=utf-8"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
