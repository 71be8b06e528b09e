"""Threads: TEXT, IMAGE and VIDEO containers → bounded status poll → ``threads_publish`` after
``threads_publishing_limit`` is checked, the 500-character limit, the user's threads for polling, and
``th_refresh_token``. Sources: docs/platforms/meta.md."""

from __future__ import annotations

from typing import Any, ClassVar

from kipu.hooks.base import PublishRequest, PublishResult
from kipu.hooks.client import Flow
from kipu.hooks.media import VideoLimits, check_video
from kipu.hooks.times import utc_time
from kipu.platforms.meta.graph import ContainerHook
from kipu.specs.items import ContentItem

# Threads media specifications: video up to 5 minutes and 1 GB.
VIDEO_LIMITS = VideoLimits(max_bytes=1_000_000_000, max_duration=300)
THREAD_FIELDS = "id,text,media_type,permalink,timestamp"
KINDS = {"TEXT_POST": "text", "IMAGE": "image", "VIDEO": "video", "CAROUSEL_ALBUM": "carousel"}


class ThreadsHook(ContainerHook):
    platform: ClassVar[str] = "threads"
    base_url: ClassVar[str] = "https://graph.threads.net"
    api_version: ClassVar[str] = "v1.0"
    me_path: ClassVar[str] = "/v1.0/me?fields=id,username"
    refresh_grant: ClassVar[str | None] = "th_refresh_token"
    exchange_grant: ClassVar[str | None] = "th_exchange_token"  # the code exchange's short-lived token → long-lived
    container_edge: ClassVar[str] = "threads"
    status_field: ClassVar[str] = "status"
    error_field: ClassVar[str] = "error_message"
    publish_edge: ClassVar[str] = "threads_publish"
    limit_edge: ClassVar[str] = "threads_publishing_limit"
    # Meta suggests waiting about 30 s before publishing a media container; text containers are ready at once.
    poll_interval: float = 10.0

    def check(self, request: PublishRequest) -> list[str]:
        problems = [p for p in super().check(request) if " at most " not in p]
        media = self.publishable(request)
        if len(media) > 1:
            problems.append(f"threads takes one image or video per post, got {len(media)}")
        if not media and not request.caption.strip():
            problems.append("threads needs text, an image or a video")
        if len(media) == 1 and media[0].kind == "video":
            problems.extend(check_video(media[0].url, VIDEO_LIMITS, "threads"))
        return problems

    def build(self, request: PublishRequest, urls: list[str]) -> tuple[str, str]:
        media = self.publishable(request)
        params: dict[str, Any] = {"text": request.caption} if request.caption else {}
        if not media:
            params["media_type"] = "TEXT"
            if request.link:
                params["link_attachment"] = request.link  # link previews are for text posts only
            return self.create_container(params), "text"
        ref, url = media[0], urls[0]
        if ref.kind == "video":
            params |= {"media_type": "VIDEO", "video_url": url}
        else:
            params |= {"media_type": "IMAGE", "image_url": url}
        if ref.alt_text:
            params["alt_text"] = ref.alt_text
        return self.create_container(params), ref.kind

    # -- exactly once and polling ------------------------------------------------------------------------------------
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """Threads has no idempotency key: a thread with this text since the intent was written is ours."""
        params: dict[str, Any] = {"fields": THREAD_FIELDS, "limit": 25}
        if request.created_at:
            params["since"] = int(request.created_at.timestamp()) - 60
        media = self.publishable(request)
        kind = {"video": "VIDEO", "image": "IMAGE"}.get(media[0].kind, "TEXT_POST") if media else "TEXT_POST"
        hit = self.find_recent(
            request,
            self._threads(params),
            "text",
            "timestamp",
            accept=lambda p: bool(request.caption.strip()) or p.get("media_type") == kind,
        )
        return PublishResult(platform_post_id=str(hit["id"]), url=hit.get("permalink")) if hit else None

    def _threads(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.call("GET", self.path(self.account_id, "threads"), params=params).json().get("data") or [])

    def _items(self, posts: list[dict[str, Any]]) -> list[ContentItem]:
        return [
            ContentItem(
                platform="threads",
                platform_post_id=str(p["id"]),
                content_type=KINDS.get(str(p.get("media_type")), "text"),  # type: ignore[arg-type]
                caption=p.get("text") or "",
                url=p.get("permalink"),
                published_at=utc_time(p.get("timestamp")),
                author=self.credentials.username,
            )
            for p in reversed(posts)  # newest first from Meta
        ]

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        return self.poll_edge(self.path(self.account_id, "threads"), THREAD_FIELDS, since_id, limit)
