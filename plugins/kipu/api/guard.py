"""Checks at the door of the /kipu app: JSON bodies over the size limit (413) and NUL characters (422).

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each request
in an extra task group and stream, which cost the hot list route about a tenth of its CPU.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_JSON = 1024 * 1024  # uploads go to /media/upload, with their own limit


class RequestGuard:
    """PostgreSQL text cannot hold NUL: refuse it at the door (422), never fail on it later (500)."""

    def __init__(self, app: ASGIApp, max_json: int = MAX_JSON) -> None:
        self.app = app
        self.max_json = max_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            await _nul(send, "query")
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("raw_path", b""):
            await _nul(send, "path")
            return
        headers = dict(scope.get("headers") or ())
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_json:
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_json:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        if b"\\u0000" in body or b"\x00" in body:
            await _nul(send, "body")
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, send: Send) -> None:
        await _json(send, 413, {"detail": f"JSON bodies are limited to {self.max_json} bytes"})


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message; then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _nul(send: Send, where: str) -> None:
    detail = [{"loc": [where], "msg": "NUL characters are not allowed", "type": "value_error"}]
    await _json(send, 422, {"detail": detail})


async def _json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
