"""A fake X API v2 (FastAPI under uvicorn, in a thread) implementing the documented contract Kipu uses.

OAuth 2.0 with PKCE (authorize auto-consents, token checks the S256 verifier and rotates refresh tokens),
``GET /2/users/me``, ``POST /2/tweets`` (weighted 280 limit, duplicate content refused), a user timeline, and the
chunked media upload ``INIT → APPEND → FINALIZE → STATUS``. It enforces ``limit`` requests per ``window`` seconds
per token (X: 200 per 15 minutes) with ``x-rate-limit-*`` headers, and can expire tokens, fail with 5xx, or keep
media "in_progress" forever.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse
from kipu.captions.counting import x_weighted_length

from tests.fakes.serve import ThreadedServer


@dataclass
class XState:
    client_id: str = "kipu-x-client"
    client_secret: str = "kipu-x-secret"
    user: dict[str, str] = field(default_factory=lambda: {"id": "9001", "name": "Ana", "username": "ana_cooks"})
    limit: int = 200
    window: float = 900.0
    fail_next: int = 0  # answer 503 to this many next API calls
    fail_until: float = 0.0  # answer 500 to every API call until this time (epoch): an outage
    after_post: Any = None  # called with the new tweet after it is stored, before the answer (fault injection)
    token_delay: float = 0.0  # seconds the token endpoint takes (widens a refresh race)
    stuck_media: bool = False  # media processing never finishes
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    refresh: set[str] = field(default_factory=set)
    tweets: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rate_limited: int = 0
    token_calls: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(1_000_000))

    def issue(self, ttl: float = 7200) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = time.time() + ttl
        self.refresh.add(refresh)
        return {
            "token_type": "bearer",
            "expires_in": int(ttl),
            "access_token": access,
            "refresh_token": refresh,
            "scope": "tweet.read tweet.write users.read media.write offline.access",
        }

    def expire_all(self) -> None:
        for token in self.access:
            self.access[token] = 0


def _error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"title": title, "detail": detail, "status": status}, status_code=status, headers=headers)


def build_app(x: XState) -> FastAPI:
    app = FastAPI()

    def check(request: Request) -> tuple[str | None, JSONResponse | None, dict[str, str]]:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if token not in x.access or x.access[token] < time.time():
            return None, _error(401, "Unauthorized", "Unauthorized"), {}
        now = time.time()
        hits = [t for t in x.hits[token] if t > now - x.window]
        reset = int((hits[0] if hits else now) + x.window) + 1
        if len(hits) >= x.limit:
            x.rate_limited += 1
            headers = {
                "x-rate-limit-limit": str(x.limit),
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(reset),
            }
            return None, _error(429, "Too Many Requests", "Too Many Requests", headers), {}
        hits.append(now)
        x.hits[token] = hits
        headers = {
            "x-rate-limit-limit": str(x.limit),
            "x-rate-limit-remaining": str(x.limit - len(hits)),
            "x-rate-limit-reset": str(reset),
        }
        if x.fail_until > time.time():
            return None, _error(500, "Internal Server Error", "Internal error"), {}
        if x.fail_next > 0:
            x.fail_next -= 1
            return None, _error(503, "Service Unavailable", "Service Unavailable", headers), {}
        return token, None, headers

    @app.get("/i/oauth2/authorize")
    def authorize(
        response_type: str,
        client_id: str,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        code_challenge_method: str,
        scope: str = "",
    ) -> Response:
        if client_id != x.client_id or code_challenge_method != "S256" or response_type != "code":
            return _error(400, "Invalid Request", "bad authorize parameters")
        code = secrets.token_urlsafe(16)
        x.codes[code] = {"challenge": code_challenge, "redirect_uri": redirect_uri}
        return RedirectResponse(f"{redirect_uri}?{urlencode({'state': state, 'code': code})}", status_code=302)

    @app.post("/2/oauth2/token")
    async def token(
        request: Request,
        grant_type: str = Form(...),
        code: str | None = Form(None),
        code_verifier: str | None = Form(None),
        redirect_uri: str | None = Form(None),
        refresh_token: str | None = Form(None),
        client_id: str | None = Form(None),
    ) -> Response:
        x.token_calls += 1
        if x.token_delay:
            await asyncio.sleep(x.token_delay)
        expected = "Basic " + base64.b64encode(f"{x.client_id}:{x.client_secret}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "unauthorized_client"}, status_code=401)
        if grant_type == "authorization_code":
            pending = x.codes.pop(code or "", None)
            if pending is None or pending["redirect_uri"] != redirect_uri:
                return JSONResponse({"error": "invalid_request", "error_description": "bad code"}, status_code=400)
            digest = base64.urlsafe_b64encode(hashlib.sha256((code_verifier or "").encode()).digest()).rstrip(b"=")
            if digest.decode() != pending["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE mismatch"}, status_code=400)
            return JSONResponse(x.issue())
        if grant_type == "refresh_token":
            if refresh_token not in x.refresh:
                return JSONResponse(
                    {"error": "invalid_request", "error_description": "bad refresh token"}, status_code=400
                )
            x.refresh.discard(refresh_token)  # rotated
            return JSONResponse(x.issue())
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    @app.get("/2/users/me")
    def me(request: Request) -> Response:
        _, error, headers = check(request)
        return error or JSONResponse({"data": x.user}, headers=headers)

    @app.post("/2/tweets")
    async def tweet(request: Request) -> Response:
        _, error, headers = check(request)
        if error:
            return error
        body = await request.json()
        text = body.get("text", "")
        if x_weighted_length(text) > 280:
            return _error(400, "Invalid Request", "One or more parameters to your request was invalid.", headers)
        if any(t["text"] == text for t in x.tweets):
            return _error(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.", headers)
        media_ids = (body.get("media") or {}).get("media_ids") or []
        for mid in media_ids:
            m = x.media.get(mid)
            if m is None or m["state"] != "succeeded" or m["expires"] < time.time():
                return _error(400, "Invalid Request", f"Your media IDs are invalid: {mid}", headers)
        tid = str(next(x.ids))
        x.tweets.append(
            {
                "id": tid,
                "text": text,
                "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "media": media_ids,
            }
        )
        if x.after_post is not None:
            x.after_post(x.tweets[-1])
        return JSONResponse({"data": {"id": tid, "text": text}}, status_code=201, headers=headers)

    @app.get("/2/users/{user_id}/tweets")
    def timeline(request: Request, user_id: str, max_results: int = 10, start_time: str | None = None) -> Response:
        _, error, headers = check(request)
        if error:
            return error
        since = datetime.fromisoformat(start_time.replace("Z", "+00:00")) if start_time else None
        data = [
            {"id": t["id"], "text": t["text"], "created_at": t["created_at"], "attachments": {"media_keys": t["media"]}}
            for t in reversed(x.tweets)
            if since is None or datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")) >= since
        ][:max_results]
        return JSONResponse({"data": data, "meta": {"result_count": len(data)}}, headers=headers)

    @app.post("/2/media/upload")
    async def media(
        request: Request,
        command: str = Form(...),
        media_id: str | None = Form(None),
        media_type: str | None = Form(None),
        total_bytes: int | None = Form(None),
        media_category: str | None = Form(None),
        segment_index: int | None = Form(None),
        media: UploadFile | None = None,
    ) -> Response:
        _, error, headers = check(request)
        if error:
            return error
        if command == "INIT":
            mid = str(next(x.ids))
            x.media[mid] = {
                "type": media_type,
                "total": total_bytes,
                "chunks": {},
                "state": "created",
                "expires": time.time() + 86400,
            }
            return JSONResponse(
                {"data": {"id": mid, "media_key": f"3_{mid}", "expires_after_secs": 86400}}, headers=headers
            )
        m = x.media.get(media_id or "")
        if m is None:
            return _error(400, "Invalid Request", "unknown media_id", headers)
        if command == "APPEND":
            assert media is not None and segment_index is not None
            m["chunks"][segment_index] = await media.read()
            return Response(status_code=204, headers=headers)
        if command == "FINALIZE":
            size = sum(len(c) for c in m["chunks"].values())
            if size != m["total"]:
                return _error(400, "Invalid Request", f"expected {m['total']} bytes, got {size}", headers)
            video = (m["type"] or "").startswith("video")
            m["state"] = "pending" if video else "succeeded"
            info = {"processing_info": {"state": "pending", "check_after_secs": 1}} if video else {}
            return JSONResponse({"data": {"id": media_id, **info}}, headers=headers)
        return _error(400, "Invalid Request", f"unknown command {command}", headers)

    @app.get("/2/media/upload")
    def status(request: Request, command: str, media_id: str) -> Response:
        _, error, headers = check(request)
        if error:
            return error
        m = x.media.get(media_id)
        if m is None:
            return _error(400, "Invalid Request", "unknown media_id", headers)
        if m["state"] == "pending" and not x.stuck_media:
            m["state"] = "in_progress"
        elif m["state"] == "in_progress" and not x.stuck_media:
            m["state"] = "succeeded"
        elif x.stuck_media:
            m["state"] = "in_progress"
        info = {
            "state": m["state"],
            "check_after_secs": 1,
            "progress_percent": 100 if m["state"] == "succeeded" else 50,
        }
        return JSONResponse({"data": {"id": media_id, "processing_info": info}}, headers=headers)

    return app


class XServer:
    def __init__(self, **state: Any) -> None:
        self.state = XState(**state)
        self._served = ThreadedServer(build_app(self.state))
        self.port = self._served.port

    @property
    def url(self) -> str:
        return self._served.url

    def __enter__(self) -> XServer:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()
