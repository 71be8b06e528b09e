"""The feed source: RSS 2.0, Atom and JSON Feed, enclosures, hashtags, and clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from kipu.hooks.base import RateLimited, Transient
from kipu.platforms.feed.hook import FeedError, FeedHook, parse_feed

from tests.fakes.feed_server import FeedServer, Route
from tests.helpers import REPO

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
  <title>Channel</title><id>yt:channel:UC1</id>
  <entry>
    <id>yt:video:abc</id><title>Short #Cooking video</title>
    <link rel="alternate" href="https://www.youtube.com/watch?v=abc"/>
    <published>2026-11-20T10:00:00+01:00</published>
    <media:group><media:content url="https://example.invalid/abc.mp4" type="video/mp4" width="1080" height="1920" duration="42"/>
    <media:description>Made with #café beans</media:description></media:group>
  </entry>
</feed>""".encode()

JSONFEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Blog",
        "items": [
            {
                "id": "2",
                "content_text": "Second #two",
                "date_published": "2026-11-21T09:00:00Z",
                "attachments": [
                    {"url": "https://e.invalid/a.png", "mime_type": "image/png"},
                    {"url": "https://e.invalid/b.png", "mime_type": "image/png"},
                ],
            },
            {
                "id": "1",
                "content_html": "<p>First <b>post</b></p>",
                "date_published": "2026-11-20T09:00:00Z",
                "authors": [{"name": "Ana"}],
            },
        ],
    }
).encode()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    yield srv
    srv.stop()


def test_rss_demo_feed() -> None:
    items = FeedHook(str(REPO / "include/demo/feed.xml")).list_posts()
    assert [i.platform_post_id for i in items] == [f"ana-00{n}" for n in range(1, 7)]
    pasta = items[0]
    assert pasta.content_type == "video" and pasta.duration_seconds == 45
    assert pasta.hashtags == ["Pasta", "QuickDinner", "fyp"]
    assert pasta.media[0].url.startswith("file:///") and pasta.media[0].url.endswith("include/demo/media/pasta.mp4")
    assert pasta.published_at == datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert items[2].content_type == "text" and items[4].content_type == "image"


def test_since_id_returns_only_newer_items() -> None:
    hook = FeedHook(str(REPO / "include/demo/feed.xml"))
    assert [i.platform_post_id for i in hook.list_posts(since_id="ana-004")] == ["ana-005", "ana-006"]


def test_atom_with_media_rss() -> None:
    (item,) = parse_feed(ATOM)
    assert item.platform_post_id == "yt:video:abc" and item.content_type == "video"
    assert item.duration_seconds == 42 and item.media[0].width == 1080
    assert item.published_at == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert "Cooking" in item.hashtags


def test_json_feed_sorted_oldest_first() -> None:
    first, second = parse_feed(JSONFEED)
    assert first.caption == "First post" and first.author == "Ana"
    assert second.content_type == "carousel" and second.hashtags == ["two"]


def test_http_feed(server: FeedServer) -> None:
    server.routes["/feed.json"] = Route(JSONFEED, "application/feed+json")
    assert len(FeedHook(server.url + "/feed.json").list_posts()) == 2


@pytest.mark.parametrize(
    "mode,error,match",
    [
        ("500", Transient, "answered HTTP 500"),
        ("429", RateLimited, "answered HTTP 429"),
        ("malformed", FeedError, "not a readable RSS or Atom feed"),
    ],
)
def test_http_errors_are_classified(server: FeedServer, mode: str, error: type, match: str) -> None:
    # A private feed's key in its query never reaches the message (it becomes the connection's last error).
    server.routes["/f?auth=FEEDKEY123456"] = Route(b"", mode=mode)
    with pytest.raises(error, match=match) as info:
        FeedHook(server.url + "/f?auth=FEEDKEY123456").list_posts()
    assert "FEEDKEY123456" not in str(info.value)
    if mode == "429":
        assert info.value.retry_after == 7  # the fake's Retry-After


def test_slow_feed_times_out(server: FeedServer) -> None:
    server.routes["/slow"] = Route(ATOM, mode="slow", delay=2)
    client = httpx.Client(timeout=0.5)
    with pytest.raises(Transient, match="timed out"):
        FeedHook(server.url + "/slow", client=client).list_posts()


def test_missing_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FeedError, match="cannot be read"):
        FeedHook(str(tmp_path / "nope.xml")).list_posts()


def test_json_that_is_not_a_feed() -> None:
    with pytest.raises(FeedError, match="no JSON Feed 'version'"):
        parse_feed(b'{"hello": 1}')
