"""X (API v2): posts with ``POST /2/tweets``, chunked media upload (INIT → APPEND → FINALIZE → STATUS), the user
timeline for polling, OAuth 2.0 with PKCE. Captions are checked in X's weighted counting before any call."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from typing import Any, ClassVar

import httpx

from kipu.captions.counting import URL_RE
from kipu.hooks.base import PlatformError, PublishRequest, PublishResult, RateLimited, Rejected, Transient
from kipu.hooks.client import Call, Flow
from kipu.hooks.media import VideoLimits, check_video, open_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.hooks.times import utc_time
from kipu.specs.items import ContentItem, MediaRef

CHUNK = 4 * 1024 * 1024
# X's video rules for tweet_video uploads: 0.5-140 s, up to 512 MB, aspect ratio between 1:3 and 3:1.
VIDEO_LIMITS = VideoLimits(
    max_bytes=512 * 1024 * 1024, min_duration=0.5, max_duration=140, min_aspect=1 / 3, max_aspect=3
)
MAX_IMAGE = 5 * 1024 * 1024
MAX_VIDEO = 512 * 1024 * 1024
PROCESSING_TIMEOUT = 300.0  # seconds: every wait is bounded (PLATFORMS.md, complaint 4)


def _plain(text: str) -> str:
    """Text for matching a published post: X rewrites links to t.co, so links are left out."""
    return re.sub(r"\s+", " ", URL_RE.sub("", text)).strip()


class XHook(OAuthPlatformHook):
    platform: ClassVar[str] = "x"
    base_url: ClassVar[str] = "https://api.x.com"
    me_path: ClassVar[str] = "/2/users/me"
    message_keys: ClassVar[tuple[str, ...]] = ("detail", "title")
    # 200 requests per 15 minutes per user (PLATFORMS.md); the window headers keep us under it exactly.
    token_rate: ClassVar[float | None] = 200 / 900
    token_burst: ClassVar[float] = 200
    limit_headers: ClassVar[tuple[str, str] | None] = ("x-rate-limit-remaining", "x-rate-limit-reset")
    processing_timeout: float = PROCESSING_TIMEOUT

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        error = super().map_error(response)
        if isinstance(error, RateLimited) and error.retry_after is None:  # X sends its window reset instead
            reset = response.headers.get("x-rate-limit-reset")
            if reset and reset.isdigit():
                error.retry_after = max(0.0, float(reset) - time.time())
        return error

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        return data["data"]["id"], data["data"].get("username")

    def check(self, request: PublishRequest) -> list[str]:
        problems = super().check(request)
        for media in (m for m in request.media if m.kind == "video"):
            problems += check_video(media.url, VIDEO_LIMITS, "x")
        return problems

    # -- media -----------------------------------------------------------------------------------------------------
    def upload_media(self, media: MediaRef) -> str:
        """INIT, APPEND in chunks read from disk one at a time (a large video never sits in memory), FINALIZE."""
        video = media.kind == "video"
        mime = (
            media.mime_type
            if media.mime_type and "*" not in media.mime_type
            else ("video/mp4" if video else "image/jpeg")
        )
        with open_media(media.url, MAX_VIDEO if video else MAX_IMAGE, "x", mime) as data:
            init = self.call(
                "POST",
                "/2/media/upload",
                data={
                    "command": "INIT",
                    "media_type": mime,
                    "total_bytes": str(data.size),
                    "media_category": "tweet_video" if video else "tweet_image",
                },
            ).json()["data"]
            media_id = str(init["id"])
            for index in range(max(1, math.ceil(data.size / CHUNK))):
                chunk = data.read_range(index * CHUNK, CHUNK)
                self.call(
                    "POST",
                    "/2/media/upload",
                    data={"command": "APPEND", "media_id": media_id, "segment_index": str(index)},
                    files={"media": ("chunk", chunk, "application/octet-stream")},
                )
        info = self.call("POST", "/2/media/upload", data={"command": "FINALIZE", "media_id": media_id}).json()["data"]
        self._await_processing(media_id, info.get("processing_info"))
        return media_id

    def _await_processing(self, media_id: str, info: dict[str, Any] | None) -> None:
        deadline = time.monotonic() + self.processing_timeout
        while info and info.get("state") in ("pending", "in_progress"):
            if time.monotonic() >= deadline:
                raise Transient(f"x: media {media_id} still processing after {self.processing_timeout:g}s")
            time.sleep(min(float(info.get("check_after_secs", 1)), max(0.0, deadline - time.monotonic())))
            info = (
                self.call("GET", "/2/media/upload", params={"command": "STATUS", "media_id": media_id})
                .json()["data"]
                .get("processing_info")
            )
        if info and info.get("state") == "failed":
            raise Rejected(f"x: media {media_id} failed processing: {(info.get('error') or {}).get('message', '')}")

    # -- publishing ------------------------------------------------------------------------------------------------
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """X has no idempotency key: a post of the same text since the intent was written is ours."""
        params: dict[str, Any] = {"max_results": 20, "tweet.fields": "created_at"}
        if request.created_at:
            params["start_time"] = request.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = self.call("GET", f"/2/users/{self.credentials.platform_user_id}/tweets", params=params)
        want = _plain(request.caption)
        for tweet in resp.json().get("data") or []:
            if _plain(tweet.get("text", "")) == want:
                return self._result(tweet["id"])
        return None

    def _result(self, tweet_id: str) -> PublishResult:
        who = self.credentials.username or "i"
        return PublishResult(platform_post_id=tweet_id, url=f"https://x.com/{who}/status/{tweet_id}")

    def publish(self, request: PublishRequest) -> PublishResult:
        uploads = [m for m in request.media if m.kind in ("image", "video")]
        uploads = [m for m in uploads if m.kind == "video"][:1] or uploads[:4]
        media_ids = [self.upload_media(m) for m in uploads]
        for attempt in (1, 2):
            body: dict[str, Any] = {"text": request.caption}
            if media_ids:
                body["media"] = {"media_ids": media_ids}
            try:
                return self._result(self.call("POST", "/2/tweets", json=body).json()["data"]["id"])
            except Rejected as exc:
                if "duplicate content" in str(exc):
                    found = self.find_published(request)  # an earlier attempt landed
                    if found is not None:
                        return found
                if "media" in str(exc).lower() and attempt == 1 and media_ids:
                    media_ids = [self.upload_media(m) for m in uploads]  # media ids expire: upload again once
                    continue
                raise
            except Transient:
                found = self.find_published(request)
                if found is not None:
                    return found
                raise
        raise AssertionError("unreachable")

    # -- polling ---------------------------------------------------------------------------------------------------
    def _items(self, tweets: list[dict[str, Any]]) -> list[ContentItem]:
        items = []
        for t in reversed(tweets):  # the timeline is newest first
            created = t.get("created_at")
            items.append(
                ContentItem(
                    platform="x",
                    platform_post_id=str(t["id"]),
                    caption=t.get("text", ""),
                    url=self._result(str(t["id"])).url,
                    published_at=utc_time(created),
                    author=self.credentials.username,
                )
            )
        return items

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        params: dict[str, Any] = {"max_results": max(5, min(limit, 100)), "tweet.fields": "created_at"}
        if since_id:
            params["since_id"] = since_id
        resp = yield Call("GET", f"/2/users/{self.credentials.platform_user_id}/tweets", kwargs={"params": params})
        return self._items(resp.json().get("data") or [])
