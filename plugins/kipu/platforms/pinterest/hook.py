"""Pinterest v5: pins to a board from an image URL or base64, video through ``/v5/media`` → upload → bounded
status poll → a pin with a cover, the title/description/link/alt-text limits checked first, and pins for polling."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlparse

from kipu.hooks.base import PublishRequest, PublishResult, Rejected, Transient
from kipu.hooks.client import Call, Flow
from kipu.hooks.media import VideoLimits, check_video, open_media, read_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.hooks.times import utc_time
from kipu.platforms.options import parse as parse_options
from kipu.specs.items import ContentItem, MediaRef

LIMITS = {"title": 100, "description": 500, "link": 2048, "alt_text": 500}
MAX_IMAGE = 20 * 1024 * 1024
MAX_VIDEO = 2 * 1024 * 1024 * 1024
PROCESSING_TIMEOUT = 300.0
# Pinterest video pins: 4 s to 15 minutes, up to 2 GB.
VIDEO_LIMITS = VideoLimits(max_bytes=MAX_VIDEO, min_duration=4, max_duration=15 * 60)


class PinterestHook(OAuthPlatformHook):
    platform: ClassVar[str] = "pinterest"
    base_url: ClassVar[str] = "https://api.pinterest.com"
    me_path: ClassVar[str] = "/v5/user_account"
    processing_timeout: float = PROCESSING_TIMEOUT

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        return str(data.get("id") or data["username"]), data.get("username")

    def _fields(self, request: PublishRequest) -> dict[str, str]:
        media = next((m for m in request.media if m.kind in ("image", "video")), None)
        return {
            "title": request.title or "",
            "description": request.caption,
            "link": request.link or "",
            "alt_text": (media.alt_text or "") if media else "",
        }

    def board(self, request: PublishRequest) -> str:
        board = parse_options("pinterest", request.options).board_id or self.credentials.metadata.get("board_id")
        if not board:
            raise Rejected("pinterest: no board: set board_id in the publish step's config or the connection metadata")
        return str(board)

    def check(self, request: PublishRequest) -> list[str]:
        problems = [p for p in super().check(request) if "caption" not in p]
        for name, value in self._fields(request).items():
            if len(value) > LIMITS[name]:
                problems.append(f"pinterest {name} is {len(value)} characters, over the limit of {LIMITS[name]}")
        if not any(m.kind in ("image", "video") for m in request.media):
            problems.append("pinterest needs an image or a video for a pin")
        for media in (m for m in request.media if m.kind == "video"):
            problems += check_video(media.url, VIDEO_LIMITS, "pinterest")
        return problems

    def _image_source(self, media: MediaRef) -> dict[str, Any]:
        if urlparse(media.url).scheme in ("http", "https"):
            return {"source_type": "image_url", "url": media.url}
        data = read_media(media.url, MAX_IMAGE, "pinterest")
        mime = media.mime_type if media.mime_type and "*" not in media.mime_type else "image/jpeg"
        return {"source_type": "image_base64", "content_type": mime, "data": base64.b64encode(data).decode()}

    def _video_source(self, media: MediaRef, cover: str | None) -> dict[str, Any]:
        registered = self.call("POST", "/v5/media", json={"media_type": "video"}).json()
        with open_media(media.url, MAX_VIDEO, "pinterest") as video, video.open() as fh:
            # httpx streams a file object in a multipart body: the video is never whole in memory.
            upload = self.client.post(
                registered["upload_url"],
                data=registered.get("upload_parameters") or {},
                files={"file": ("video.mp4", fh, media.mime_type or "video/mp4")},
                timeout=300,
            )
        if upload.status_code >= 300:
            raise Transient(f"pinterest: video upload answered HTTP {upload.status_code}")
        media_id = str(registered["media_id"])
        deadline = time.monotonic() + self.processing_timeout
        while True:
            status = self.call("GET", f"/v5/media/{media_id}").json().get("status")
            if status == "succeeded":
                break
            if status == "failed":
                raise Rejected(f"pinterest: video {media_id} failed processing")
            if time.monotonic() >= deadline:
                raise Transient(f"pinterest: video {media_id} still {status} after {self.processing_timeout:g}s")
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        source: dict[str, Any] = {"source_type": "video_id", "media_id": media_id}
        if cover:
            source["cover_image_url"] = cover
        else:
            source["cover_image_key_frame_time"] = 0
        return source

    def _result(self, pin_id: str) -> PublishResult:
        return PublishResult(platform_post_id=pin_id, url=f"https://www.pinterest.com/pin/{pin_id}/")

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        want = (request.caption, request.link or None)
        since = request.created_at - timedelta(minutes=1) if request.created_at else None
        for pin in self._pins(25):
            when = utc_time(pin.get("created_at"))
            recent = since is None or when is None or when >= since
            if (pin.get("description"), pin.get("link") or None) == want and recent:
                return self._result(str(pin["id"]))
        return None

    def publish(self, request: PublishRequest) -> PublishResult:
        board = self.board(request)
        video = next((m for m in request.media if m.kind == "video"), None)
        image = next((m for m in request.media if m.kind == "image"), None)
        if video is not None:
            source = self._video_source(
                video, image.url if image and urlparse(image.url).scheme.startswith("http") else None
            )
        elif image is not None:
            source = self._image_source(image)
        else:
            raise Rejected("pinterest needs an image or a video for a pin")
        fields = {k: v for k, v in self._fields(request).items() if v}
        try:
            pin = self.call("POST", "/v5/pins", json={"board_id": board, "media_source": source, **fields}).json()
        except Transient:
            found = self.find_published(request)
            if found is not None:
                return found
            raise
        return self._result(str(pin["id"]))

    def _pins_call(self, page_size: int) -> Call:
        """The user's newest pins: for finding a pin again and for polling."""
        return Call("GET", "/v5/pins", kwargs={"params": {"page_size": page_size}})

    def _pins(self, page_size: int) -> list[dict[str, Any]]:
        return list(self.send(self._pins_call(page_size)).json().get("items") or [])

    def _items(self, pins: list[dict[str, Any]]) -> list[ContentItem]:
        return [
            ContentItem(
                platform="pinterest",
                platform_post_id=str(p["id"]),
                content_type="video" if (p.get("media") or {}).get("media_type") == "video" else "image",
                title=p.get("title"),
                caption=p.get("description") or "",
                url=p.get("link") or self._result(str(p["id"])).url,
                published_at=utc_time(p.get("created_at")),
            )
            for p in reversed(pins)
        ]

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        resp = yield self._pins_call(min(limit, 100))
        return self._items(resp.json().get("items") or [])
