"""The TikTok hook against a local fake of the Content Posting API, the video list and the token endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kipu.hooks.base import AuthExpired, NeedsReconnect, PublishRequest, RateLimited, Rejected, Transient
from kipu.hooks.http import LimitedClient
from kipu.hooks.media import MediaFile
from kipu.hooks.platform import Credentials, TokenSet
from kipu.platforms.options import parse
from kipu.platforms.tiktok import hook as tiktok
from kipu.platforms.tiktok.hook import (
    CREATOR_INFO,
    MAX_CHUNK,
    MAX_CHUNKS,
    MAX_FINAL_CHUNK,
    MIN_CHUNK,
    ChunkPlan,
    TikTokHook,
    UploadUrlRefused,
    plan_chunks,
)
from kipu.platforms.tiktok.options import TikTokOptions
from kipu.publishing import deliver
from kipu.specs.items import MediaRef
from pydantic import SecretStr

from tests.fakes.tiktok_server import TikTokServer
from tests.videos import make_video

MIB = 1024 * 1024
GIB = 1024 * MIB
CAPTION = "Sourdough at dawn, start to finish #bread #baking"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen at once: the tests count them, they do not wait for jitter."""
    monkeypatch.setattr("kipu.hooks.client.backoff", lambda attempt: 0.0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[TikTokServer]:
    with TikTokServer() as server:
        app = {
            "conn_type": "kipu_tiktok_app",
            "login": server.state.client_key,
            "password": server.state.client_secret,
            "extra": {
                "redirect_uri": "https://kipu.example/kipu/api/auth/callback/tiktok",
                "token_url": f"{server.url}/v2/oauth/token/",
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_TIKTOK_APP", json.dumps(app))
        yield server


@pytest.fixture
def hook(fake: TikTokServer) -> TikTokHook:
    tokens = fake.state.issue()
    creds = Credentials(
        None, fake.state.open_id, SecretStr(tokens["access_token"]), SecretStr(tokens["refresh_token"]), username="Ana"
    )
    hook = TikTokHook(creds, base_url=fake.url)
    hook.endpoint_rates = {}  # pacing is tested on its own below
    hook.poll_interval = 0.02
    hook.processing_timeout = 3.0
    return hook


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4", seconds=2.0)


def request(media: list[MediaRef], caption: str = CAPTION, **options: Any) -> PublishRequest:
    return PublishRequest(
        idempotency_key=str(uuid.uuid4()),
        content_type="video",
        caption=caption,
        media=media,
        options={"use_original_caption": False, "platform_options": options},
        created_at=datetime.now(UTC),
    )


def video(path: Path | str, **kw: Any) -> list[MediaRef]:
    return [MediaRef(url=str(path), mime_type="video/mp4", **kw)]


def inits(fake: TikTokServer) -> list[str]:
    return [c for c in fake.state.calls if c.endswith("/init/")]


# -- the chunk plan --------------------------------------------------------------------------------------------------
def assert_within_bounds(plan: ChunkPlan) -> None:
    """The media transfer guide's rules, checked on any plan."""
    ranges = list(plan.ranges())
    assert len(ranges) == plan.total_chunk_count and 1 <= plan.total_chunk_count <= MAX_CHUNKS
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.video_size - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))  # contiguous, in order
    assert plan.total_chunk_count == plan.video_size // plan.chunk_size  # rounded down, as documented
    if plan.video_size < MIN_CHUNK:
        assert plan.total_chunk_count == 1 and plan.chunk_size == plan.video_size
    elif plan.total_chunk_count == 1:
        assert plan.chunk_size == plan.video_size <= MAX_CHUNK
    else:
        assert MIN_CHUNK <= plan.chunk_size <= MAX_CHUNK
        assert all(last - first + 1 == plan.chunk_size for first, last in ranges[:-1])
        final = ranges[-1][1] - ranges[-1][0] + 1
        assert plan.chunk_size <= final <= MAX_FINAL_CHUNK


@pytest.mark.parametrize(
    ("size", "preferred", "chunk", "count"),
    [
        (3 * MIB, 10 * MIB, 3 * MIB, 1),  # under 5 MB: one chunk of the whole file
        (5 * MIB, 10 * MIB, 5 * MIB, 1),
        (5 * MIB - 1, 10 * MIB, 5 * MIB - 1, 1),
        (64 * MIB, 10 * MIB, 10 * MIB, 6),  # the trailing 4 MB ride in the final chunk
        (130 * MIB, 10 * MIB, 10 * MIB, 13),
        (130 * MIB, 64 * MIB, 64 * MIB, 2),  # final chunk 66 MB: over 64, under 128
        (100 * MIB, 64 * MIB, 50 * MIB, 2),  # one chunk would be over 64 MB: split in two
        (12 * MIB, 10 * MIB, 12 * MIB, 1),  # fits one chunk of at most 64 MB: sent whole
        (200 * MIB, 10 * MIB, 10 * MIB, 20),
        (200 * MIB, 1 * MIB, 5 * MIB, 40),  # a preferred size under 5 MB is raised to the minimum
        (200 * MIB, 500 * MIB, 64 * MIB, 3),  # and one over 64 MB lowered to the maximum
        (4 * GIB, 10 * MIB, 10 * MIB, 409),
        (12 * GIB, 10 * MIB, -(-12 * GIB // 1000), 999),  # more than 1,000 chunks: bigger chunks
    ],
)
def test_chunk_plan_stays_within_the_documented_bounds(size: int, preferred: int, chunk: int, count: int) -> None:
    plan = plan_chunks(size, preferred)
    assert (plan.chunk_size, plan.total_chunk_count) == (chunk, count)
    assert plan.source_info() == {
        "source": "FILE_UPLOAD",
        "video_size": size,
        "chunk_size": chunk,
        "total_chunk_count": count,
    }
    assert_within_bounds(plan)


def test_chunk_plan_bounds_hold_for_many_sizes() -> None:
    for size in [1, MIN_CHUNK, MIN_CHUNK + 1, MAX_CHUNK, MAX_CHUNK + 1, 129 * MIB, 1000 * MIB + 7, 62 * GIB]:
        for preferred in (MIN_CHUNK, 10 * MIB, 33 * MIB + 3, MAX_CHUNK):
            assert_within_bounds(plan_chunks(size, preferred))


def test_a_video_needing_more_than_1000_chunks_is_rejected() -> None:
    with pytest.raises(Rejected, match=r"more than 1000 chunks of at most 67108864 bytes"):
        plan_chunks(70 * 1000**3)
    with pytest.raises(Rejected, match="empty"):
        plan_chunks(0)


# -- options -----------------------------------------------------------------------------------------------------------
def options_of(req: PublishRequest) -> TikTokOptions:
    """A request's TikTok options, as every publish reads them (``kipu.platforms.options``)."""
    return parse("tiktok", req.options)


def test_options_model_rejects_unknown_fields_and_private_branded_content(clip: Path) -> None:
    with pytest.raises(Rejected, match=r"option 'platform_options.privacy' is not known \(mode, source, privacy_level"):
        options_of(request(video(clip), privacy="public"))
    with pytest.raises(Rejected, match=r"privacy_level': Input should be 'PUBLIC_TO_EVERYONE'"):
        options_of(request(video(clip), privacy_level="public"))
    with pytest.raises(Rejected, match=r"brand_content_toggle .* cannot be combined with privacy_level SELF_ONLY"):
        options_of(request(video(clip), privacy_level="SELF_ONLY", brand_content_toggle=True))
    # One step publishing to several platforms nests TikTok's flags under "tiktok".
    nested = request(video(clip))
    nested.options["platform_options"] = {"tiktok": {"privacy_level": "SELF_ONLY"}, "linkedin": {"visibility": "x"}}
    assert options_of(nested).privacy_level == "SELF_ONLY"
    defaults = TikTokOptions()
    assert (defaults.mode, defaults.source, defaults.disable_comment, defaults.brand_content_toggle) == (
        "direct",
        "FILE_UPLOAD",
        True,
        False,
    )


def test_check_names_every_problem_before_any_call(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    problems = hook.check(request([], caption="x" * 2201, mode="live", bogus=1))
    assert problems[0] == "tiktok caption is 2201 characters, over the limit of 2200"
    assert problems[1] == "tiktok needs exactly one video, got 0"
    assert (
        "mode': Input should be 'direct' or 'draft'" in problems[2]
        and "option 'platform_options.bogus' is not known" in problems[2]
    )
    assert hook.check(request(video(clip), caption="🥖" * 1101)) == [
        "tiktok caption is 2202 UTF-16 code units, over the limit of 2200"
    ]
    assert hook.check(request(video(clip), privacy_level="SELF_ONLY")) == []
    assert fake.state.calls == []


# -- Direct Post with FILE_UPLOAD --------------------------------------------------------------------------------------
def test_direct_post_uploads_chunks_in_order_streamed_from_disk(
    hook: TikTokHook, fake: TikTokServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_video(tmp_path / "long.mp4", seconds=2.0)
    with path.open("r+b") as fh:  # a real video with a sparse tail: 17 MiB on disk costs a few KB
        fh.truncate(17 * MIB)
    hook.chunk_size = 5 * MIB
    reads: list[int] = []
    real_chunks = MediaFile.chunks

    def spy(self: MediaFile, chunk_size: int = MIB, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        reads.append(chunk_size)
        return real_chunks(self, chunk_size, start, end)

    monkeypatch.setattr(MediaFile, "chunks", spy)
    req = request(
        video(path),
        privacy_level="PUBLIC_TO_EVERYONE",
        disable_comment=False,
        is_aigc=True,
        video_cover_timestamp_ms=1000,
        brand_organic_toggle=True,
    )
    result = hook.publish(req)

    (post,) = fake.state.posts
    assert result.platform_post_id == post["video"]["id"] and not result.awaiting
    assert result.url == f"https://www.tiktok.com/@ana.bakes/video/{post['video']['id']}"
    assert {k: post[k] for k in ("title", "privacy_level", "disable_comment", "disable_duet", "is_aigc")} == {
        "title": CAPTION,
        "privacy_level": "PUBLIC_TO_EVERYONE",
        "disable_comment": False,
        "disable_duet": True,  # not asked for: interactions stay off by default
        "is_aigc": True,
    }
    assert post["video_cover_timestamp_ms"] == 1000 and post["brand_organic_toggle"] is True
    total = 17 * MIB
    assert fake.state.chunk_puts == [
        f"0-{5 * MIB - 1}/{total}",
        f"{5 * MIB}-{10 * MIB - 1}/{total}",
        f"{10 * MIB}-{total - 1}/{total}",  # the final chunk carries the trailing 2 MiB
    ]
    (pub,) = fake.state.publishes.values()
    assert pub["sha"].hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert reads == [tiktok.READ_SIZE] * 3  # each chunk streamed in 1 MiB reads, never read whole
    calls = fake.state.calls
    assert calls.index(CREATOR_INFO) < calls.index("/v2/post/publish/video/init/")


def test_a_rejected_chunk_is_sent_again_and_the_upload_completes(
    hook: TikTokHook, fake: TikTokServer, tmp_path: Path
) -> None:
    path = make_video(tmp_path / "v.mp4")
    with path.open("r+b") as fh:
        fh.truncate(11 * MIB)
    hook.chunk_size = 5 * MIB
    fake.state.reject_chunk = 1
    result = hook.publish(request(video(path), privacy_level="FOLLOWER_OF_CREATOR"))
    assert result.platform_post_id == fake.state.posts[0]["video"]["id"]
    assert fake.state.rejected_chunks == [1]
    assert fake.state.chunk_puts == [f"0-{5 * MIB - 1}/{11 * MIB}"] + [f"{5 * MIB}-{11 * MIB - 1}/{11 * MIB}"] * 2
    (pub,) = fake.state.publishes.values()
    assert pub["sha"].hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_expired_upload_url_fails_clearly_and_posts_nothing(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    fake.state.expire_uploads = True
    with pytest.raises(Transient, match=r"upload URL answered HTTP 403 at chunk 1 of 1 .* expired \(TikTok keeps"):
        hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    assert fake.state.posts == [] and len(inits(fake)) == 1


# -- creator info rules --------------------------------------------------------------------------------------------
def test_privacy_must_be_one_of_the_creators_options(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.creator["privacy_level_options"] = ["SELF_ONLY"]  # an unaudited app sees only this
    with pytest.raises(Rejected, match=r"privacy_level PUBLIC_TO_EVERYONE is not allowed .* one of: SELF_ONLY"):
        hook.publish(request(video(clip), privacy_level="PUBLIC_TO_EVERYONE"))
    with pytest.raises(Rejected, match=r"no privacy_level for this creator; set privacy_level to one of: SELF_ONLY"):
        hook.publish(request(video(clip)))
    assert inits(fake) == [] and fake.state.calls.count(CREATOR_INFO) == 2  # asked before every Direct Post


def test_interactions_the_creator_disabled_stay_disabled(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.creator |= {"comment_disabled": True, "stitch_disabled": True}
    opts = {"disable_comment": False, "disable_duet": False, "disable_stitch": False}
    hook.publish(request(video(clip), privacy_level="MUTUAL_FOLLOW_FRIENDS", **opts))
    (post,) = fake.state.posts
    assert (post["disable_comment"], post["disable_duet"], post["disable_stitch"]) == (True, False, True)


def test_a_video_over_the_creators_maximum_is_rejected_before_init(
    hook: TikTokHook, fake: TikTokServer, tmp_path: Path
) -> None:
    fake.state.creator["max_video_post_duration_sec"] = 3
    long = make_video(tmp_path / "long.mp4", seconds=5.0)
    with pytest.raises(Rejected, match=r"video is 5\.0s long, over this creator's limit of 3s"):
        hook.publish(request(video(long), privacy_level="SELF_ONLY"))
    assert inits(fake) == [] and fake.state.posts == []
    short = make_video(tmp_path / "short.mp4", seconds=2.0)
    assert hook.publish(request(video(short), privacy_level="SELF_ONLY")).awaiting is False


# -- status, moderation and retries --------------------------------------------------------------------------------
def test_moderation_is_awaiting_and_a_retry_with_publish_ref_never_posts_again(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    fake.state.moderation_pending = True
    req = request(video(clip), privacy_level="PUBLIC_TO_EVERYONE")
    first = hook.publish(req)
    (pid,) = fake.state.publishes
    assert first.awaiting and first.publish_ref == pid and first.platform_post_id is None

    retry = req.model_copy(update={"publish_ref": pid})
    assert deliver(hook, retry).awaiting  # still in moderation: asked, not posted
    assert hook.publish(retry).awaiting
    fake.state.release()
    settled = hook.find_published(retry)
    assert settled is not None and not settled.awaiting
    assert settled.platform_post_id == fake.state.posts[0]["video"]["id"] and settled.publish_ref == pid
    assert deliver(hook, retry) == settled
    assert len(fake.state.posts) == 1 and len(inits(fake)) == 1


def test_a_private_post_is_final_without_a_public_post_id(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    result = hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    (pid,) = fake.state.publishes
    assert not result.awaiting and result.platform_post_id == pid and result.url is None
    assert fake.state.posts[0]["public"] is False


def test_failed_processing_is_rejected_with_tiktoks_reason(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.fail_reason = "frame_rate_check_failed"
    req = request(video(clip), privacy_level="SELF_ONLY")
    with pytest.raises(Rejected, match=r"publish v_pub_file~.* failed: frame_rate_check_failed"):
        hook.publish(req)
    (pid,) = fake.state.publishes
    with pytest.raises(Rejected, match="frame_rate_check_failed"):  # what settling an awaiting post sees
        hook.find_published(req.model_copy(update={"publish_ref": pid}))


def test_a_status_that_never_finishes_is_a_bounded_wait_ending_awaiting(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    fake.state.stuck = True
    hook.processing_timeout = 0.5
    started = time.monotonic()
    result = hook.publish(request(video(clip), privacy_level="PUBLIC_TO_EVERYONE"))
    assert result.awaiting and result.publish_ref in fake.state.publishes
    assert time.monotonic() - started < 3
    assert fake.state.posts == []


def test_status_unavailable_after_the_upload_is_awaiting_not_a_repost(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    fake.state.polls_to_finish = 1  # TikTok would say complete at once, but cannot be asked
    original = hook._status

    def broken(publish_id: str) -> dict[str, Any]:
        raise Transient("tiktok: HTTP 503")

    hook._status = broken  # type: ignore[method-assign]
    result = hook.publish(request(video(clip), privacy_level="PUBLIC_TO_EVERYONE"))
    assert result.awaiting and result.publish_ref in fake.state.publishes
    hook._status = original  # type: ignore[method-assign]
    settled = hook.find_published(request(video(clip)).model_copy(update={"publish_ref": result.publish_ref}))
    assert settled is not None and settled.platform_post_id == fake.state.posts[0]["video"]["id"]


def test_find_published_matches_a_direct_post_by_caption_since_the_intent(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    long_caption = "A long caption " * 20  # the video list truncates descriptions at 150 characters
    req = request(video(clip), caption=long_caption, privacy_level="PUBLIC_TO_EVERYONE")
    assert hook.find_published(req) is None
    published = hook.publish(req)
    assert hook.find_published(req) == published.model_copy(update={"publish_ref": None})
    later = req.model_copy(update={"created_at": datetime.now(UTC) + timedelta(minutes=5)})
    assert hook.find_published(later) is None
    assert hook.find_published(request(video(clip), caption=long_caption, mode="draft")) is None


# -- drafts and PULL_FROM_URL ----------------------------------------------------------------------------------------
def test_draft_goes_to_the_inbox_without_post_info(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    result = hook.publish(request(video(clip), mode="draft"))
    (pid,) = fake.state.publishes
    assert not result.awaiting and result.platform_post_id == pid
    assert inits(fake) == ["/v2/post/publish/inbox/video/init/"]
    assert CREATOR_INFO not in fake.state.calls and fake.state.posts == []
    assert fake.state.publishes[pid]["post_info"] is None


def test_pull_from_url_from_a_verified_domain(hook: TikTokHook, fake: TikTokServer) -> None:
    fake.state.verified_prefixes = ["https://media.kipu.example/"]
    remote = video("https://media.kipu.example/v/clip.mp4", duration_seconds=8.0)
    result = hook.publish(request(remote, privacy_level="PUBLIC_TO_EVERYONE", source="PULL_FROM_URL"))
    (pub,) = fake.state.publishes.values()
    assert pub["video_url"] == "https://media.kipu.example/v/clip.mp4" and "upload_url" not in pub
    assert result.platform_post_id == fake.state.posts[0]["video"]["id"] and fake.state.chunk_puts == []

    fake.state.creator["max_video_post_duration_sec"] = 5
    with pytest.raises(Rejected, match="over this creator's limit of 5s"):
        hook.publish(request(remote, privacy_level="PUBLIC_TO_EVERYONE", source="PULL_FROM_URL"))
    fake.state.creator["max_video_post_duration_sec"] = 600
    elsewhere = video("https://cdn.other.example/clip.mp4", duration_seconds=8.0)
    with pytest.raises(Rejected, match="url_ownership_unverified"):
        hook.publish(request(elsewhere, privacy_level="PUBLIC_TO_EVERYONE", source="PULL_FROM_URL"))
    assert len(inits(fake)) == 2  # an init that may have been accepted is never re-sent blindly


def test_pull_from_url_of_a_local_file_needs_the_media_bucket(
    hook: TikTokHook, fake: TikTokServer, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_MEDIA_S3_BUCKET", raising=False)
    with pytest.raises(Rejected, match="set KIPU_MEDIA_S3_BUCKET"):
        hook.publish(request(video(clip), mode="draft", source="PULL_FROM_URL"))
    assert inits(fake) == []


# -- errors ------------------------------------------------------------------------------------------------------------
def tiktok_error(status: int, code: str, method: str = "POST", **headers: str) -> httpx.Response:
    body = {"data": {}, "error": {"code": code, "message": f"words for {code}", "log_id": "2024LOG"}}
    request = httpx.Request(method, "https://open.tiktokapis.com/v2/post/publish/video/init/")
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "access_token_invalid", AuthExpired),
        (401, "scope_not_authorized", NeedsReconnect),
        (401, "scope_permission_missed", NeedsReconnect),
        (429, "rate_limit_exceeded", RateLimited),
        (403, "spam_risk_too_many_posts", RateLimited),
        (403, "spam_risk_too_many_pending_share", RateLimited),
        (403, "reached_active_user_cap", RateLimited),
        (403, "spam_risk_user_banned_from_posting", Rejected),
        (403, "unaudited_client_can_only_post_to_private_accounts", Rejected),
        (403, "privacy_level_option_mismatch", Rejected),
        (400, "invalid_params", Rejected),
        (400, "file_format_check_failed", Rejected),
        (403, "url_ownership_unverified", Rejected),
        (500, "internal_error", Transient),
        (503, "something_new", Transient),
        (200, "invalid_params", Rejected),  # an error code in a 200 is still an error
    ],
)
def test_tiktok_error_codes_map_onto_the_taxonomy(status: int, code: str, kind: type[Exception]) -> None:
    hook = TikTokHook(Credentials(None, "u", SecretStr("t")))
    error = hook.map_error(tiktok_error(status, code))
    assert type(error) is kind
    if kind is not NeedsReconnect:
        assert str(error) == f"tiktok: {code}: words for {code} (log_id 2024LOG)"
    if code in tiktok.POSTING_CAPS:
        assert isinstance(error, RateLimited) and error.retry_after == tiktok.CAP_WAIT  # never slept inline


def test_success_bodies_and_the_upload_url_map_as_expected() -> None:
    hook = TikTokHook(Credentials(None, "u", SecretStr("t")))
    assert hook.map_error(tiktok_error(200, "ok")) is None
    limited = hook.map_error(tiktok_error(429, "rate_limit_exceeded", **{"Retry-After": "7"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    put = httpx.Request("PUT", "https://open-upload.tiktokapis.com/video/?upload_id=1")
    assert isinstance(hook.map_error(httpx.Response(206, request=put)), type(None))
    assert isinstance(hook.map_error(httpx.Response(403, request=put)), UploadUrlRefused)
    assert isinstance(hook.map_error(httpx.Response(502, request=put)), Transient)
    assert isinstance(hook.map_error(httpx.Response(416, request=put)), Rejected)
    plain = httpx.Response(401, text="no", request=httpx.Request("POST", "https://open.tiktokapis.com/x"))
    assert isinstance(hook.map_error(plain), AuthExpired)


def test_errors_through_the_fake(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.audited = False
    with pytest.raises(Rejected, match="unaudited_client_can_only_post_to_private_accounts"):
        hook.publish(request(video(clip), privacy_level="PUBLIC_TO_EVERYONE"))
    fake.state.audited = True
    fake.state.init_error = (403, "spam_risk_too_many_posts", "The daily post cap is reached.")
    with pytest.raises(RateLimited, match="spam_risk_too_many_posts: The daily post cap"):
        hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    fake.state.init_error = (500, "internal_error", "Something went wrong.")
    with pytest.raises(Transient, match="internal_error"):
        hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    assert len(inits(fake)) == 1 + 1 + 3  # FILE_UPLOAD inits are retried twice on 5xx: no bytes, no post
    assert fake.state.posts == []


def test_429_is_retried_and_a_persistent_one_raised(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.throttle_next = 1
    assert not hook.publish(request(video(clip), privacy_level="SELF_ONLY")).awaiting
    fake.state.throttle_next = 10
    with pytest.raises(RateLimited, match="rate_limit_exceeded"):
        hook.creator_info()


def test_an_expired_token_is_refreshed_once_and_a_refused_refresh_needs_reconnect(
    hook: TikTokHook, fake: TikTokServer, clip: Path
) -> None:
    old = hook.credentials.access_token
    fake.state.expire_all()
    assert not hook.publish(request(video(clip), privacy_level="SELF_ONLY")).awaiting
    assert hook.credentials.access_token != old and len(fake.state.posts) == 1
    fake.state.expire_all()
    fake.state.refresh.clear()
    with pytest.raises(NeedsReconnect, match="refresh token was refused"):
        hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    assert len(fake.state.posts) == 1


def test_a_missing_scope_needs_reconnect_without_refreshing(hook: TikTokHook, fake: TikTokServer, clip: Path) -> None:
    fake.state.scopes.discard("video.publish")
    token = hook.credentials.access_token
    with pytest.raises(NeedsReconnect, match=r"scope_not_authorized: .* reconnect the account"):
        hook.publish(request(video(clip), privacy_level="SELF_ONLY"))
    assert hook.credentials.access_token == token


def test_calls_are_paced_per_endpoint(fake: TikTokServer) -> None:
    token = fake.state.issue()["access_token"]
    hook = TikTokHook(Credentials(None, f"pace-{uuid.uuid4()}", SecretStr(token)), base_url=fake.url)
    assert TikTokHook.endpoint_rates[tiktok.DIRECT_INIT] == 6 and TikTokHook.endpoint_rates[tiktok.STATUS] == 30
    hook.endpoint_rates = {CREATOR_INFO: 600}  # one call per 0.1 s
    started = time.monotonic()
    for _ in range(3):
        hook.creator_info()
    assert time.monotonic() - started >= 0.18


# -- identity and polling ------------------------------------------------------------------------------------------
def test_identity_from_user_info(fake: TikTokServer) -> None:
    tokens = TokenSet(access_token=SecretStr(fake.state.issue()["access_token"]))
    assert TikTokHook.identify(fake.url, tokens) == ("tt-open-1", "Ana")


def test_videos_are_listed_oldest_first_with_cover_and_duration(hook: TikTokHook, fake: TikTokServer) -> None:
    base = 1_700_000_000
    for i in range(25):
        fake.state.add_video(f"video {i} #bread", base + i * 60, title=f"Title {i}", duration=10 + i)
    items = hook.list_posts()
    assert [i.caption for i in items] == [f"video {i} #bread" for i in range(25)]  # two pages of the list
    first = items[0]
    assert first.platform == "tiktok" and first.content_type == "video" and first.title == "Title 0"
    assert first.duration_seconds == 10 and first.published_at == datetime.fromtimestamp(base, UTC)
    assert first.published_at.tzinfo is not None and first.url and "/video/" in first.url
    (cover,) = first.media
    assert cover.kind == "image" and cover.url.endswith(f"{base}.image")
    newer = hook.list_posts(since_id=items[21].platform_post_id)
    assert [i.caption for i in newer] == [f"video {i} #bread" for i in (22, 23, 24)]
    assert len(hook.list_posts(limit=5)) == 5

    async def poll() -> list[Any]:
        async with LimitedClient() as http:
            return await hook.fetch_posts(http)

    polled = asyncio.run(poll())
    assert [i.platform_post_id for i in polled] == [i.platform_post_id for i in items[5:]]  # the 20 newest
