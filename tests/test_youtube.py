"""The YouTube hook against a local fake of the Data API v3: resumable upload (resumed from the 308 Range after a
cut connection), snippet limits, quota accounting and errors, crash-safe retry, and RSS polling."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kipu.hooks.base import NeedsReconnect, PublishRequest, RateLimited, Rejected, Transient
from kipu.hooks.http import LimitedClient
from kipu.hooks.platform import Credentials, TokenSet
from kipu.platforms.youtube.hook import CHUNK_UNIT, YouTubeHook, tags_length
from kipu.platforms.youtube.quota import ConnectionLedger, MemoryLedger, QuotaSpent, pacific_day, until_pacific_midnight
from kipu.publishing import LimitExceeded, deliver
from pydantic import SecretStr

from tests.fakes.youtube_server import UPLOAD, YouTubeServer
from tests.videos import make_video, video_request


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[YouTubeServer]:
    with YouTubeServer() as server:
        app = {
            "conn_type": "kipu_youtube_app",
            "login": server.state.client_id,
            "password": server.state.client_secret,
            "extra": {"redirect_uri": "https://kipu.example/cb/youtube", "token_url": f"{server.url}/token"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_YOUTUBE_APP", json.dumps(app))
        MemoryLedger.reset()
        yield server
    MemoryLedger.reset()


def credentials(fake: YouTubeServer, **metadata: object) -> Credentials:
    tokens = fake.state.issue()
    return Credentials(
        None,
        fake.state.channel_id,
        SecretStr(tokens["access_token"]),
        SecretStr(tokens["refresh_token"]),
        username=fake.state.channel_title,
        metadata={"feed_base": fake.url, "upload_chunk_bytes": CHUNK_UNIT, **metadata},
    )


@pytest.fixture
def hook(fake: YouTubeServer) -> YouTubeHook:
    return YouTubeHook(credentials(fake), base_url=fake.url)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """1.2 MiB of random bytes: five chunks of 256 KiB (the upload does not decode video)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(4 * CHUNK_UNIT + 200_000))
    return path


def request(
    path: Path | str, caption: str = "Pasta night\nThe whole recipe #pasta", **options: object
) -> PublishRequest:
    return video_request(path, caption, **options)


def session(fake: YouTubeServer):  # type: ignore[no-untyped-def]
    (only,) = fake.state.sessions.values()
    return only


def test_a_resumable_upload_streams_chunks_and_stores_the_file(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    result = hook.publish(request(clip, tags=["pasta", "weeknight dinner"], privacy="unlisted"))
    (video,) = fake.state.videos
    assert result.platform_post_id == video["id"] and result.url == f"https://www.youtube.com/watch?v={video['id']}"
    assert video["data"] == clip.read_bytes()
    size = clip.stat().st_size
    assert session(fake).puts == [(n * CHUNK_UNIT, min((n + 1) * CHUNK_UNIT, size) - 1) for n in range(5)]
    assert video["snippet"] == {
        "title": "Pasta night",
        "description": "Pasta night\nThe whole recipe #pasta",
        "categoryId": "22",
        "tags": ["pasta", "weeknight dinner"],
    }
    assert video["status"] == {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False}


def test_a_connection_cut_halfway_through_a_put_resumes_from_the_308_range(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    cut = CHUNK_UNIT + 100_000  # in the middle of the second chunk
    fake.state.cut_at = cut
    hook.publish(request(clip))
    up = session(fake)
    assert fake.state.cuts == 1
    # The second PUT was cut after `cut` bytes; the next one starts at byte `cut` (Range said bytes=0-{cut-1}),
    # neither at 0 nor at the start of the broken chunk.
    assert up.puts[:3] == [(0, CHUNK_UNIT - 1), (CHUNK_UNIT, 2 * CHUNK_UNIT - 1), (cut, cut + CHUNK_UNIT - 1)]
    assert all(first >= cut for first, _ in up.puts[2:])
    (video,) = fake.state.videos
    assert video["data"] == clip.read_bytes() and video["size"] == clip.stat().st_size


def test_a_5xx_on_a_chunk_asks_the_session_and_resumes(hook: YouTubeHook, fake: YouTubeServer, clip: Path) -> None:
    fake.state.fail_put_next = 1
    hook.publish(request(clip))
    assert session(fake).puts[0] == (0, CHUNK_UNIT - 1)  # the 503 came before any byte was taken
    assert fake.state.videos[0]["data"] == clip.read_bytes()


def test_an_expired_session_starts_a_new_one_without_a_duplicate(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    fake.state.expire_after_puts = 2
    hook.publish(request(clip))
    first, second = fake.state.sessions.values()
    assert first.expired and first.video_id is None and second.puts[0] == (0, CHUNK_UNIT - 1)
    (video,) = fake.state.videos
    assert video["data"] == clip.read_bytes()


def test_resumes_are_bounded(hook: YouTubeHook, fake: YouTubeServer, clip: Path) -> None:
    hook.max_resumes = 2
    fake.state.fail_put_next = 10
    with pytest.raises(Transient, match="the upload broke 3 times"):
        hook.publish(request(clip))
    assert fake.state.videos == []


def test_chunk_size_must_be_a_multiple_of_256_kib(fake: YouTubeServer, clip: Path) -> None:
    hook = YouTubeHook(credentials(fake, upload_chunk_bytes=300_000), base_url=fake.url)
    with pytest.raises(Rejected, match="upload_chunk_bytes 300000 is not a positive multiple of 262144"):
        hook.publish(request(clip))


def test_tags_are_counted_the_way_youtube_counts_them() -> None:
    assert tags_length(["Foo-Baz"]) == 7 and tags_length(["Foo Baz"]) == 9
    assert tags_length(["a", "b c", "d"]) == 1 + 5 + 1 + 2  # three tags, two commas
    assert tags_length([]) == 0


def test_every_snippet_limit_is_reported_before_any_call(
    hook: YouTubeHook, fake: YouTubeServer, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "real.mp4", seconds=1)
    tags = ["x" * 99] * 5  # 495 characters and four commas: 499
    assert hook.check(request(video, "Fine\nbody", tags=tags)) == []
    problems = hook.check(
        request(
            video,
            "é" * 2501,  # 2,501 characters but 5,002 bytes
            title="t" * 101,
            tags=[*tags, "a b"],
            privacy="public",
            publish_at=datetime.now(UTC) - timedelta(minutes=5),
        )
    )
    assert problems == [
        "youtube title is 101 characters, over the limit of 100",
        "youtube description is 5002 bytes (UTF-8), over the limit of 5000",
        "youtube tags are 505 characters in total (commas, and quotes around tags with spaces, count), over the "
        "limit of 500",
        f"youtube publish_at {problems[3].split()[2]} is not in the future",
        "youtube publish_at needs privacy 'private' (YouTube makes it public then), got 'public'",
    ]
    assert fake.state.calls == [] and fake.state.sessions == {}


def test_options_are_validated_and_name_the_field(hook: YouTubeHook, fake: YouTubeServer, clip: Path) -> None:
    problems = hook.check(
        request(
            clip,
            privacy="friends",
            colour="red",
            publish_at="2030-01-01T10:00:00",
            platform_options={"youtube": {"playlist": "PL1"}},
        )
    )
    assert "youtube option 'platform_options.youtube.playlist' is not known" in problems[0]
    assert any(
        p.startswith("youtube option 'privacy': Input should be 'public', 'unlisted' or 'private'") for p in problems
    )
    assert any(p.startswith("youtube option 'colour' is not known") for p in problems)
    assert any(p.startswith("youtube option 'publish_at': Input should have timezone info") for p in problems)
    flat = hook.check(request(clip, platform_options={"publish_at": "2030-01-01T10:00:00", "notify": False}))
    assert flat[0].startswith("youtube option 'platform_options.notify' is not known (title, privacy, category_id")
    assert flat[1].startswith("youtube option 'platform_options.publish_at': Input should have timezone info")
    with pytest.raises(Rejected, match="youtube option 'colour' is not known"):
        hook.publish(request(clip, colour="red"))
    assert hook.find_published(request(clip, colour="red")) is None  # nothing could have been uploaded with it
    assert hook.check(request(clip.parent / "missing.mp4", "no video")) == [
        f"youtube: media file {clip.parent / 'missing.mp4'} does not exist"
    ]
    text_only = request(clip)
    text_only.media = []
    assert hook.check(text_only) == ["youtube needs a video"]
    assert fake.state.calls == []


def test_title_brackets_schedule_kids_and_category_reach_youtube(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    caption = "<b>Big</b> news -> soon\n" + "more " * 30
    long_first_line = "word " * 40
    hook.publish(
        request(
            clip,
            caption,
            category_id=10,
            made_for_kids=True,
            platform_options={"youtube": {"publish_at": when.isoformat()}, "tiktok": {"ignored": True}},
        )
    )
    hook.publish(request(clip, long_first_line))
    scheduled, derived = fake.state.videos
    assert scheduled["snippet"]["title"] == "bBig/b news - soon" and "<" not in scheduled["snippet"]["description"]
    assert scheduled["snippet"]["categoryId"] == "10"
    assert scheduled["status"] == {
        "privacyStatus": "private",  # publish_at without a privacy means private until then
        "selfDeclaredMadeForKids": True,
        "publishAt": when.isoformat().replace("+00:00", "Z"),
    }
    assert len(derived["snippet"]["title"]) <= 100 and derived["snippet"]["title"].endswith("word…")


def test_quota_is_counted_per_project_and_day_and_stops_calls_before_sending(fake: YouTubeServer, clip: Path) -> None:
    hook = YouTubeHook(
        credentials(fake, quota={"units_per_day": 3, "inserts_per_day": 1}, quota_project="p1"), base_url=fake.url
    )
    hook.publish(request(clip))
    with pytest.raises(QuotaSpent, match=r"daily quota of 1 videos.insert calls is used up \(1 used\)") as spent:
        hook.publish(request(clip, "another"))
    assert spent.value.retry_after == pytest.approx(until_pacific_midnight(), abs=5)
    assert "resets at midnight Pacific Time" in str(spent.value)
    hook.recent_uploads()  # channels.list + playlistItems.list: 2 units
    hook.recent_uploads()  # channels.list is remembered: 1 unit
    calls = list(fake.state.calls)
    with pytest.raises(QuotaSpent, match=r"daily quota of 3 units is used up \(3 used\)"):
        hook.recent_uploads()
    assert fake.state.calls == calls  # nothing was sent
    assert hook.quota_used() == {"inserts": 1, "units": 3}
    other_project = YouTubeHook(credentials(fake, quota_project="p2"), base_url=fake.url)
    assert other_project.quota_used() == {}


def test_pacific_midnight_is_timezone_aware() -> None:
    # 2025-03-09: clocks in Los Angeles go forward at 02:00 PST.
    assert until_pacific_midnight(datetime(2025, 3, 9, 7, 0, tzinfo=UTC)) == 3600  # 23:00 PST -> 00:00 PST
    assert until_pacific_midnight(datetime(2025, 3, 10, 6, 30, tzinfo=UTC)) == 1800  # 23:30 PDT -> 00:00 PDT
    assert pacific_day(datetime(2025, 1, 1, 7, 59, tzinfo=UTC)) == "2024-12-31"
    assert pacific_day(datetime(2025, 1, 1, 8, 0, tzinfo=UTC)) == "2025-01-01"


def test_quota_exceeded_upload_limit_and_permissions_are_clear(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    fake.state.upload_limit_reached = True
    with pytest.raises(RateLimited, match="the channel has reached its daily upload limit") as limit:
        hook.publish(request(clip))
    assert limit.value.retry_after == 24 * 3600
    fake.state.upload_limit_reached = False
    fake.state.insufficient_scope = True
    with pytest.raises(NeedsReconnect, match=r"insufficient authentication scopes.*reconnect the YouTube account"):
        hook.recent_uploads()
    fake.state.insufficient_scope = False
    fake.state.quota_exceeded = True
    with pytest.raises(RateLimited, match=r"quota is used up \(quotaExceeded\); it resets at midnight") as quota:
        hook.recent_uploads()
    assert not isinstance(quota.value, QuotaSpent)
    assert quota.value.retry_after == pytest.approx(until_pacific_midnight(), abs=5)
    sent = len(fake.state.calls)
    with pytest.raises(QuotaSpent):  # remembered: the next call is not sent
        hook.recent_uploads()
    assert len(fake.state.calls) == sent


def test_an_expired_token_is_refreshed_once_and_429_is_waited_out(
    hook: YouTubeHook, fake: YouTubeServer, clip: Path
) -> None:
    fake.state.expire_all()
    fake.state.throttle_next = 1
    result = hook.publish(request(clip))
    assert result.platform_post_id == fake.state.videos[0]["id"]
    assert hook.credentials.refresh_token is not None  # Google sends none on refresh; the old one is kept
    fake.state.expire_all()
    fake.state.refresh.clear()
    with pytest.raises(NeedsReconnect, match="refresh token was refused"):
        hook.recent_uploads()


def test_a_retry_after_a_crash_finds_the_upload_and_does_not_upload_twice(
    hook: YouTubeHook, fake: YouTubeServer, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "real.mp4", seconds=1)
    req = request(clip, "Crash test\nbody")
    fake.state.add_video("Crash test", "Crash test\nbody", published=datetime.now(UTC) - timedelta(days=3))
    first = deliver(hook, req)  # an identical but older video is not this one
    again = deliver(hook, req)  # the task crashed after the upload and runs again
    assert again == first and len(fake.state.videos) == 2 and len(fake.state.sessions) == 1
    with pytest.raises(LimitExceeded, match="youtube title is 101 characters"):
        deliver(hook, request(clip, "x", title="t" * 101))


def test_polling_reads_the_rss_feed_without_quota(hook: YouTubeHook, fake: YouTubeServer) -> None:
    old = fake.state.add_video("Old one", "from last week", published=datetime.now(UTC) - timedelta(days=7))
    fake.state.add_video("Secret", "private", privacy="private")
    new = fake.state.add_video("Tacos <3", "Tacos tonight #tacos\nrecipe below")
    items = hook.list_posts()
    assert [i.platform_post_id for i in items] == [old["id"], new["id"]]  # oldest first, public only
    taco = items[-1]
    assert taco.platform == "youtube" and taco.content_type == "video" and taco.title == "Tacos <3"
    assert taco.caption == "Tacos tonight #tacos\nrecipe below" and taco.hashtags == ["tacos"]
    assert taco.url == f"https://www.youtube.com/watch?v={new['id']}"
    assert taco.published_at is not None and taco.published_at.tzinfo is not None
    assert taco.media[0].url.endswith(f"/vi/{new['id']}/hqdefault.jpg") and taco.media[0].kind == "image"
    assert [i.platform_post_id for i in hook.list_posts(since_id=old["id"])] == [new["id"]]
    assert fake.state.calls == [] and hook.quota_used() == {}

    async def poll() -> list[str]:
        async with LimitedClient() as http:
            return [i.platform_post_id for i in await hook.fetch_posts(http, since_id=old["id"])]

    assert asyncio.run(poll()) == [new["id"]] and fake.state.calls == []


def test_polling_falls_back_to_the_uploads_playlist(hook: YouTubeHook, fake: YouTubeServer) -> None:
    fake.state.feed_down = True
    a = fake.state.add_video("First", "one", published=datetime.now(UTC) - timedelta(hours=2))
    b = fake.state.add_video("Second", "two #news")
    items = hook.list_posts()
    assert [i.platform_post_id for i in items] == [a["id"], b["id"]] and items[1].hashtags == ["news"]
    assert fake.state.calls == ["GET /youtube/v3/channels", "GET /youtube/v3/playlistItems"]

    async def poll() -> list[str]:
        async with LimitedClient() as http:
            return [i.platform_post_id for i in await hook.fetch_posts(http, since_id=a["id"])]

    assert asyncio.run(poll()) == [b["id"]] and hook.quota_used() == {"units": 3}


def test_identity_is_the_channel(fake: YouTubeServer) -> None:
    tokens = fake.state.issue()
    token_set = TokenSet(access_token=SecretStr(tokens["access_token"]))
    assert YouTubeHook.identify(fake.url, token_set) == (fake.state.channel_id, "Ana's Kitchen")


def test_stored_connections_share_the_project_quota_across_tasks(sqlite_url: str, fake: YouTubeServer) -> None:
    from kipu.store.accounts import get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.models import Connection

    with session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "t@example.test"), "t")
        ids = [upsert_connection(s, team, "youtube", f"UC{n}").id for n in range(2)]
    plan = {"quota": {"units_per_day": 2}}
    one, two = (
        YouTubeHook(Credentials(cid, fake.state.channel_id, SecretStr("x"), metadata=plan), base_url=fake.url)
        for cid in ids
    )
    one.spend("channels.list")
    two.spend("playlistItems.list")  # another connection, another task: the same project's count
    with pytest.raises(QuotaSpent, match=r"2 units is used up \(2 used\)"):
        one.spend("videos.list")
    assert one.quota_used() == {"units": 2} and isinstance(one.ledger(), ConnectionLedger)
    with session_scope() as s:
        stored = s.get(Connection, ids[0]).metadata_["youtube_quota"]  # type: ignore[union-attr]
    assert stored == {"project": "default", "day": pacific_day(), "used": {"units": 1}}


def test_the_upload_endpoint_is_the_documented_one(fake: YouTubeServer, hook: YouTubeHook, clip: Path) -> None:
    hook.publish(request(clip))
    assert fake.state.calls == [f"POST {UPLOAD}"]  # the PUTs go to the session URI, no other call is made
