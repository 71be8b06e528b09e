"""The Threads hook against a local fake of the Threads API: TEXT, IMAGE and VIDEO containers, the 500-character
limit, threads_publishing_limit, bounded processing, exactly-once retries, token refresh and polling."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kipu.hooks.base import NeedsReconnect, PublishRequest, RateLimited, Rejected, Transient
from kipu.hooks.platform import Credentials
from kipu.platforms.threads.hook import ThreadsHook
from kipu.publishing import LimitExceeded, deliver
from kipu.specs.items import MediaRef
from pydantic import SecretStr

from tests.conftest import REPO
from tests.fakes.meta_server import MetaServer
from tests.videos import make_video

IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"


@pytest.fixture
def fake() -> Iterator[MetaServer]:
    with MetaServer() as server:
        yield server


def make_hook(fake: MetaServer, token: str | None = None, **kw: object) -> ThreadsHook:
    creds = Credentials(
        None, fake.state.threads_user, SecretStr(token or fake.state.issue("threads")), username="ana.cooks", **kw
    )  # type: ignore[arg-type]
    hook = ThreadsHook(creds, base_url=fake.url)
    hook.poll_interval, hook.processing_timeout = 0.02, 2.0
    return hook


@pytest.fixture
def hook(fake: MetaServer) -> ThreadsHook:
    return make_hook(fake)


def request(caption: str, media: list[MediaRef] | None = None, **kw: object) -> PublishRequest:
    kw.setdefault("created_at", datetime.now(UTC))
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, media=media or [], **kw)  # type: ignore[arg-type]


def test_text_image_and_video_threads(hook: ThreadsHook, fake: MetaServer, tmp_path: Path) -> None:
    text = hook.publish(request("Fresh pasta tonight", link="https://example.com/pasta"))
    img = MediaRef(url=fake.serve("p.png", IMAGE.read_bytes()), mime_type="image/png", alt_text="Pasta on a plate")
    hook.publish(request("With a picture", [img]))
    clip = make_video(tmp_path / "clip.mp4", seconds=3)
    fake.state.video_polls = 2
    hook.publish(
        request("With a clip", [MediaRef(url=fake.serve("clip.mp4", clip.read_bytes()), mime_type="video/mp4")])
    )
    posts = fake.state.posts("threads")
    params = [fake.state.containers[p["container"]]["params"] for p in posts]
    assert [p["media_type"] for p in params] == ["TEXT", "IMAGE", "VIDEO"]
    assert params[0]["link_attachment"] == "https://example.com/pasta" and params[1]["alt_text"] == "Pasta on a plate"
    assert fake.state.containers[posts[2]["container"]]["polls"] == 3  # two IN_PROGRESS, then FINISHED
    assert text.platform_post_id == posts[0]["id"] and text.url == posts[0]["permalink"]
    assert [p["media_type"] for p in posts] == ["TEXT_POST", "IMAGE", "VIDEO"]


def test_limits_are_refused_before_any_call(hook: ThreadsHook, fake: MetaServer, tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded, match="threads caption is 501 characters, over the limit of 500"):
        deliver(hook, request("a" * 501))
    long_clip = make_video(tmp_path / "long.mp4", seconds=301, fps=1)
    with pytest.raises(LimitExceeded, match=r"threads video is 30\d\.\ds long, over the limit of 300s"):
        deliver(hook, request("long", [MediaRef(url=str(long_clip), mime_type="video/mp4")]))
    two = [MediaRef(url=f"https://cdn.example/{i}.jpg", mime_type="image/jpeg") for i in range(2)]
    assert hook.check(request("two", two)) == ["threads takes one image or video per post, got 2"]
    assert hook.check(request("  ")) == ["threads needs text, an image or a video"]
    assert {path for _, path in fake.state.requests} <= {f"/v1.0/{fake.state.threads_user}/threads"}
    assert fake.state.containers == {}


def test_a_local_file_without_a_media_bucket_is_a_clear_error(
    hook: ThreadsHook, fake: MetaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_MEDIA_S3_BUCKET", raising=False)
    with pytest.raises(Rejected, match=r"threads fetches media from a public URL.*set KIPU_MEDIA_S3_BUCKET"):
        hook.publish(request("local", [MediaRef(url=str(IMAGE), mime_type="image/png")]))
    assert fake.state.requests == []


def test_a_video_meta_cannot_download_is_an_error_with_metas_reason(hook: ThreadsHook, fake: MetaServer) -> None:
    with pytest.raises(Rejected, match=r"the video container \d+ failed processing: FAILED_DOWNLOADING_VIDEO"):
        hook.publish(request("gone", [MediaRef(url="https://cdn.example/gone.mp4", mime_type="video/mp4")]))
    assert fake.state.posts("threads") == []


def test_expired_and_never_finishing_containers(hook: ThreadsHook, fake: MetaServer) -> None:
    fake.state.outcome = "EXPIRED"
    with pytest.raises(Rejected, match=r"the text container \d+ expired"):
        hook.publish(request("expired"))
    fake.state.outcome = "STUCK"
    hook.processing_timeout = 0.4
    started = time.monotonic()
    with pytest.raises(Transient, match=r"still IN_PROGRESS after 0\.4s; Kipu tries again later"):
        hook.publish(request("stuck"))
    assert time.monotonic() - started < 3 and fake.state.posts("threads") == []


def test_the_publishing_limit_is_checked_first(hook: ThreadsHook, fake: MetaServer) -> None:
    fake.state.quota_usage["threads"] = 250
    with pytest.raises(RateLimited, match="published 250 of its 250 API posts allowed in 24 hours"):
        hook.publish(request("one too many"))
    assert fake.state.containers == {}
    fake.state.quota_usage["threads"] = 249
    fake.state.throttle, fake.state.throttle_next = "http429", 1  # a 429 on the way is waited out
    hook.publish(request("the last one today"))
    assert len(fake.state.posts("threads")) == 1


def test_a_retry_after_a_crash_finds_the_thread(hook: ThreadsHook, fake: MetaServer) -> None:
    req = request("Exactly once on Threads")
    first = deliver(hook, req)
    assert deliver(make_hook(fake), req) == first and len(fake.state.posts("threads")) == 1
    fake.state.lose_publish_response = 1
    lost = hook.publish(request("Answer lost"))
    assert lost.platform_post_id == fake.state.posts("threads")[-1]["id"] and len(fake.state.posts("threads")) == 2


def test_token_refresh_before_expiry_and_reconnect_after_it(fake: MetaServer) -> None:
    old = fake.state.issue("threads")
    hook = make_hook(fake, old, expires_at=datetime.now(UTC) + timedelta(hours=3))
    hook.publish(request("refreshed first"))
    new = hook.credentials.access_token
    assert new is not None and new.get_secret_value() != old and fake.state.refreshes == 1
    assert fake.state.posts("threads")[0]["token"] == hashlib.sha256(new.get_secret_value().encode()).hexdigest()
    fake.state.expire(new.get_secret_value())
    with pytest.raises(NeedsReconnect, match="threads: the access token could not be refreshed") as err:
        hook.publish(request("too late"))
    assert new.get_secret_value() not in str(err.value) and len(fake.state.posts("threads")) == 1


def test_threads_are_listed_oldest_first(hook: ThreadsHook) -> None:
    for text in ("first", "second", "third"):
        hook.publish(request(text))
    items = hook.list_posts()
    assert [i.caption for i in items] == ["first", "second", "third"]
    assert items[0].content_type == "text" and items[0].url and items[0].published_at is not None
    assert [i.caption for i in hook.list_posts(since_id=items[1].platform_post_id)] == ["third"]
