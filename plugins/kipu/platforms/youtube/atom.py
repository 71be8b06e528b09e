"""YouTube's Atom feeds: a channel's feed (polled, no quota) and WebSub notifications share one format."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import feedparser

from kipu.captions.hashtags import extract_hashtags
from kipu.platforms.feed.hook import FeedError, each_entry, small_int, struct_time_utc
from kipu.specs.items import ContentItem, MediaRef

WATCH_URL = "https://www.youtube.com/watch?v={}"


def feed_entries(data: bytes) -> list[tuple[str | None, ContentItem]]:
    """``(channel id, video)`` for each entry of a channel's Atom feed or a WebSub notification, oldest first;
    ``FeedError`` if the body is not a feed. A notification of a deleted video has no entries."""
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise FeedError(f"youtube: not a readable channel feed: {parsed.get('bozo_exception')}")
    out = each_entry(parsed.entries, _entry, "youtube")
    return sorted(out, key=lambda pair: pair[1].published_at or datetime.min.replace(tzinfo=UTC))


def _entry(entry: Any) -> tuple[str | None, ContentItem] | None:
    video_id = entry.get("yt_videoid") or str(entry.get("id", "")).removeprefix("yt:video:")
    if not video_id:
        return None
    title = entry.get("title") or ""
    description = entry.get("summary") or ""
    media = [
        MediaRef(
            url=t["url"],
            mime_type="image/jpeg",
            width=small_int(t.get("width")),
            height=small_int(t.get("height")),
        )
        for t in entry.get("media_thumbnail") or []
        if t.get("url")
    ]
    item = ContentItem(
        platform="youtube",
        platform_post_id=video_id,
        content_type="video",
        title=title,
        caption=description,
        url=entry.get("link") or WATCH_URL.format(video_id),
        media=media,
        hashtags=extract_hashtags(f"{title} {description}"),
        published_at=struct_time_utc(entry.get("published_parsed") or entry.get("updated_parsed")),
        author=entry.get("author"),
    )
    return entry.get("yt_channelid"), item


def items_from_feed(data: bytes) -> list[ContentItem]:
    """The videos of a channel's Atom feed, oldest first."""
    return [item for _, item in feed_entries(data)]


def topic_for(channel_id: str) -> str:
    """The WebSub topic of a channel's uploads (the push-notifications guide)."""
    return f"https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}"


def topic_channel(topic: str) -> str | None:
    """The channel id of a YouTube feed topic (``/xml/feeds/videos.xml`` or ``/feeds/videos.xml``), else None."""
    parsed = urlparse(topic)
    feeds = ("/xml/feeds/videos.xml", "/feeds/videos.xml")
    if parsed.hostname not in ("www.youtube.com", "youtube.com") or parsed.path not in feeds:
        return None
    found = parse_qs(parsed.query).get("channel_id")
    return found[0] if found and re.fullmatch(r"[\w-]{3,64}", found[0]) else None
