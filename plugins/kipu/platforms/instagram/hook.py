"""Instagram (Instagram API with Instagram Login): images with alt text, Reels and carousels of up to 10 items as
containers → bounded status poll → ``media_publish`` after the publishing quota is checked, an optional first
comment, recent media for polling, and ``ig_refresh_token``. Sources: docs/platforms/meta.md."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from kipu.hooks.base import PlatformError, PublishRequest, PublishResult
from kipu.hooks.client import Flow
from kipu.hooks.media import VideoLimits, check_video
from kipu.hooks.times import utc_time
from kipu.platforms.instagram.options import InstagramOptions
from kipu.platforms.meta.graph import ContainerHook
from kipu.platforms.options import parse as parse_options
from kipu.specs.items import ContentItem, MediaRef

log = logging.getLogger(__name__)

MAX_CAROUSEL = 10
MAX_MENTIONS = 20
# Reels: 3 s to 15 min and at most 1 GB (Instagram's Reels specifications).
REEL_LIMITS = VideoLimits(max_bytes=1_000_000_000, min_duration=3, max_duration=15 * 60)
MEDIA_FIELDS = "id,caption,media_type,media_url,permalink,timestamp,thumbnail_url"
KINDS = {"IMAGE": "image", "VIDEO": "video", "CAROUSEL_ALBUM": "carousel"}


class InstagramHook(ContainerHook):
    platform: ClassVar[str] = "instagram"
    # graph.instagram.com for Instagram Login; graph.facebook.com (metadata.base_url) for Facebook Login accounts.
    base_url: ClassVar[str] = "https://graph.instagram.com"
    me_path: ClassVar[str] = f"/{ContainerHook.api_version}/me?fields=user_id,username"
    refresh_grant: ClassVar[str | None] = "ig_refresh_token"
    exchange_grant: ClassVar[str | None] = "ig_exchange_token"  # the code exchange's short-lived token → long-lived
    container_edge: ClassVar[str] = "media"
    status_field: ClassVar[str] = "status_code"
    error_field: ClassVar[str] = "status"
    publish_edge: ClassVar[str] = "media_publish"
    limit_edge: ClassVar[str] = "content_publishing_limit"

    def check(self, request: PublishRequest) -> list[str]:
        problems = [p for p in super().check(request) if " at most " not in p]  # counted below, videos included
        media = self.publishable(request)
        if not media:
            problems.append("instagram needs an image or a video: it has no text-only posts")
        if len(media) > MAX_CAROUSEL:
            problems.append(f"instagram carousel holds at most {MAX_CAROUSEL} items, got {len(media)}")
        if len(media) == 1 and media[0].kind == "video":
            problems.extend(check_video(media[0].url, REEL_LIMITS, "instagram"))
        return problems

    def build(self, request: PublishRequest, urls: list[str]) -> tuple[str, str]:
        media = self.publishable(request)
        if len(media) == 1:
            return self.create_container(self._single(media[0], urls[0], request)), (
                "Reel" if media[0].kind == "video" else "image"
            )
        children = []
        for ref, url in zip(media, urls, strict=True):
            item: dict[str, Any] = {"is_carousel_item": "true"}
            if ref.kind == "video":
                item |= {"media_type": "VIDEO", "video_url": url}
            else:
                item |= {"image_url": url, **({"alt_text": ref.alt_text} if ref.alt_text else {})}
            children.append(self.create_container(item))
        for child in children:  # the carousel container refuses children that are still processing
            self.wait_for_container(child, "carousel item")
        parent = {"media_type": "CAROUSEL", "children": ",".join(children), "caption": request.caption}
        return self.create_container(parent), "carousel"

    def _single(self, ref: MediaRef, url: str, request: PublishRequest) -> dict[str, Any]:
        opts: InstagramOptions = parse_options("instagram", request.options)
        if ref.kind == "video":
            params: dict[str, Any] = {"media_type": "REELS", "video_url": url, "caption": request.caption}
            if opts.share_to_feed is not None:
                params["share_to_feed"] = "true" if opts.share_to_feed else "false"
            if opts.cover_url is not None:
                params["cover_url"] = opts.cover_url
            if opts.thumb_offset is not None:
                params["thumb_offset"] = str(opts.thumb_offset)
            return params
        params = {"image_url": url, "caption": request.caption}
        if ref.alt_text:
            params["alt_text"] = ref.alt_text  # images only: Reels and stories take no alt text
        return params

    def after_publish(self, post_id: str, request: PublishRequest) -> None:
        comment = (parse_options("instagram", request.options).first_comment or "").strip()
        if not comment:
            return
        try:  # not retried: a second attempt could comment twice
            self.call("POST", self.path(post_id, "comments"), retries=0, data={"message": comment})
        except PlatformError as exc:  # the post is live; a missing comment must not make Kipu post it again
            log.warning("instagram: the first comment on %s was not posted: %s", post_id, exc)

    # -- exactly once and polling ------------------------------------------------------------------------------------
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """Instagram has no idempotency key: recent media with this caption since the intent was written is ours."""
        media = self.publishable(request)
        kind = "CAROUSEL_ALBUM" if len(media) > 1 else "VIDEO" if media and media[0].kind == "video" else "IMAGE"
        hit = self.find_recent(
            request,
            self._media(25),
            "caption",
            "timestamp",
            accept=lambda p: bool(request.caption.strip()) or p.get("media_type") == kind,
        )
        return PublishResult(platform_post_id=str(hit["id"]), url=hit.get("permalink")) if hit else None

    def _media(self, limit: int) -> list[dict[str, Any]]:
        return self.list_edge(self.path("me", "media"), MEDIA_FIELDS, limit)

    def _items(self, posts: list[dict[str, Any]]) -> list[ContentItem]:
        items = []
        for p in reversed(posts):  # newest first from Meta
            kind = KINDS.get(str(p.get("media_type")), "image")
            mime = "video/mp4" if kind == "video" else "image/jpeg"
            items.append(
                ContentItem(
                    platform="instagram",
                    platform_post_id=str(p["id"]),
                    content_type=kind,  # type: ignore[arg-type]
                    caption=p.get("caption") or "",
                    url=p.get("permalink"),
                    media=[MediaRef(url=p["media_url"], mime_type=mime)] if p.get("media_url") else [],
                    published_at=utc_time(p.get("timestamp")),
                    author=self.credentials.username,
                )
            )
        return items

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        return self.poll_edge(self.path("me", "media"), MEDIA_FIELDS, since_id, limit)
