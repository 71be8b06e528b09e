"""TikTok Content Posting API: creator info first, Direct Post or inbox draft, FILE_UPLOAD in documented chunks or
PULL_FROM_URL, a bounded status poll that leaves moderation as "awaiting", and the user's videos for polling.
Sources: developers.tiktok.com/doc/content-posting-api-* (reference, media transfer guide, get post status),
tiktok-api-v2-video-list, tiktok-api-v2-error-handling, content-sharing-guidelines; see docs/platforms/tiktok.md."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar

import httpx

from kipu.hooks.base import (
    AuthExpired,
    NeedsReconnect,
    PlatformError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    Transient,
)
from kipu.hooks.client import Call, Flow, classify, parse_retry_after
from kipu.hooks.media import MediaFile, VideoLimits, check_video, open_media, probe_video, public_url
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.platforms.options import parse as parse_options
from kipu.platforms.tiktok.options import TikTokOptions
from kipu.specs.items import ContentItem, MediaRef

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Media transfer guide: chunks of 5-64 MB, the final one up to 128 MB, 1-1000 chunks, a file < 5 MB in one piece.
MIN_CHUNK = 5 * MIB
MAX_CHUNK = 64 * MIB
MAX_FINAL_CHUNK = 128 * MIB
MAX_CHUNKS = 1000
DEFAULT_CHUNK = 10 * MIB
READ_SIZE = MIB  # a chunk is streamed from disk in reads of this size, never held whole
MAX_VIDEO = 4 * 1024 * MIB  # TikTok's video size limit
PROCESSING_TIMEOUT = 300.0  # seconds; moderation can take hours, so the wait ends as "awaiting", not failed
POLL_INTERVAL = 3.0  # status/fetch allows 30 requests per minute per token
CAP_WAIT = 3600.0  # posting caps are daily: retry much later, never sleep through them inline

CREATOR_INFO = "/v2/post/publish/creator_info/query/"
DIRECT_INIT = "/v2/post/publish/video/init/"
INBOX_INIT = "/v2/post/publish/inbox/video/init/"
STATUS = "/v2/post/publish/status/fetch/"
VIDEO_LIST = "/v2/video/list/"
VIDEO_FIELDS = "id,title,video_description,duration,cover_image_url,share_url,create_time,embed_link"
PAGE_SIZE = 20  # /v2/video/list/ max_count maximum

# Daily posting caps: retrying later helps, retrying now does not.
POSTING_CAPS = frozenset({"spam_risk_too_many_posts", "spam_risk_too_many_pending_share", "reached_active_user_cap"})
RECONNECT = frozenset({"scope_not_authorized", "scope_permission_missed"})


@dataclass(frozen=True)
class ChunkPlan:
    """``source_info`` for a FILE_UPLOAD: ``total_chunk_count`` is ``video_size // chunk_size`` (rounded down), so
    the trailing bytes ride in the final chunk."""

    video_size: int
    chunk_size: int
    total_chunk_count: int

    def ranges(self) -> Iterator[tuple[int, int]]:
        """``(first, last)`` byte of each chunk, inclusive as in ``Content-Range``."""
        for i in range(self.total_chunk_count):
            first = i * self.chunk_size
            last = self.video_size - 1 if i == self.total_chunk_count - 1 else first + self.chunk_size - 1
            yield first, last

    def source_info(self) -> dict[str, Any]:
        return {
            "source": "FILE_UPLOAD",
            "video_size": self.video_size,
            "chunk_size": self.chunk_size,
            "total_chunk_count": self.total_chunk_count,
        }


def plan_chunks(video_size: int, preferred: int = DEFAULT_CHUNK) -> ChunkPlan:
    """Chunks within the documented bounds: 5-64 MB each, the final one < 128 MB, at most 1,000; a file under
    5 MB, or one of at most 64 MB that would be a single chunk anyway, goes whole. ``Rejected`` when none fits."""
    if video_size <= 0:
        raise Rejected("tiktok: the video is empty")
    if video_size < MIN_CHUNK:
        return ChunkPlan(video_size, video_size, 1)
    chunk = min(max(preferred, MIN_CHUNK), MAX_CHUNK)
    chunk = max(chunk, -(-video_size // MAX_CHUNKS))  # big files get bigger chunks to stay within 1,000
    if chunk > MAX_CHUNK:
        raise Rejected(
            f"tiktok: a video of {video_size} bytes needs more than {MAX_CHUNKS} chunks of at most {MAX_CHUNK} "
            f"bytes; TikTok accepts at most {MAX_CHUNKS} chunks"
        )
    if video_size < 2 * chunk:  # it would be one chunk
        if video_size <= MAX_CHUNK:
            return ChunkPlan(video_size, video_size, 1)
        chunk = video_size // 2  # over 64 MB must be split: two chunks of 32-64 MB
    # The final chunk is chunk + remainder < 2 * 64 MB: within the 128 MB allowed for it.
    return ChunkPlan(video_size, chunk, video_size // chunk)


class _Range:
    """One chunk as a request body: read from disk in ``READ_SIZE`` pieces, and re-readable when a retry sends it
    again (not a generator, which httpx could send only once)."""

    def __init__(self, media: MediaFile, start: int, end: int) -> None:
        self.media, self.start, self.end = media, start, end

    def __iter__(self) -> Iterator[bytes]:
        return self.media.chunks(READ_SIZE, self.start, self.end)


class UploadUrlRefused(Rejected):
    """The pre-signed upload URL answered 403/404/410: it expired (TikTok keeps it one hour) or was revoked."""


@dataclass(frozen=True)
class CreatorInfo:
    username: str | None
    privacy_level_options: list[str]
    comment_disabled: bool
    duet_disabled: bool
    stitch_disabled: bool
    max_video_post_duration_sec: int | None


class TikTokHook(OAuthPlatformHook):
    platform: ClassVar[str] = "tiktok"
    base_url: ClassVar[str] = "https://open.tiktokapis.com"
    me_path: ClassVar[str] = "/v2/user/info/?fields=open_id,union_id,display_name"
    # TikTok limits each endpoint separately (per token, per minute), so the generic bucket is off and
    # ``endpoint_rates`` paces the calls that have documented limits; a 429 is still retried by ``call``.
    token_rate: ClassVar[float | None] = None
    endpoint_rates: Mapping[str, float] = MappingProxyType(
        {CREATOR_INFO: 20, DIRECT_INIT: 6, INBOX_INIT: 6, STATUS: 30}
    )
    processing_timeout: float = PROCESSING_TIMEOUT
    poll_interval: float = POLL_INTERVAL
    chunk_size: int = DEFAULT_CHUNK
    chunk_retries: int = 3
    chunk_timeout: httpx.Timeout = httpx.Timeout(120.0, connect=10.0)
    _handle: str | None = None  # the creator's @username, learned from creator_info, for post URLs

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        user = (data.get("data") or {}).get("user") or {}
        return str(user["open_id"]), user.get("display_name")

    # -- errors ----------------------------------------------------------------------------------------------------
    def map_error(self, response: httpx.Response) -> PlatformError | None:
        """TikTok's ``{"error": {"code", "message", "log_id"}}`` onto the taxonomy; the upload URL has no body."""
        status = response.status_code
        if response.request.method == "PUT":  # only the pre-signed upload URL is PUT
            if status in (403, 404, 410):
                return UploadUrlRefused(f"tiktok: the upload URL answered HTTP {status}")
            return classify(response, self.platform)
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if status < 400 and code in (None, "", "ok"):
            return None
        if not isinstance(error, dict) or not code:
            return classify(response, self.platform)
        where = f"tiktok: {code}: {error.get('message') or 'no message'}"
        if error.get("log_id"):
            where += f" (log_id {error['log_id']})"
        if code == "access_token_invalid":
            return AuthExpired(where)
        if code in RECONNECT:
            return NeedsReconnect(f"{where}; reconnect the account and approve every requested permission")
        if code == "rate_limit_exceeded":
            return RateLimited(where, parse_retry_after(response.headers.get("Retry-After")))
        if code in POSTING_CAPS:
            return RateLimited(where, CAP_WAIT)
        if code == "internal_error" or status >= 500:
            return Transient(where)
        return Rejected(where)

    # -- calls -----------------------------------------------------------------------------------------------------
    def _api(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """POST to an endpoint, paced by its documented per-token limit (``endpoint_rates``); the answer's ``data``."""
        return self.call("POST", path, **kwargs).json().get("data") or {}

    def creator_info(self) -> CreatorInfo:
        data = self._api(CREATOR_INFO)
        self._handle = data.get("creator_username") or self._handle
        max_sec = data.get("max_video_post_duration_sec")
        return CreatorInfo(
            username=data.get("creator_username"),
            privacy_level_options=list(data.get("privacy_level_options") or []),
            comment_disabled=bool(data.get("comment_disabled")),
            duet_disabled=bool(data.get("duet_disabled")),
            stitch_disabled=bool(data.get("stitch_disabled")),
            max_video_post_duration_sec=int(max_sec) if max_sec else None,
        )

    # -- checks ----------------------------------------------------------------------------------------------------
    def check(self, request: PublishRequest) -> list[str]:
        """Caption (2,200), one video, valid options and the 4 GB size, before any call; the creator's own
        limits (privacy options, maximum duration) are checked against creator_info in ``publish``."""
        problems = list(self.caption_rules.violations(request.caption))
        units, limit = len(request.caption.encode("utf-16-le")) // 2, self.caption_rules.max_length
        if not problems and units > limit:  # TikTok counts the title in UTF-16 runes: an emoji is two
            problems.append(f"tiktok caption is {units} UTF-16 code units, over the limit of {limit}")
        videos = [m for m in request.media if m.kind == "video"]
        if len(videos) != 1:
            problems.append(f"tiktok needs exactly one video, got {len(videos)}")
        try:
            parse_options("tiktok", request.options)
        except Rejected as exc:
            problems.append(str(exc))
        if videos:
            problems.extend(check_video(videos[0].url, VideoLimits(max_bytes=MAX_VIDEO), self.platform))
        return problems

    def _post_info(self, request: PublishRequest, opts: TikTokOptions, duration: float) -> dict[str, Any]:
        """``post_info`` for a Direct Post, after creator_info (queried fresh for every post, as TikTok requires)."""
        creator = self.creator_info()
        allowed = creator.privacy_level_options
        if opts.privacy_level is None or opts.privacy_level not in allowed:
            got = f"privacy_level {opts.privacy_level} is not allowed" if opts.privacy_level else "no privacy_level"
            raise Rejected(
                f"tiktok: {got} for this creator; set privacy_level to one of: {', '.join(allowed) or 'none'} "
                "(apps TikTok has not audited may only post SELF_ONLY)"
            )
        limit = creator.max_video_post_duration_sec
        if limit is not None and duration > limit:
            raise Rejected(
                f"tiktok video is {duration:.1f}s long, over this creator's limit of {limit}s "
                "(max_video_post_duration_sec)"
            )
        info: dict[str, Any] = {
            "title": request.caption,
            "privacy_level": opts.privacy_level,
            # An interaction the creator switched off in TikTok stays off, whatever the step asks.
            "disable_comment": opts.disable_comment or creator.comment_disabled,
            "disable_duet": opts.disable_duet or creator.duet_disabled,
            "disable_stitch": opts.disable_stitch or creator.stitch_disabled,
            "brand_content_toggle": opts.brand_content_toggle,
            "brand_organic_toggle": opts.brand_organic_toggle,
            "is_aigc": opts.is_aigc,
        }
        if opts.video_cover_timestamp_ms is not None:
            info["video_cover_timestamp_ms"] = opts.video_cover_timestamp_ms
        return info

    # -- publishing ------------------------------------------------------------------------------------------------
    def _init(self, opts: TikTokOptions, post_info: dict[str, Any] | None, source: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"source_info": source}
        if post_info is not None:
            body["post_info"] = post_info
        # A PULL_FROM_URL init that failed ambiguously may still publish: never re-sent automatically.
        retries = 0 if source["source"] == "PULL_FROM_URL" else 2
        return self._api(DIRECT_INIT if opts.mode == "direct" else INBOX_INIT, json=body, retries=retries)

    def _upload(self, media: MediaFile, plan: ChunkPlan, upload_url: str, mime: str, publish_id: str) -> None:
        """PUT the chunks in order; a refused chunk is retried by ``call`` (5xx, 429), an expired URL fails."""
        for index, (first, last) in enumerate(plan.ranges(), start=1):
            headers = {
                "Content-Type": mime,
                "Content-Length": str(last - first + 1),
                "Content-Range": f"bytes {first}-{last}/{plan.video_size}",
            }
            try:
                self.call(
                    "PUT",
                    upload_url,
                    auth=False,
                    retries=self.chunk_retries,
                    content=_Range(media, first, last + 1),
                    headers=headers,
                    timeout=self.chunk_timeout,
                )
            except UploadUrlRefused as exc:
                raise Transient(
                    f"{exc} at chunk {index} of {plan.total_chunk_count} for publish {publish_id}: the URL expired "
                    "(TikTok keeps it one hour) or was revoked; nothing was posted, the next attempt uploads again"
                ) from None

    def _video(self, request: PublishRequest) -> MediaRef:
        videos = [m for m in request.media if m.kind == "video"]
        if len(videos) != 1:
            raise Rejected(f"tiktok needs exactly one video, got {len(videos)}")
        return videos[0]

    def publish(self, request: PublishRequest) -> PublishResult:
        opts = parse_options("tiktok", request.options)
        if request.publish_ref:  # an earlier attempt was accepted: never post twice
            found = self.find_published(request)
            if found is not None:
                return found
        video = self._video(request)
        mime = video.mime_type if video.mime_type and "*" not in video.mime_type else "video/mp4"
        direct = opts.mode == "direct"
        if opts.source == "PULL_FROM_URL":
            duration = video.duration_seconds
            if duration is None and direct:
                with open_media(video.url, MAX_VIDEO, self.platform, mime) as media:
                    duration = probe_video(media.path).duration
            post_info = self._post_info(request, opts, duration or 0.0) if direct else None
            source = {"source": "PULL_FROM_URL", "video_url": public_url(video.url, self.platform)}
            publish_id = str(self._init(opts, post_info, source)["publish_id"])
            self.accepted(publish_id)  # TikTok fetches and posts it from here on
        else:
            with open_media(video.url, MAX_VIDEO, self.platform, mime) as media:
                info = probe_video(media.path)
                post_info = self._post_info(request, opts, info.duration) if direct else None
                plan = plan_chunks(media.size, self.chunk_size)
                data = self._init(opts, post_info, plan.source_info())
                publish_id = str(data["publish_id"])
                self._upload(media, plan, str(data["upload_url"]), mime, publish_id)
                self.accepted(publish_id)  # every byte is with TikTok: it posts from here on
        return self._await(publish_id, opts)

    def _await(self, publish_id: str, opts: TikTokOptions) -> PublishResult:
        """Poll the status up to ``processing_timeout``; past it, or if TikTok cannot be asked now, the accepted
        post is "awaiting" with its publish_id, so Kipu settles it later and never posts it again."""
        awaiting = PublishResult(awaiting=True, publish_ref=publish_id)
        deadline = time.monotonic() + self.processing_timeout
        while True:
            try:
                data = self._status(publish_id)
            except (PlatformError, ValueError) as exc:
                log.warning("tiktok: status of %s unavailable (%s); recorded as awaiting", publish_id, exc)
                return awaiting
            result = self._outcome(publish_id, data, opts)
            if result is not None:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("tiktok: %s still %s after %gs", publish_id, data.get("status"), self.processing_timeout)
                return awaiting
            time.sleep(min(self.poll_interval, left))

    def _status(self, publish_id: str) -> dict[str, Any]:
        return self._api(STATUS, json={"publish_id": publish_id})

    def _outcome(self, publish_id: str, data: dict[str, Any], opts: TikTokOptions) -> PublishResult | None:
        """The final or awaiting result for a status, None while processing; ``Rejected`` when TikTok failed it."""
        status = data.get("status")
        if status == "FAILED":
            raise Rejected(f"tiktok: publish {publish_id} failed: {data.get('fail_reason') or 'no reason given'}")
        if status == "SEND_TO_USER_INBOX":  # a draft is delivered; the creator finishes it in the app
            return PublishResult(platform_post_id=publish_id, publish_ref=publish_id)
        if status == "PUBLISH_COMPLETE":
            ids = data.get("publicaly_available_post_id") or []  # sic: TikTok's spelling
            if ids:
                return self._result(str(ids[0]), publish_id)
            if opts.mode == "draft" or opts.privacy_level == "SELF_ONLY":
                # Only public posts ever get a post id: a private post is final with its publish_id.
                return PublishResult(platform_post_id=publish_id, publish_ref=publish_id)
            return PublishResult(awaiting=True, publish_ref=publish_id)  # in moderation
        return None

    def _result(self, post_id: str, publish_id: str | None = None) -> PublishResult:
        if self._handle is None:
            with contextlib.suppress(PlatformError):  # the URL is a nicety; the id is what matters
                self.creator_info()
        url = f"https://www.tiktok.com/@{self._handle}/video/{post_id}" if self._handle else None
        return PublishResult(platform_post_id=post_id, url=url, publish_ref=publish_id)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """With ``publish_ref``: its status (final, awaiting, or ``Rejected`` if TikTok refused it). Otherwise a
        Direct Post whose caption matches, created since the intent; drafts are never listed, so None."""
        try:
            opts = parse_options("tiktok", request.options)
        except Rejected:
            opts = TikTokOptions()  # options edited since: still settle the post
        if request.publish_ref:
            result = self._outcome(request.publish_ref, self._status(request.publish_ref), opts)
            return result or PublishResult(awaiting=True, publish_ref=request.publish_ref)
        want = " ".join(request.caption.split())
        if opts.mode == "draft" or request.created_at is None or not want:
            return None
        since = request.created_at.astimezone(UTC) - timedelta(minutes=1)
        for video in self._videos(PAGE_SIZE)[0]:
            # The list truncates descriptions (150 characters), so a prefix of the caption matches.
            have = " ".join(str(video.get("video_description") or "").split())
            when = _when(video.get("create_time"))
            if have and want.startswith(have) and when is not None and when >= since:
                return self._result(str(video["id"]))
        return None

    # -- polling ---------------------------------------------------------------------------------------------------
    def _videos_call(self, count: int, cursor: int | None = None) -> Call:
        body: dict[str, Any] = {"max_count": min(count, PAGE_SIZE)}
        if cursor is not None:
            body["cursor"] = cursor
        return Call("POST", VIDEO_LIST, kwargs={"params": {"fields": VIDEO_FIELDS}, "json": body})

    @staticmethod
    def _page(resp: httpx.Response) -> tuple[list[dict[str, Any]], int | None, bool]:
        data = resp.json().get("data") or {}
        return list(data.get("videos") or []), data.get("cursor"), bool(data.get("has_more"))

    def _videos(self, count: int, cursor: int | None = None) -> tuple[list[dict[str, Any]], int | None, bool]:
        return self._page(self.send(self._videos_call(count, cursor)))

    def _items(self, videos: list[dict[str, Any]]) -> list[ContentItem]:
        items = []
        for v in sorted(videos, key=lambda v: int(v.get("create_time") or 0)):  # the list is newest first
            cover = v.get("cover_image_url")
            items.append(
                ContentItem(
                    platform="tiktok",
                    platform_post_id=str(v["id"]),
                    content_type="video",
                    title=v.get("title") or None,
                    caption=v.get("video_description") or "",
                    url=v.get("share_url") or v.get("embed_link"),
                    # The Display API gives the cover image (a 6-hour CDN link), not the video file.
                    media=[MediaRef(url=cover, mime_type="image/jpeg")] if cover else [],
                    duration_seconds=v.get("duration"),
                    published_at=_when(v.get("create_time")),
                    author=self.credentials.username,
                )
            )
        return items

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        """Recent public videos, oldest first: pages of 20 until ``limit``, ``since_id`` or ``pages``."""
        videos: list[dict[str, Any]] = []
        cursor: int | None = None
        read = 0
        while len(videos) < limit and (pages is None or read < pages):
            page, cursor, more = self._page((yield self._videos_call(limit - len(videos), cursor)))
            read += 1
            ids = [str(v.get("id")) for v in page]
            if since_id in ids:
                videos.extend(page[: ids.index(since_id)])
                break
            videos.extend(page)
            if not more or not page or cursor is None:
                break
        return self._items(videos[:limit])


def _when(value: Any) -> datetime | None:
    """TikTok's ``create_time``: UTC epoch seconds."""
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value), UTC)
