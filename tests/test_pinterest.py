"""The Pinterest hook against a local fake of API v5."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kipu.hooks.base import PublishRequest, Rejected, Transient
from kipu.hooks.platform import Credentials
from kipu.platforms.pinterest.hook import PinterestHook
from kipu.specs.items import MediaRef
from pydantic import SecretStr

from tests.conftest import REPO
from tests.fakes.pinterest_server import PinterestServer

IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"
VIDEO = REPO / "include" / "demo" / "media" / "tour.mp4"


@pytest.fixture
def fake() -> Iterator[PinterestServer]:
    with PinterestServer() as server:
        yield server


@pytest.fixture
def hook(fake: PinterestServer) -> PinterestHook:
    token = fake.state.issue()["access_token"]
    creds = Credentials(None, "p-77", SecretStr(token), username="ana_pins", metadata={"board_id": "board-1"})
    return PinterestHook(creds, base_url=fake.url)


def request(caption: str, media: list[MediaRef], **kw: object) -> PublishRequest:
    return PublishRequest(
        idempotency_key=str(uuid.uuid4()),
        caption=caption,
        media=media,
        created_at=datetime.now(UTC),
        **kw,  # type: ignore[arg-type]
    )


def test_image_pins_from_a_file_and_a_url(hook: PinterestHook, fake: PinterestServer) -> None:
    local = hook.publish(
        request("Sunrise loaf", [MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="Bread")], title="Loaf")
    )
    remote = hook.publish(request("From the web", [MediaRef(url="https://cdn.example/p.jpg", mime_type="image/jpeg")]))
    first, second = fake.state.pins
    assert first["media_source"]["source_type"] == "image_base64" and first["alt_text"] == "Bread"
    assert base64.b64decode(first["media_source"]["data"]) == IMAGE.read_bytes()
    assert second["media_source"] == {"source_type": "image_url", "url": "https://cdn.example/p.jpg"}
    assert local.url == f"https://www.pinterest.com/pin/{first['id']}/" and remote.platform_post_id == second["id"]
    assert [p.caption for p in hook.list_posts()] == ["Sunrise loaf", "From the web"]


def test_video_is_registered_uploaded_polled_and_pinned_with_a_cover(
    hook: PinterestHook, fake: PinterestServer
) -> None:
    cover = MediaRef(url="https://cdn.example/cover.jpg", mime_type="image/jpeg")
    hook.publish(request("Market tour", [MediaRef(url=str(VIDEO), mime_type="video/mp4"), cover]))
    (pin,) = fake.state.pins
    source = pin["media_source"]
    assert source["source_type"] == "video_id" and source["cover_image_url"] == cover.url
    assert fake.state.media[source["media_id"]]["bytes"] == VIDEO.read_bytes()


def test_video_processing_is_a_bounded_wait(hook: PinterestHook, fake: PinterestServer) -> None:
    fake.state.stuck_video = True
    hook.processing_timeout = 1.5
    with pytest.raises(Transient, match=r"still processing after 1\.5s"):
        hook.publish(request("stuck", [MediaRef(url=str(VIDEO), mime_type="video/mp4")]))
    assert fake.state.pins == []


def test_field_limits_are_checked_before_any_call(hook: PinterestHook) -> None:
    img = [MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="a" * 501)]
    problems = hook.check(request("d" * 501, img, title="t" * 101, link="https://e.x/" + "l" * 2040))
    assert problems == [
        "pinterest title is 101 characters, over the limit of 100",
        "pinterest description is 501 characters, over the limit of 500",
        "pinterest link is 2052 characters, over the limit of 2048",
        "pinterest alt_text is 501 characters, over the limit of 500",
    ]
    assert hook.check(request("text only", [])) == ["pinterest needs an image or a video for a pin"]


def test_a_missing_board_is_a_clear_error_and_5xx_is_retried_once_only(
    hook: PinterestHook, fake: PinterestServer
) -> None:
    hook.credentials = Credentials(None, "p-77", hook.credentials.access_token, metadata={})
    with pytest.raises(Rejected, match="no board: set board_id"):
        hook.publish(request("no board", [MediaRef(url=str(IMAGE), mime_type="image/png")]))
    fake.state.fail_next = 1
    req = request("after a 500", [MediaRef(url=str(IMAGE), mime_type="image/png")], options={"board_id": "board-1"})
    result = hook.publish(req)
    assert len(fake.state.pins) == 1 and hook.find_published(req) == result


def test_expired_token_429_and_rejected_content(
    hook: PinterestHook, fake: PinterestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    app = {"conn_type": "kipu_pinterest_app", "login": "pin-client", "password": "pin-secret"}
    app["extra"] = {"redirect_uri": "https://kipu.example/cb/pinterest", "token_url": f"{fake.url}/v5/oauth/token"}
    monkeypatch.setenv("AIRFLOW_CONN_KIPU_PINTEREST_APP", json.dumps(app))
    refresh = fake.state.issue()["refresh_token"]
    for token in fake.state.access:
        fake.state.access[token] = 0
    hook.credentials = Credentials(
        None, "p-77", hook.credentials.access_token, SecretStr(refresh), metadata={"board_id": "board-1"}
    )
    img = [MediaRef(url=str(IMAGE), mime_type="image/png")]
    fake.state.throttle_next = 1
    assert hook.publish(request("after refresh and a 429", img)).platform_post_id == fake.state.pins[-1]["id"]
    with pytest.raises(Rejected, match="Board not found"):  # the platform's own words are kept
        hook.publish(request("to a deleted board", img, options={"board_id": "gone"}))


def test_video_duration_is_probed_before_any_call(hook: PinterestHook, fake: PinterestServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.videos import make_video

    short = make_video(tmp_path / "short.mp4", seconds=2)
    problems = hook.check(request("too short", [MediaRef(url=str(short), mime_type="video/mp4")]))
    assert problems == ["pinterest video is 2.0s long, under the minimum of 4s"]
    assert fake.state.media == {}
