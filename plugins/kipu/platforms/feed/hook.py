"""The ``feed`` source: RSS 2.0, Atom and JSON Feed from a URL or a file, with media enclosures and hashtags."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urljoin, urlparse

import feedparser
import httpx

from kipu import egress
from kipu.captions.hashtags import extract_hashtags
from kipu.hooks.base import PlatformError, RateLimited, Rejected, SourceHook, Transient
from kipu.hooks.client import Call, Flow, HttpHook, classify, run
from kipu.hooks.times import utc_time
from kipu.specs.items import ContentItem, ContentType, MediaRef

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FEED_BYTES = 20 * 1024 * 1024
ACCEPT = {"Accept": "application/feed+json, application/atom+xml, application/rss+xml, */*"}


class FeedError(Rejected):
    """The feed cannot be read or parsed."""


def _parse_duration(value: Any) -> float | None:
    """Seconds from ``3600``, ``"1:02:03"`` or ``"02:03"``; None when absent or unreadable."""
    if value in (None, ""):
        return None
    try:
        parts = [float(p) for p in str(value).strip().split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def small_int(value: Any) -> int | None:
    """A non-negative count written in ASCII digits (``"²"`` passes ``isdigit``), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < 10**15 else None
    text = str(value or "")
    return int(text) if text.isascii() and text.isdecimal() and len(text) <= 15 else None


def each_entry(entries: Iterable[Any], build: Callable[[Any], T | None], source: str = "feed") -> list[T]:
    """Every entry that makes an item; one malformed entry is skipped (and logged), never the whole feed."""
    items: list[T] = []
    skipped = 0
    for entry in entries:
        try:
            item = build(entry)
        except (ValueError, TypeError, KeyError, AttributeError):  # pydantic's ValidationError is a ValueError
            skipped += 1
            continue
        if item is not None:
            items.append(item)
    if skipped:
        log.warning("%s: %d malformed entries skipped", source, skipped)
    return items


def _content_type(media: list[MediaRef]) -> ContentType:
    kinds = [m.kind for m in media]
    if "video" in kinds:
        return "video"
    if kinds.count("image") > 1:
        return "carousel"
    if "image" in kinds:
        return "image"
    return "text"


def _item(
    platform_post_id: str,
    caption: str,
    title: str | None,
    url: str | None,
    media: list[MediaRef],
    published: datetime | None,
    author: str | None,
) -> ContentItem:
    durations = [m.duration_seconds for m in media if m.duration_seconds]
    text = caption or title or ""
    return ContentItem(
        platform="feed",
        platform_post_id=platform_post_id,
        content_type=_content_type(media),
        title=title,
        caption=text,
        url=url,
        media=media,
        hashtags=extract_hashtags(f"{title or ''} {text}"),
        duration_seconds=max(durations) if durations else None,
        published_at=published,
        author=author,
    )


def struct_time_utc(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime(*value[:6], tzinfo=UTC)


def parse_xml_feed(data: bytes) -> list[ContentItem]:
    """RSS 2.0 and Atom through feedparser; raises FeedError on a body that is not a feed."""
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise FeedError(f"not a readable RSS or Atom feed: {parsed.get('bozo_exception')}")
    return each_entry(parsed.entries, _xml_item)


def _xml_item(entry: Any) -> ContentItem | None:
    media: list[MediaRef] = []
    seen: set[str] = set()
    duration = _parse_duration(entry.get("itunes_duration"))
    for link in entry.get("enclosures", []):
        href = link.get("href")
        if href and href not in seen:
            seen.add(href)
            size = link.get("length")
            media.append(
                MediaRef(
                    url=href,
                    mime_type=link.get("type"),
                    size_bytes=small_int(size),
                    duration_seconds=duration if (link.get("type") or "").startswith(("video", "audio")) else None,
                )
            )
    for content in entry.get("media_content", []):
        href = content.get("url")
        if href and href not in seen:
            seen.add(href)
            media.append(
                MediaRef(
                    url=href,
                    mime_type=content.get("type") or (f"{content['medium']}/*" if content.get("medium") else None),
                    duration_seconds=_parse_duration(content.get("duration")),
                    width=small_int(content.get("width")),
                    height=small_int(content.get("height")),
                )
            )
    post_id = entry.get("id") or entry.get("link") or entry.get("title")
    if not post_id:
        return None
    body = entry.get("summary") or entry.get("description") or ""
    return _item(
        str(post_id),
        _strip_html(body),
        entry.get("title"),
        entry.get("link"),
        media,
        struct_time_utc(entry.get("published_parsed") or entry.get("updated_parsed")),
        entry.get("author"),
    )


def _strip_html(text: str) -> str:
    if "<" not in text:
        return text.strip()
    import html
    import re

    text = re.sub(r"<br\s*/?>|</p>", "\n", text, flags=re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def parse_json_feed(data: bytes) -> list[ContentItem]:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise FeedError(f"JSON Feed is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedError("JSON document has no JSON Feed 'version' field")
    entries = doc.get("items", [])
    if not isinstance(entries, list):
        raise FeedError(f"JSON Feed 'items' is a {type(entries).__name__}, not a list")
    return each_entry(entries, _json_item)


def _json_item(raw: Any) -> ContentItem | None:
    if not isinstance(raw, dict) or raw.get("id") in (None, ""):
        return None
    media = [
        MediaRef(
            url=a["url"],
            mime_type=a.get("mime_type"),
            size_bytes=small_int(a.get("size_in_bytes")),
            duration_seconds=_parse_duration(a.get("duration_in_seconds")),
        )
        for a in raw.get("attachments", [])
        if isinstance(a, dict) and a.get("url")
    ]
    if raw.get("image") and all(m.url != raw["image"] for m in media):
        media.append(MediaRef(url=raw["image"], mime_type="image/*"))
    published = raw.get("date_published")
    when = utc_time(published)
    authors = raw.get("authors") or ([raw["author"]] if raw.get("author") else [])
    text = raw.get("content_text") or _strip_html(raw.get("content_html") or raw.get("summary") or "")
    return _item(
        str(raw["id"]),
        text,
        raw.get("title"),
        raw.get("url"),
        media,
        when,
        authors[0].get("name") if authors and isinstance(authors[0], dict) else None,
    )


def parse_feed(data: bytes) -> list[ContentItem]:
    """Any supported feed format, detected from the body; items oldest first."""
    head = data.lstrip()[:1]
    items = parse_json_feed(data) if head == b"{" else parse_xml_feed(data)
    return sorted(items, key=lambda i: i.published_at or datetime.min.replace(tzinfo=UTC))


class FeedHook(HttpHook, SourceHook):
    """Reads a feed from an ``http(s)://`` URL through the client layer (a local file only in the demo and tests)."""

    platform: ClassVar[str] = "feed"
    inline_wait = 0.0  # a feed that asks to wait is left alone until then, not slept through

    def __init__(self, location: str, client: httpx.Client | None = None) -> None:
        super().__init__()
        self.location = location
        if client is not None:
            self.client = client

    @classmethod
    def from_connection(cls, conn: Any) -> FeedHook:
        return cls((conn.metadata_ or {}).get("url") or conn.platform_user_id)

    @property
    def token_key(self) -> str:
        return self.location  # a feed's "account" is its URL: limits apply per feed, not per host

    @property
    def is_remote(self) -> bool:
        """An http(s) feed; any other scheme but ``file`` is refused by the egress guard when fetched."""
        return urlparse(self.location).scheme not in ("file", "")

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        error = classify(response, "feed")
        if error is not None:
            message = f"feed {egress.shown_url(self.location)} answered HTTP {response.status_code}"
            if isinstance(error, RateLimited):
                return RateLimited(message, error.retry_after)
            return Transient(message) if isinstance(error, Transient) else FeedError(message)
        if len(response.content) > MAX_FEED_BYTES:
            return FeedError(f"feed {egress.shown_url(self.location)} is over {MAX_FEED_BYTES} bytes")
        return None

    def _read_file(self) -> bytes:
        if not egress.allow_private():
            raise FeedError(
                f"feed {egress.shown_url(self.location)} is refused: a feed is read from an http(s) URL; local files "
                f"only in the demo and the tests ({egress.ALLOW_PRIVATE_ENV})"
            )
        scheme = urlparse(self.location).scheme
        path = Path(self.location[len("file://") :] if scheme == "file" else self.location)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FeedError(f"feed file {path} cannot be read: {exc.strerror}") from None

    def _body(self) -> Flow:
        if not self.is_remote:
            return self._read_file()
        response = yield Call("GET", self.location, auth=False, retries=1, kwargs={"headers": ACCEPT})
        return response.content

    def fetch(self) -> bytes:
        return run(self._body(), self.send)  # type: ignore[no-any-return]

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        return self._items((yield from self._body()), since_id, limit)

    def _items(self, body: bytes, since_id: str | None, limit: int) -> list[ContentItem]:
        try:
            items = parse_feed(body)
        except PlatformError:
            raise
        except Exception as exc:  # a malformed feed must name itself, not crash the caller
            raise FeedError(f"feed {egress.shown_url(self.location)} cannot be parsed: {exc}") from None
        base = (
            self.location
            if urlparse(self.location).scheme in ("http", "https", "file")
            else (Path(self.location).resolve().as_uri())
        )
        for item in items:  # enclosures relative to the feed resolve like a browser would
            for media in item.media:
                if not urlparse(media.url).scheme:
                    media.url = urljoin(base, media.url)
        if since_id is not None:
            ids = [i.platform_post_id for i in items]
            if since_id in ids:
                items = items[ids.index(since_id) + 1 :]
        return items[-limit:] if limit else items
