"""The Instagram hook and the shared Graph base against a local fake of Meta's Graph API: containers, quotas,
exactly-once retries, limits before any call, token expiry and refresh, and Graph error mapping."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kipu.hooks.base import AuthExpired, NeedsReconnect, PublishRequest, RateLimited, Rejected, Transient
from kipu.hooks.http import LimitedClient
from kipu.hooks.platform import Credentials, TokenSet, with_tokens
from kipu.platforms.instagram.hook import InstagramHook
from kipu.platforms.meta.graph import GraphError
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


def make_hook(fake: MetaServer, token: str | None = None, **kw: object) -> InstagramHook:
    creds = Credentials(
        None, fake.state.ig_user, SecretStr(token or fake.state.issue("instagram")), username="ana.cooks", **kw
    )  # type: ignore[arg-type]
    hook = InstagramHook(creds, base_url=fake.url)
    hook.poll_interval, hook.processing_timeout = 0.02, 2.0
    return hook


@pytest.fixture
def hook(fake: MetaServer) -> InstagramHook:
    return make_hook(fake)


def request(caption: str, media: list[MediaRef], **kw: object) -> PublishRequest:
    kw.setdefault("created_at", datetime.now(UTC))
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, media=media, **kw)  # type: ignore[arg-type]


def image(fake: MetaServer, name: str = "sunrise.png", alt: str | None = None) -> MediaRef:
    return MediaRef(url=fake.serve(name, IMAGE.read_bytes()), mime_type="image/png", alt_text=alt)


def video(fake: MetaServer, tmp_path: Path, seconds: float = 4.0, name: str = "reel.mp4") -> MediaRef:
    path = make_video(tmp_path / name, seconds=seconds)
    return MediaRef(url=fake.serve(name, path.read_bytes()), mime_type="video/mp4")


def test_image_with_alt_text_is_a_container_polled_then_published(hook: InstagramHook, fake: MetaServer) -> None:
    ref = image(fake, alt="A loaf of sourdough at sunrise")
    result = hook.publish(request("Sunrise loaf #bread", [ref]))
    (post,) = fake.state.posts("instagram")
    container = fake.state.containers[post["container"]]
    assert container["params"]["image_url"] == ref.url and container["bytes"] == IMAGE.stat().st_size
    assert container["params"]["alt_text"] == "A loaf of sourdough at sunrise"
    assert result.platform_post_id == post["id"] and result.url == post["permalink"]
    assert post["media_type"] == "IMAGE" and post["caption"] == "Sunrise loaf #bread"
    assert fake.state.quota_usage["instagram"] == 1


def test_a_reel_is_polled_until_finished(hook: InstagramHook, fake: MetaServer, tmp_path: Path) -> None:
    fake.state.video_polls = 3
    result = hook.publish(request("Market tour", [video(fake, tmp_path)], options={"share_to_feed": True}))
    (post,) = fake.state.posts("instagram")
    container = fake.state.containers[post["container"]]
    assert container["params"]["media_type"] == "REELS" and container["params"]["share_to_feed"] == "true"
    assert "alt_text" not in container["params"] and container["polls"] == 4  # 3 in progress, then FINISHED
    assert post["media_type"] == "VIDEO" and result.platform_post_id == post["id"]


def test_a_carousel_creates_children_then_the_parent(hook: InstagramHook, fake: MetaServer, tmp_path: Path) -> None:
    media = [image(fake, f"p{i}.png", alt=f"photo {i}") for i in range(3)] + [video(fake, tmp_path)]
    hook.publish(request("Three loaves and a clip", media))
    (post,) = fake.state.posts("instagram")
    parent = fake.state.containers[post["container"]]["params"]
    children = [fake.state.containers[c] for c in parent["children"].split(",")]
    assert parent["media_type"] == "CAROUSEL" and post["media_type"] == "CAROUSEL_ALBUM" and len(children) == 4
    assert all(c["params"]["is_carousel_item"] == "true" and c["status"] == "FINISHED" for c in children)
    assert [c["params"].get("alt_text") for c in children] == ["photo 0", "photo 1", "photo 2", None]
    assert children[3]["params"]["media_type"] == "VIDEO"


def test_a_first_comment_follows_the_post(hook: InstagramHook, fake: MetaServer) -> None:
    result = hook.publish(request("Recipe below", [image(fake)], options={"first_comment": "Flour, water, salt."}))
    assert fake.state.comments == [{"media_id": result.platform_post_id, "message": "Flour, water, salt."}]


def test_limits_are_refused_before_any_call(hook: InstagramHook, fake: MetaServer, tmp_path: Path) -> None:
    eleven = [MediaRef(url=f"https://cdn.example/{i}.jpg", mime_type="image/jpeg") for i in range(11)]
    with pytest.raises(LimitExceeded, match="instagram carousel holds at most 10 items, got 11"):
        deliver(hook, request("too many", eleven))
    long_reel = make_video(tmp_path / "long.mp4", seconds=901, fps=1)
    with pytest.raises(LimitExceeded, match=r"instagram video is 90\d\.\ds long, over the limit of 900s"):
        deliver(hook, request("a long one", [MediaRef(url=str(long_reel), mime_type="video/mp4")]))
    short = make_video(tmp_path / "short.mp4", seconds=2)
    with pytest.raises(Rejected, match="under the minimum of 3s"):
        hook.publish(request("a short one", [MediaRef(url=str(short), mime_type="video/mp4")]))
    caption = " ".join(f"#tag{i}" for i in range(31)) + " " + " ".join(f"@friend{i}" for i in range(21))
    assert hook.check(request(caption + " " + "x" * 2200, [eleven[0]])) == [
        f"instagram caption is {len(caption) + 2201} characters, over the limit of 2200",
        "instagram caption has 31 hashtags, over the limit of 30",
        "instagram caption has 21 @mentions, over the limit of 20",
    ]
    assert hook.check(request("text only", [])) == ["instagram needs an image or a video: it has no text-only posts"]
    # only the find_published reads of the two deliveries reached Meta: nothing was created
    assert {path for _, path in fake.state.requests} == {"/v24.0/me/media"} and fake.state.containers == {}


def test_a_local_file_without_a_media_bucket_is_a_clear_error(
    hook: InstagramHook, fake: MetaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_MEDIA_S3_BUCKET", raising=False)
    with pytest.raises(Rejected, match=r"fetches media from a public URL.*set KIPU_MEDIA_S3_BUCKET"):
        hook.publish(request("local", [MediaRef(url=str(IMAGE), mime_type="image/png")]))
    assert fake.state.requests == []


@pytest.mark.parametrize(
    "outcome,message",
    [
        ("ERROR", r"the image container \d+ failed processing: Error: The image format is not supported"),
        ("EXPIRED", r"the image container \d+ expired \(it was not published within 24 hours\)"),
    ],
)
def test_error_and_expired_containers_are_clear_refusals(
    hook: InstagramHook, fake: MetaServer, outcome: str, message: str
) -> None:
    fake.state.outcome, fake.state.image_polls = outcome, 1
    fake.state.error_message = "The image format is not supported"
    with pytest.raises(Rejected, match=message):
        hook.publish(request("never", [image(fake)]))
    assert fake.state.posts("instagram") == []


def test_a_container_that_never_finishes_is_a_bounded_wait(
    hook: InstagramHook, fake: MetaServer, tmp_path: Path
) -> None:
    fake.state.outcome = "STUCK"
    hook.processing_timeout = 0.5
    started = time.monotonic()
    with pytest.raises(Transient, match=r"the Reel container \d+ is still IN_PROGRESS after 0\.5s"):
        hook.publish(request("stuck", [video(fake, tmp_path)]))
    assert time.monotonic() - started < 3 and fake.state.posts("instagram") == []


def test_media_meta_cannot_download_fails_the_container(hook: InstagramHook, fake: MetaServer) -> None:
    with pytest.raises(Rejected, match="failed processing: Error: Media download has failed"):
        hook.publish(request("unreachable", [MediaRef(url="https://cdn.example/gone.jpg", mime_type="image/jpeg")]))


def test_a_used_up_publishing_limit_is_refused_before_any_container(hook: InstagramHook, fake: MetaServer) -> None:
    fake.state.quota_usage["instagram"] = 100
    with pytest.raises(RateLimited, match="published 100 of its 100 API posts allowed in 24 hours") as err:
        hook.publish(request("one too many", [image(fake)]))
    assert err.value.retry_after == 3600 and fake.state.containers == {}


@pytest.mark.parametrize("kind", ["http429", "code4"])
def test_throttling_is_waited_out_and_retried(hook: InstagramHook, fake: MetaServer, kind: str) -> None:
    fake.state.throttle, fake.state.throttle_next = kind, 1
    hook.publish(request("after a throttle", [image(fake)]))
    assert len(fake.state.posts("instagram")) == 1


def test_a_retry_after_a_crash_finds_the_post_instead_of_posting_again(hook: InstagramHook, fake: MetaServer) -> None:
    req = request("Exactly once", [image(fake)])
    first = deliver(hook, req)
    # the worker died after media_publish, before Kipu recorded it: the retry asks first
    again = deliver(make_hook(fake), req)
    assert again.platform_post_id == first.platform_post_id and len(fake.state.posts("instagram")) == 1
    # an ambiguous failure: the publish landed but its answer was lost; the retried publish is refused and found
    fake.state.lose_publish_response = 1
    lost = hook.publish(request("Answer lost", [image(fake)]))
    assert lost.platform_post_id == fake.state.posts("instagram")[-1]["id"]
    assert len(fake.state.posts("instagram")) == 2
    # an older post with the same caption is not taken for this one
    later = request("Exactly once", [image(fake)], created_at=datetime.now(UTC) + timedelta(minutes=5))
    assert hook.find_published(later) is None


def counting_refresh(calls: list[int]) -> Callable[[Credentials, Callable[[Credentials], TokenSet]], Credentials]:
    def refresh(stale: Credentials, do: Callable[[Credentials], TokenSet]) -> Credentials:
        calls.append(1)
        return with_tokens(stale, do(stale))

    return refresh


def test_an_expiring_token_is_refreshed_before_use(fake: MetaServer) -> None:
    old = fake.state.issue("instagram")
    calls: list[int] = []
    hook = make_hook(fake, old, expires_at=datetime.now(UTC) + timedelta(hours=2))
    hook._on_refresh = counting_refresh(calls)
    hook.publish(request("with a fresh token", [image(fake)]))
    new = hook.credentials.access_token
    assert calls == [1] and fake.state.refreshes == 1 and new is not None and new.get_secret_value() != old
    assert hook.credentials.expires_at and hook.credentials.expires_at > datetime.now(UTC) + timedelta(days=59)
    (post,) = fake.state.posts("instagram")
    assert post["token"] == hashlib.sha256(new.get_secret_value().encode()).hexdigest()


def test_an_expired_token_flags_the_connection_for_reconnect(fake: MetaServer) -> None:
    token = fake.state.issue("instagram")
    fake.state.expire(token)
    calls: list[int] = []
    hook = make_hook(fake, token)
    hook._on_refresh = counting_refresh(calls)
    with pytest.raises(NeedsReconnect, match="Meta cannot refresh an expired long-lived token") as err:
        hook.publish(request("too late", [image(fake)]))
    assert calls == [1] and fake.state.refreshes == 0 and token not in str(err.value)
    assert fake.state.containers == {}


def test_a_changed_password_needs_reconnect_without_a_refresh(fake: MetaServer) -> None:
    token = fake.state.issue("instagram")
    fake.state.tokens[token].invalid_subcode = 460
    calls: list[int] = []
    hook = make_hook(fake, token)
    hook._on_refresh = counting_refresh(calls)
    with pytest.raises(NeedsReconnect, match="the account password was changed; reconnect the account"):
        hook.publish(request("after a password change", [image(fake)]))
    assert calls == []


def test_recent_media_are_listed_oldest_first(hook: InstagramHook, fake: MetaServer) -> None:
    for caption in ("one", "two", "three"):
        hook.publish(request(caption, [image(fake)]))
    items = hook.list_posts()
    assert [i.caption for i in items] == ["one", "two", "three"] and items[0].content_type == "image"
    assert items[0].published_at is not None and items[0].url and items[0].media[0].url.endswith("/media/sunrise.png")
    assert [i.caption for i in hook.list_posts(since_id=items[0].platform_post_id)] == ["two", "three"]

    async def poll() -> list[str]:
        async with LimitedClient() as http:
            return [i.caption for i in await hook.fetch_posts(http)]

    assert asyncio.run(poll()) == ["one", "two", "three"]


@pytest.fixture
def bare() -> InstagramHook:
    """A hook for mapping responses: no server needed."""
    return InstagramHook(Credentials(None, "17841400000000001", SecretStr("unused")))


def graph_response(status: int, error: dict[str, object], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": error}, headers=headers)


@pytest.mark.parametrize(
    "status,error,headers,expected,retry",
    [
        (400, {"code": 190, "error_subcode": 463, "message": "Session has expired"}, None, AuthExpired, None),
        (400, {"code": 190, "message": "Invalid OAuth access token"}, None, AuthExpired, None),
        (400, {"code": 190, "error_subcode": 458, "message": "App not installed"}, None, NeedsReconnect, None),
        (403, {"code": 200, "message": "(#200) Permissions error"}, None, NeedsReconnect, None),
        (400, {"code": 4, "message": "(#4) Application request limit reached"}, None, RateLimited, None),
        (400, {"code": 17, "message": "User request limit reached"}, {"Retry-After": "7"}, RateLimited, 7.0),
        (400, {"code": 32, "message": "Page request limit reached"}, None, RateLimited, None),
        (400, {"code": 613, "message": "Calls exceeded the rate"}, None, RateLimited, None),
        (
            400,
            {"code": 80002, "message": "Too many calls to this Instagram account"},
            {"X-Business-Use-Case-Usage": '{"1784": [{"type": "instagram", "estimated_time_to_regain_access": 5}]}'},
            RateLimited,
            300.0,
        ),
        (400, {"code": 80008, "message": "Too many calls"}, None, RateLimited, None),
        (429, {"message": "Too many requests"}, None, RateLimited, None),
        (400, {"code": 9, "error_subcode": 2207042, "message": "Limit"}, None, RateLimited, 3600.0),
        (400, {"code": 1, "message": "An unknown error occurred", "is_transient": True}, None, Transient, None),
        (503, {"code": 2, "message": "Service temporarily unavailable"}, None, Transient, None),
        (400, {"code": -2, "error_subcode": 2207003, "message": "Timeout"}, None, Transient, None),
        (400, {"code": 4, "error_subcode": 2207051, "message": "Spam"}, None, Rejected, None),
        (400, {"code": 100, "message": "Invalid parameter"}, None, Rejected, None),
    ],
)
def test_graph_errors_map_onto_the_taxonomy(
    bare: InstagramHook,
    status: int,
    error: dict[str, object],
    headers: dict[str, str] | None,
    expected: type[Exception],
    retry: float | None,
) -> None:
    mapped = bare.map_error(graph_response(status, error, headers))
    assert type(mapped) is expected
    if isinstance(mapped, RateLimited) and retry is not None:
        assert mapped.retry_after == retry


def test_media_errors_keep_metas_words(bare: InstagramHook) -> None:
    body = {
        "code": 36003,
        "error_subcode": 2207009,
        "message": "The submitted image with aspect ratio ('719/194',) cannot be published.",
        "error_user_msg": "The aspect ratio is not supported.",
    }
    mapped = bare.map_error(graph_response(400, body))
    assert isinstance(mapped, Rejected)
    assert str(mapped) == "instagram: The aspect ratio is not supported. (Graph error 36003/2207009)"
    parsed = GraphError.parse({"error": {"code": 9007, "error_subcode": 2207026, "message": "Unsupported video"}})
    assert (
        parsed is not None and parsed.describe("instagram") == "instagram: Unsupported video (Graph error 9007/2207026)"
    )
