"""Checks at the door of the /kipu app, before any route reads a body.

1. Who: every route but the OAuth callback, the signed webhooks and the docs needs a Kipu API token, checked from the
   headers before a byte of the body is read (401 at once). A webhook must carry its signature header (401 at once).
2. How much: each route class has a body limit; a ``Content-Length`` over it is 413 at once, and a chunked body is
   cut at the limit (413). Nothing unauthenticated is buffered, and nothing over the limit is kept.
3. What: every buffered body, whatever its ``Content-Type`` spelling (FastAPI reads ``APPLICATION/JSON``,
   ``application/vnd.x+json`` and no type at all as JSON), is refused with 422 for a NUL character (PostgreSQL text
   cannot hold one) or an unpaired UTF-16 surrogate (no database encoding can), naming the field.

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each request
in an extra task group and stream, which cost the hot list route about a tenth of its CPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from starlette._utils import get_route_path

from kipu.api.access_log import blank_params

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_JSON = 1024 * 1024  # uploads go to /media/upload, with their own limit
STRIPE_MAX_BYTES = 1024 * 1024
UI_MAX_FORM = 256 * 1024  # the largest page form is a workflow's YAML
MULTIPART_OVERHEAD = 64 * 1024
PUBLIC_GET = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
OAUTH_SECRETS = frozenset({"code", "state"})
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def upload_limits() -> tuple[int, int]:
    """(the multipart body's limit, the file's limit): the body may carry the file plus its multipart headers."""
    from kipu.api.routes.media import max_bytes

    return max_bytes() + MULTIPART_OVERHEAD, max_bytes()


class RequestGuard:
    def __init__(self, app: ASGIApp, max_json: int = MAX_JSON) -> None:
        self.app = app
        self.max_json = max_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            await _unprocessable(send, ["query"], "NUL characters are not allowed")
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("raw_path", b""):
            await _unprocessable(send, ["path"], "NUL characters are not allowed")
            return
        path = get_route_path(scope)
        headers = dict(scope.get("headers") or ())
        webhook = _webhook_platform(path)
        shown = None  # the limit a 413 names, when it is not the body's own
        if webhook is not None:
            signature, limit = _webhook_rules(webhook)
            if scope["method"] == "POST" and not (signature and headers.get(signature.encode())):
                await _json(send, 401, {"detail": "this webhook needs its signature header"})
                return
            limit = limit if scope["method"] == "POST" else 0
        elif path == "/ui" or path.startswith("/ui/"):
            # Kipu's pages: signed in with Airflow's session cookie, never with a Kipu token (kipu.ui.session).
            from kipu.ui.session import ui_caller

            signed = await ui_caller(scope)
            if signed is None and scope["method"] not in ("GET", "HEAD"):
                await _json(send, 401, {"detail": "sign in to Airflow first"})
                return
            if signed is not None:
                scope.setdefault("state", {})["kipu_ui"] = signed
            limit = UI_MAX_FORM if signed is not None else 0
            if signed is not None and path == "/ui/media/upload":
                limit, shown = upload_limits()
        elif path.startswith("/api/auth/callback/") or (path in PUBLIC_GET and scope["method"] == "GET"):
            limit = 0  # no public route but the webhooks takes a body: nothing unauthenticated is buffered
        else:
            if not _trusted(scope) and not await self._authenticate(scope, headers, send):
                return
            limit, shown = upload_limits() if path == "/api/media/upload" else (self.max_json, None)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, shown or limit)
            return
        if path in ("/api/media/upload", "/ui/media/upload"):  # multipart: streamed to the route, never buffered here
            await self._stream(scope, receive, send, limit, shown or limit)
            return
        body = await _read(receive, limit)
        if body is None:
            await _too_large(send, limit)
            return
        if body and webhook is None:
            problem = _text_problem(body)
            if problem is not None:
                await _unprocessable(send, problem[0], problem[1])
                return
        if not path.startswith("/api/auth/callback/"):
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            # The access log wrapping Airflow's app reads this scope after the request: it logs the single-use code
            # and state blanked (the route has used them by now).
            scope["query_string"] = blank_params(scope.get("query_string", b""), OAUTH_SECRETS)

    async def _authenticate(self, scope: Scope, headers: dict[bytes, bytes], send: Send) -> bool:
        from kipu.api.auth import authenticate

        try:
            caller = await authenticate(headers.get(b"authorization", b"").decode("latin-1"))
        except HTTPException as exc:
            await _json(send, exc.status_code, {"detail": exc.detail}, exc.headers)
            return False
        scope.setdefault("state", {})["kipu_caller"] = caller
        return True

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int, shown: int) -> None:
        """Pass the body through as it arrives, counting; past the limit answer 413 at once, tell the route the
        client left, and drop whatever the route answers after that."""
        seen = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                if not started:
                    await _too_large(send, shown)
                answered = True
                return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)


def _webhook_rules(platform: str) -> tuple[str | None, int]:
    """The signature header a platform's deliveries carry and their size limit (its package says), or no body."""
    from kipu import platforms

    if platform == "stripe":  # billing, not a platform: Stripe signs every event; events stay well under 1 MiB
        return "stripe-signature", STRIPE_MAX_BYTES
    try:
        spec = platforms.get(platform)
    except platforms.PlatformNotSupported:
        return None, 0
    return spec.webhook_signature, spec.webhook_max_bytes if spec.webhook else 0


def _webhook_platform(path: str) -> str | None:
    if not path.startswith("/api/webhooks/"):
        return None
    return path.removeprefix("/api/webhooks/").split("/", 1)[0] or None


def _trusted(scope: Scope) -> bool:
    """A caller set by in-process code before the app (the ``kipu`` CLI on the store); HTTP cannot set scope state."""
    from kipu.api.auth import Caller

    return isinstance((scope.get("state") or {}).get("kipu_caller"), Caller)


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` (the rest is never read)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _text_problem(body: bytes) -> tuple[list[str | int], str] | None:
    """Where the body holds text no database can store, and why; None when it is fine."""
    if b"\x00" in body or b"\\u0000" in body:
        return ["body", *(_locate(body, lambda s: "\x00" in s) or [])], "NUL characters are not allowed"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:  # JSON is UTF-8; a surrogate encoded raw is not UTF-8 either
        where = _locate(body, _has_lone_surrogate)  # Python's JSON reader lets raw surrogates through
        if where is not None:
            return ["body", *where], "unpaired UTF-16 surrogates are not allowed"
        return ["body"], f"the body is not UTF-8 text (byte 0x{body[exc.start]:02x} at offset {exc.start})"
    if _SURROGATE_ESCAPE.search(body):  # rare: only then is the body parsed here
        where = _locate(body, _has_lone_surrogate)
        if where is not None:
            return ["body", *where], "unpaired UTF-16 surrogates are not allowed"
    return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _locate(body: bytes, bad: Callable[[str], bool]) -> list[str | int] | None:
    """The path of the first key or string that is ``bad`` in a JSON body; None if there is none (or no JSON)."""
    try:
        stack: list[tuple[Any, list[str | int]]] = [(json.loads(body), [])]
    except (ValueError, RecursionError):
        return None
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and bad(value):
            return path
        if isinstance(value, dict):
            for k, v in value.items():
                if bad(k):
                    return [*path, _printable(k)]
                stack.append((v, [*path, k]))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(value))
    return None


def _printable(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")


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


async def _too_large(send: Send, limit: int) -> None:
    await _json(send, 413, {"detail": f"the body is over the limit of {limit} bytes"})


async def _unprocessable(send: Send, loc: list[str | int], msg: str) -> None:
    await _json(send, 422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]})


async def _json(send: Send, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
