"""A fake Pinterest API v5: token endpoint, user account, pins (image URL/base64, video id with a cover), media
registration with an upload URL and a processing status, with the documented field limits and failure modes."""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from tests.fakes.serve import FakeService

LIMITS = {"title": 100, "description": 500, "link": 2048, "alt_text": 500}


@dataclass
class PinterestState:
    access: dict[str, float] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    pins: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    boards: set[str] = field(default_factory=lambda: {"board-1"})
    stuck_video: bool = False
    fail_next: int = 0
    throttle_next: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(5_000_000))

    def issue(self) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = time.time() + 2_592_000
        self.refresh.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": 2_592_000, "scope": "pins:write"}


def build_app(st: PinterestState, base: str) -> FastAPI:
    app = FastAPI()

    def guard(request: Request) -> JSONResponse | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if st.access.get(token, 0) < time.time():
            return JSONResponse({"code": 2, "message": "Authentication failed."}, status_code=401)
        if st.throttle_next > 0:
            st.throttle_next -= 1
            return JSONResponse({"code": 8, "message": "Rate limited"}, status_code=429, headers={"Retry-After": "1"})
        if st.fail_next > 0:
            st.fail_next -= 1
            return JSONResponse({"code": 1, "message": "Internal error"}, status_code=500)
        return None

    @app.post("/v5/oauth/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        if not request.headers.get("authorization", "").startswith("Basic "):
            return JSONResponse({"code": 1, "message": "client authentication required"}, status_code=401)
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") not in st.refresh:
            return JSONResponse({"code": 1, "message": "invalid refresh token"}, status_code=400)
        return JSONResponse(st.issue())

    @app.get("/v5/user_account")
    def account(request: Request) -> Response:
        return guard(request) or JSONResponse({"username": "ana_pins", "id": "p-77"})

    @app.post("/v5/media")
    async def register(request: Request) -> Response:
        error = guard(request)
        if error:
            return error
        mid = str(next(st.ids))
        st.media[mid] = {"status": "registered", "bytes": None, "polls": 0}
        return JSONResponse(
            {
                "media_id": mid,
                "media_type": "video",
                "upload_url": f"{base}/s3/{mid}",
                "upload_parameters": {"key": mid},
            },
            status_code=201,
        )

    @app.post("/s3/{mid}")
    async def s3(mid: str, file: UploadFile) -> Response:
        st.media[mid]["bytes"] = await file.read()
        st.media[mid]["status"] = "processing"
        return Response(status_code=204)

    @app.get("/v5/media/{mid}")
    def media_status(request: Request, mid: str) -> Response:
        error = guard(request)
        if error:
            return error
        m = st.media[mid]
        m["polls"] += 1
        if m["status"] == "processing" and not st.stuck_video and m["polls"] >= 2:
            m["status"] = "succeeded"
        return JSONResponse({"media_id": mid, "media_type": "video", "status": m["status"]})

    @app.post("/v5/pins")
    async def create(request: Request) -> Response:
        error = guard(request)
        if error:
            return error
        body = await request.json()
        for name, limit in LIMITS.items():
            if len(body.get(name) or "") > limit:
                return JSONResponse({"code": 1, "message": f"{name} is too long"}, status_code=400)
        if body.get("board_id") not in st.boards:
            return JSONResponse({"code": 2, "message": "Board not found."}, status_code=404)
        source = body["media_source"]
        if source["source_type"] == "video_id":
            m = st.media.get(source["media_id"])
            if m is None or m["status"] != "succeeded":
                return JSONResponse({"code": 1, "message": "Video is not ready"}, status_code=400)
            if not (source.get("cover_image_url") or "cover_image_key_frame_time" in source):
                return JSONResponse({"code": 1, "message": "A cover is required"}, status_code=400)
        if source["source_type"] == "image_base64":
            base64.b64decode(source["data"], validate=True)
        pin = {
            "id": str(next(st.ids)),
            "created_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
            **{k: body.get(k) for k in ("board_id", "title", "description", "link", "alt_text")},
            "media_source": source,
            "media": {"media_type": "video" if source["source_type"] == "video_id" else "image"},
        }
        st.pins.append(pin)
        return JSONResponse(pin, status_code=201)

    @app.get("/v5/pins")
    def pins(request: Request, page_size: int = 25) -> Response:
        error = guard(request)
        return error or JSONResponse({"items": list(reversed(st.pins))[:page_size], "bookmark": None})

    return app


class PinterestServer(FakeService):
    state: PinterestState

    def __init__(self, **state: Any) -> None:
        super().__init__(PinterestState(**state), build_app)
