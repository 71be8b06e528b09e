"""The ``feed`` source: RSS 2.0, Atom and JSON Feed from a URL or a file, with media enclosures and hashtags."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urljoin, urlparse

import feedparser
import httpx

from kipu import egress
from kipu.captions.hashtags import extract_hashtags
from kipu.hooks.base import PlatformError, RateLimited, Rejected, SourceHook, Transient
from kipu.hooks.http import LimitedClient, classify
from kipu.specs.items import ContentItem, ContentType, MediaRef

FEED_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
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
    return seconds if seconds >= 0 else None


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
    items = []
    for entry in parsed.entries:
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
                        size_bytes=int(size) if str(size or "").isdigit() else None,
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
                        width=int(content["width"]) if str(content.get("width", "")).isdigit() else None,
                        height=int(content["height"]) if str(content.get("height", "")).isdigit() else None,
                    )
                )
        post_id = entry.get("id") or entry.get("link") or entry.get("title")
        if not post_id:
            continue
        body = entry.get("summary") or entry.get("description") or ""
        items.append(
            _item(
                str(post_id),
                _strip_html(body),
                entry.get("title"),
                entry.get("link"),
                media,
                struct_time_utc(entry.get("published_parsed") or entry.get("updated_parsed")),
                entry.get("author"),
            )
        )
    return items


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
    items = []
    for raw in doc.get("items", []):
        if not isinstance(raw, dict) or raw.get("id") in (None, ""):
            continue
        media = [
            MediaRef(
                url=a["url"],
                mime_type=a.get("mime_type"),
                size_bytes=a.get("size_in_bytes"),
                duration_seconds=a.get("duration_in_seconds"),
            )
            for a in raw.get("attachments", [])
            if isinstance(a, dict) and a.get("url")
        ]
        if raw.get("image") and all(m.url != raw["image"] for m in media):
            media.append(MediaRef(url=raw["image"], mime_type="image/*"))
        published = raw.get("date_published")
        when = datetime.fromisoformat(published.replace("Z", "+00:00")) if published else None
        if when and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        authors = raw.get("authors") or ([raw["author"]] if raw.get("author") else [])
        text = raw.get("content_text") or _strip_html(raw.get("content_html") or raw.get("summary") or "")
        items.append(
            _item(
                str(raw["id"]),
                text,
                raw.get("title"),
                raw.get("url"),
                media,
                when,
                authors[0].get("name") if authors and isinstance(authors[0], dict) else None,
            )
        )
    return items


def parse_feed(data: bytes) -> list[ContentItem]:
    """Any supported feed format, detected from the body; items oldest first."""
    head = data.lstrip()[:1]
    items = parse_json_feed(data) if head == b"{" else parse_xml_feed(data)
    return sorted(items, key=lambda i: i.published_at or datetime.min.replace(tzinfo=UTC))


class FeedHook(SourceHook):
    """Reads a feed from ``http(s)://`` or a local path (``file://`` or plain)."""

    platform: ClassVar[str] = "feed"
    conn_type = "kipu_feed"
    conn_name_attr = "kipu_conn_id"
    default_conn_name = "kipu_feed"
    hook_name = "Kipu feed (RSS, Atom, JSON Feed)"

    def __init__(self, location: str, client: httpx.Client | None = None) -> None:
        super().__init__()
        self.location = location
        self._client = client

    @property
    def is_remote(self) -> bool:
        """An http(s) feed; any other scheme but ``file`` is refused by the egress guard when fetched."""
        return urlparse(self.location).scheme not in ("file", "")

    def _check(self, response: httpx.Response) -> bytes:
        error = classify(response, "feed")
        if error is not None:
            message = f"feed {self.location} answered HTTP {response.status_code}"
            if isinstance(error, RateLimited):
                raise RateLimited(message, error.retry_after)
            raise Transient(message) if isinstance(error, Transient) else FeedError(message)
        if len(response.content) > MAX_FEED_BYTES:
            raise FeedError(f"feed {self.location} is over {MAX_FEED_BYTES} bytes")
        return response.content

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

    def fetch(self) -> bytes:
        if not self.is_remote:
            return self._read_file()
        try:
            client = self._client or egress.client(timeout=FEED_TIMEOUT)
            response = client.get(self.location, headers=ACCEPT)
        except httpx.TimeoutException:
            raise Transient(f"feed {self.location} timed out") from None
        except httpx.HTTPError as exc:
            raise Transient(f"feed {self.location} unreachable: {exc.__class__.__name__}") from None
        return self._check(response)

    async def fetch_posts(self, http: LimitedClient, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        if self.is_remote:
            # A feed's "account" is its URL: per-token limits then apply per feed, not per host.
            response = await http.request(
                "GET", self.location, platform="feed", token_key=self.location, headers=ACCEPT
            )
            body = self._check(response)
        else:
            body = await asyncio.to_thread(self._read_file)
        return self._items(body, since_id, limit)

    def list_posts(self, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        return self._items(self.fetch(), since_id, limit)

    def _items(self, body: bytes, since_id: str | None, limit: int) -> list[ContentItem]:
        try:
            items = parse_feed(body)
        except PlatformError:
            raise
        except Exception as exc:  # a malformed feed must name itself, not crash the caller
            raise FeedError(f"feed {self.location} cannot be parsed: {exc}") from None
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
