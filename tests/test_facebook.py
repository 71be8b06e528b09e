"""The Facebook Page hook against a local fake of the Graph API: feed posts, photos, Reels (start → streamed rupload
→ finish → status), the Page-token check, renewing a Page token, exactly-once retries and polling."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kipu.hooks.base import NeedsReconnect, PublishRequest, Rejected
from kipu.hooks.media import MediaFile
from kipu.hooks.platform import Credentials
from kipu.platforms.facebook import hook as facebook
from kipu.platforms.facebook.hook import FacebookPageHook
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


def make_hook(fake: MetaServer, token: str | None = None, refresh: str | None = None) -> FacebookPageHook:
    creds = Credentials(
        None,
        fake.state.page_id,
        SecretStr(token or fake.state.page_token()),
        SecretStr(refresh) if refresh else None,
        username=fake.state.page_name,
    )
    hook = FacebookPageHook(creds, base_url=fake.url)
    hook.poll_interval, hook.processing_timeout = 0.02, 2.0
    return hook


@pytest.fixture
def hook(fake: MetaServer) -> FacebookPageHook:
    return make_hook(fake)


def request(caption: str, media: list[MediaRef] | None = None, **kw: object) -> PublishRequest:
    kw.setdefault("created_at", datetime.now(UTC))
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, media=media or [], **kw)  # type: ignore[arg-type]


def photo(fake: MetaServer, name: str = "sunrise.png") -> MediaRef:
    return MediaRef(url=fake.serve(name, IMAGE.read_bytes()), mime_type="image/png")


@pytest.fixture
def reel(tmp_path: Path) -> Path:
    return make_video(tmp_path / "reel.mp4", seconds=5, width=144, height=256)


def test_feed_posts_and_photos(hook: FacebookPageHook, fake: MetaServer) -> None:
    text = hook.publish(request("Open until 10 tonight", link="https://example.com/menu"))
    one = hook.publish(request("Today's loaf", [photo(fake)]))
    many = hook.publish(request("Three loaves", [photo(fake, f"l{i}.png") for i in range(3)]))
    feed, single, album = fake.state.posts("facebook")
    assert (feed["message"], feed["link"], feed["media_type"]) == (
        "Open until 10 tonight",
        "https://example.com/menu",
        "STATUS",
    )
    assert text.platform_post_id == feed["id"] and text.url == f"https://www.facebook.com/{feed['id']}"
    assert single["media_type"] == "PHOTO" and one.platform_post_id == single["id"]
    assert album["media_type"] == "PHOTOS" and len(album["photos"]) == 3 and many.platform_post_id == album["id"]
    assert all(p["bytes"] == IMAGE.stat().st_size for p in fake.state.photos.values())  # Meta fetched each URL
    assert [i.caption for i in hook.list_posts()] == ["Open until 10 tonight", "Today's loaf", "Three loaves"]


def test_a_reel_is_streamed_to_rupload_then_finished_and_polled(
    hook: FacebookPageHook, fake: MetaServer, reel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(facebook, "CHUNK", 4096)
    seen: list[int] = []
    chunks = MediaFile.chunks

    def spy(self: MediaFile, chunk_size: int = 4096, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        for piece in chunks(self, chunk_size, start, end):
            seen.append(len(piece))
            yield piece

    monkeypatch.setattr(MediaFile, "chunks", spy)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the video was read whole"))
    monkeypatch.setattr(MediaFile, "read_range", lambda *a: pytest.fail("the video was read whole"))
    fake.state.reel_polls = 2
    result = hook.publish(request("Knife skills in 5 s #reels", [MediaRef(url=str(reel), mime_type="video/mp4")]))
    size = reel.stat().st_size
    (upload,) = fake.state.uploads
    assert upload == {"offset": 0, "file_size": size, "bytes": size, "length": str(size)}
    assert len(seen) > 1 and max(seen) <= 4096 and sum(seen) == size  # streamed in pieces
    (video_id,) = fake.state.videos
    assert fake.state.videos[video_id]["sha256"] == hashlib.sha256(open(reel, "rb").read()).hexdigest()  # noqa: SIM115
    assert result.platform_post_id == video_id and result.url == f"https://www.facebook.com/reel/{video_id}"
    assert not result.awaiting and fake.state.posts("facebook")[0]["description"] == "Knife skills in 5 s #reels"


def test_a_broken_upload_resumes_from_metas_offset(hook: FacebookPageHook, fake: MetaServer, reel: Path) -> None:
    fake.state.upload_break_at = 1000
    hook.publish(request("resumed", [MediaRef(url=str(reel), mime_type="video/mp4")]))
    size = reel.stat().st_size
    assert [(u["offset"], u["file_size"]) for u in fake.state.uploads] == [(0, size), (1000, size)]
    assert fake.state.uploads[1]["bytes"] == size - 1000
    (video,) = fake.state.videos.values()
    assert video["sha256"] == hashlib.sha256(reel.read_bytes()).hexdigest()


def test_a_rejected_upload_and_a_failed_reel_are_clear_errors(
    hook: FacebookPageHook, fake: MetaServer, reel: Path
) -> None:
    fake.state.upload_reject = True
    with pytest.raises(Rejected, match="facebook: the Reel upload was refused: The video file is corrupt"):
        hook.publish(request("corrupt", [MediaRef(url=str(reel), mime_type="video/mp4")]))
    assert fake.state.posts("facebook") == []
    fake.state.upload_reject, fake.state.reel_outcome = False, "error"
    with pytest.raises(Rejected, match=r"Reel \d+ failed processing: Video too short"):
        hook.publish(request("broken", [MediaRef(url=str(reel), mime_type="video/mp4")]))


def test_a_reel_still_processing_is_recorded_as_awaiting_then_settled(
    hook: FacebookPageHook, fake: MetaServer, reel: Path
) -> None:
    fake.state.reel_outcome = "stuck"
    hook.processing_timeout = 0.3
    req = request("slow to process", [MediaRef(url=str(reel), mime_type="video/mp4")])
    pending = hook.publish(req)
    assert pending.awaiting and pending.platform_post_id is None and pending.publish_ref in fake.state.videos
    later = req.model_copy(update={"publish_ref": pending.publish_ref})
    assert hook.find_published(later) == pending  # still processing
    fake.state.reel_outcome = "ready"
    final = hook.find_published(later)
    assert final is not None and final.platform_post_id == pending.publish_ref and not final.awaiting


def test_reel_length_is_checked_before_any_call(hook: FacebookPageHook, fake: MetaServer, tmp_path: Path) -> None:
    long = make_video(tmp_path / "long.mp4", seconds=91, fps=2)
    with pytest.raises(LimitExceeded, match=r"facebook video is 9\d\.\ds long, over the limit of 90s"):
        deliver(hook, request("long", [MediaRef(url=str(long), mime_type="video/mp4")]))
    short = make_video(tmp_path / "short.mp4", seconds=2)
    with pytest.raises(Rejected, match=r"under the minimum of 3s"):
        hook.publish(request("short", [MediaRef(url=str(short), mime_type="video/mp4")]))
    mixed = [MediaRef(url=str(short), mime_type="video/mp4"), MediaRef(url=str(IMAGE), mime_type="image/png")]
    assert "facebook publishes either photos or one Reel per post, not both" in hook.check(request("mixed", mixed))
    assert fake.state.videos == {} and fake.state.uploads == []


def test_a_user_token_stored_in_place_of_the_page_token_needs_reconnect(fake: MetaServer) -> None:
    hook = make_hook(fake, fake.state.user_token())
    with pytest.raises(NeedsReconnect, match="a user token was stored instead of a page token"):
        deliver(hook, request("from the wrong token"))
    assert fake.state.posts("facebook") == []


def test_an_expired_page_token_is_renewed_from_the_user_token(fake: MetaServer) -> None:
    page = fake.state.page_token()
    fake.state.expire(page)
    hook = make_hook(fake, page, refresh=fake.state.user_token())
    hook.publish(request("after renewing the page token"))
    new = hook.credentials.access_token
    assert new is not None and new.get_secret_value() != page
    (post,) = fake.state.posts("facebook")
    assert post["token"] == hashlib.sha256(new.get_secret_value().encode()).hexdigest()
    stale = fake.state.page_token()
    fake.state.expire(stale)
    with pytest.raises(NeedsReconnect, match="no user token is stored to renew it; reconnect the page") as err:
        make_hook(fake, stale).publish(request("no way to renew"))
    assert stale not in str(err.value)


def test_exactly_once_after_a_crash_or_a_lost_answer(hook: FacebookPageHook, fake: MetaServer) -> None:
    req = request("Exactly once on the Page")
    first = deliver(hook, req)
    assert deliver(make_hook(fake), req).platform_post_id == first.platform_post_id
    fake.state.lose_publish_response = 1  # the post landed; the answer was a 500
    lost = hook.publish(request("Answer lost"))
    assert lost.platform_post_id == fake.state.posts("facebook")[-1]["id"] and len(fake.state.posts("facebook")) == 2


def test_throttling_with_usage_headers_is_retried(hook: FacebookPageHook, fake: MetaServer) -> None:
    fake.state.throttle, fake.state.throttle_next = "code4", 1
    hook.publish(request("after a throttle"))
    assert len(fake.state.posts("facebook")) == 1


def test_a_local_photo_without_a_media_bucket_is_a_clear_error(
    hook: FacebookPageHook, fake: MetaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_MEDIA_S3_BUCKET", raising=False)
    with pytest.raises(Rejected, match=r"facebook fetches media from a public URL.*set KIPU_MEDIA_S3_BUCKET"):
        hook.publish(request("local", [MediaRef(url=str(IMAGE), mime_type="image/png")]))
    assert fake.state.requests == []
