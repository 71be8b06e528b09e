"""A fake LinkedIn API: OAuth token endpoint, ``/v2/userinfo``, the versioned Posts API and image uploads.

It requires ``LinkedIn-Version`` (answering 426 ``NONEXISTENT_VERSION`` for retired ones) and
``X-Restli-Protocol-Version: 2.0.0``, enforces the 3,000-character commentary, and can expire tokens, answer 429
with ``Retry-After`` or fail with 5xx.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Form, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.serve import FakeService


@dataclass
class LinkedInState:
    client_id: str = "kipu-li-client"
    client_secret: str = "kipu-li-secret"
    current_versions: tuple[str, ...] = ("202510", "202511")
    person: str = "abc123"
    access: dict[str, float] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    posts: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, bytes | None] = field(default_factory=dict)
    fail_next: int = 0
    throttle_next: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(7_000_000))

    def issue(self, ttl: int = 5_184_000) -> dict[str, Any]:  # 60 days
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = time.time() + ttl
        self.refresh.add(refresh)
        return {
            "access_token": access,
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": "openid,profile,w_member_social",
        }


def build_app(li: LinkedInState, base: str) -> FastAPI:
    app = FastAPI()

    def guard(request: Request) -> JSONResponse | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if li.access.get(token, 0) < time.time():
            return JSONResponse({"status": 401, "message": "Invalid access token"}, status_code=401)
        if request.url.path.startswith("/rest/"):
            version = request.headers.get("linkedin-version")
            if version not in li.current_versions:
                return JSONResponse(
                    {
                        "status": 426,
                        "code": "NONEXISTENT_VERSION",
                        "message": f"Requested version {version} is not active",
                    },
                    status_code=426,
                )
            if request.headers.get("x-restli-protocol-version") != "2.0.0":
                return JSONResponse(
                    {"status": 400, "message": "X-Restli-Protocol-Version 2.0.0 required"}, status_code=400
                )
        if li.throttle_next > 0:
            li.throttle_next -= 1
            return JSONResponse(
                {"status": 429, "message": "Too many requests"}, status_code=429, headers={"Retry-After": "1"}
            )
        if li.fail_next > 0:
            li.fail_next -= 1
            return JSONResponse({"status": 500, "message": "Internal error"}, status_code=500)
        return None

    @app.post("/oauth/v2/accessToken")
    def token(
        grant_type: str = Form(...),
        client_id: str = Form(...),
        client_secret: str = Form(...),
        code: str | None = Form(None),
        refresh_token: str | None = Form(None),
        redirect_uri: str | None = Form(None),
    ) -> Response:
        if (client_id, client_secret) != (li.client_id, li.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if grant_type == "refresh_token" and refresh_token not in li.refresh:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return JSONResponse(li.issue())

    @app.get("/v2/userinfo")
    def userinfo(request: Request) -> Response:
        return guard(request) or JSONResponse({"sub": li.person, "name": "Ana Cook"})

    @app.post("/rest/images")
    async def initialize(request: Request, action: str) -> Response:
        error = guard(request)
        if error:
            return error
        urn = f"urn:li:image:C{next(li.ids)}"
        li.images[urn] = None
        return JSONResponse({"value": {"uploadUrl": f"{base}/upload/{urn}", "image": urn, "uploadUrlExpiresAt": 0}})

    @app.put("/upload/{urn}")
    async def upload(urn: str, request: Request) -> Response:
        if urn not in li.images:
            return JSONResponse({"message": "unknown upload"}, status_code=404)
        li.images[urn] = await request.body()
        return Response(status_code=201)

    @app.post("/rest/posts")
    async def create(request: Request) -> Response:
        error = guard(request)
        if error:
            return error
        body = await request.json()
        if len(body.get("commentary", "")) > 3000:
            return JSONResponse(
                {"status": 422, "message": "commentary is longer than 3000 characters"}, status_code=422
            )
        media = ((body.get("content") or {}).get("media") or {}).get("id")
        if media and not li.images.get(media):
            return JSONResponse({"status": 400, "message": f"{media} was not uploaded"}, status_code=400)
        urn = f"urn:li:share:{next(li.ids)}"
        li.posts.append({**body, "id": urn, "createdAt": int(time.time() * 1000)})
        return Response(status_code=201, headers={"x-restli-id": urn})

    @app.get("/rest/posts")
    def list_posts(request: Request, author: str, q: str, count: int = 10) -> Response:
        error = guard(request)
        if error:
            return error
        mine = [p for p in reversed(li.posts) if p["author"] == author][:count]
        return JSONResponse({"elements": mine, "paging": {"count": count, "start": 0}})

    return app


class LinkedInServer(FakeService):
    state: LinkedInState

    def __init__(self, **state: Any) -> None:
        super().__init__(LinkedInState(**state), build_app)
