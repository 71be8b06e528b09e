"""YouTube Data API v3: a resumable upload that resumes from the ``308`` ``Range`` offset, the snippet limits checked
first, per-project daily quota accounting, a crash-safe retry through the uploads playlist, and polling through the
channel's public RSS feed (no quota). Sources are listed in docs/platforms/youtube.md."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from kipu.captions.hashtags import extract_hashtags
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
from kipu.hooks.client import Call, Flow, backoff, classify, parse_retry_after, run
from kipu.hooks.media import MediaFile, VideoLimits, check_video, open_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.hooks.times import utc_time
from kipu.platforms.options import parse as parse_options
from kipu.platforms.youtube.atom import WATCH_URL, items_from_feed
from kipu.platforms.youtube.options import YouTubeOptions
from kipu.platforms.youtube.quota import (
    ConnectionLedger,
    MemoryLedger,
    QuotaLedger,
    QuotaPlan,
    hours,
    pacific_day,
    until_pacific_midnight,
)
from kipu.specs.items import ContentItem, MediaRef

log = logging.getLogger(__name__)
UPLOAD_PATH = "/upload/youtube/v3/videos"
CHUNK_UNIT = 256 * 1024  # every chunk but the last is a multiple of 256 KiB (resumable upload protocol)
DEFAULT_CHUNK = 32 * CHUNK_UNIT  # 8 MiB per PUT
READ_PIECE = 1024 * 1024  # what is held in memory at a time while a chunk streams
MAX_RESUMES = 8
UPLOAD_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
MAX_VIDEO_BYTES = 256 * 1024**3  # 256 GB or 12 hours, whichever is less (YouTube Help)
VIDEO_LIMITS = VideoLimits(max_bytes=MAX_VIDEO_BYTES, max_duration=12 * 3600)
TITLE_CHARS, DESCRIPTION_BYTES, TAGS_CHARS = 100, 5000, 500
FEED_BASE = "https://www.youtube.com"
UPLOAD_LIMIT_WAIT = 24 * 3600.0

RECONNECT_REASONS = frozenset(
    {
        "forbidden",
        "insufficientPermissions",
        "accountDelegationForbidden",
        "authenticatedUserAccountClosed",
        "authenticatedUserAccountSuspended",
        "authenticatedUserNotChannel",
        "youtubeSignupRequired",
    }
)


def clean_text(text: str) -> str:
    """YouTube refuses ``<`` and ``>`` in titles and descriptions: they are removed."""
    return text.replace("<", "").replace(">", "")


def tags_length(tags: list[str]) -> int:
    """Tags as YouTube counts them: commas between tags count, and a tag with a space counts its quotes too."""
    return sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)


def derived_title(caption: str) -> str:
    """The caption's first non-empty line, shortened at a word to fit 100 characters."""
    line = next((ln.strip() for ln in clean_text(caption).splitlines() if ln.strip()), "")
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip() or line[: TITLE_CHARS - 1]
    return cut + "…"


@dataclass(frozen=True)
class Metadata:
    """What videos.insert sends, and the problems found building it."""

    title: str
    description: str
    body: dict[str, Any]
    notify: bool
    problems: tuple[str, ...]


def build_metadata(request: PublishRequest, opts: YouTubeOptions, now: datetime | None = None) -> Metadata:
    explicit = opts.title if opts.title is not None else request.title
    title = clean_text(explicit).strip() if explicit is not None else derived_title(request.caption)
    description = clean_text(request.caption)
    problems: list[str] = []
    if not title:
        problems.append("youtube needs a title: set title in the publish step's config or start the caption with one")
    if len(title) > TITLE_CHARS:
        problems.append(f"youtube title is {len(title)} characters, over the limit of {TITLE_CHARS}")
    size = len(description.encode())
    if size > DESCRIPTION_BYTES:
        problems.append(f"youtube description is {size} bytes (UTF-8), over the limit of {DESCRIPTION_BYTES}")
    tags = [clean_text(t).strip() for t in opts.tags if clean_text(t).strip()]
    if tags_length(tags) > TAGS_CHARS:
        problems.append(
            f"youtube tags are {tags_length(tags)} characters in total (commas, and quotes around tags with spaces, "
            f"count), over the limit of {TAGS_CHARS}"
        )
    # The step's schedule_at is YouTube's publishAt unless platform_options set one.
    publish_at = opts.publish_at or request.schedule_at
    privacy = opts.privacy or ("private" if publish_at else "public")
    status: dict[str, Any] = {"privacyStatus": privacy, "selfDeclaredMadeForKids": opts.made_for_kids}
    if publish_at is not None:
        if publish_at <= (now or datetime.now(UTC)):
            problems.append(f"youtube publish_at {publish_at.isoformat()} is not in the future")
        if privacy != "private":
            problems.append(
                f"youtube publish_at needs privacy 'private' (YouTube makes it public then), got '{privacy}'"
            )
        status["publishAt"] = publish_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    snippet: dict[str, Any] = {"title": title, "description": description, "categoryId": opts.category_id}
    if tags:
        snippet["tags"] = tags
    body = {"snippet": snippet, "status": status}
    return Metadata(title, description, body, opts.notify_subscribers, tuple(problems))


def _since(items: list[ContentItem], since_id: str | None, limit: int) -> list[ContentItem]:
    if since_id is not None:
        ids = [i.platform_post_id for i in items]
        if since_id in ids:
            items = items[ids.index(since_id) + 1 :]
    return items[-limit:] if limit else items


# -- the upload -----------------------------------------------------------------------------------------------------
class UploadSessionExpired(Rejected):
    """The resumable session is gone (404/410, sessions last about a week): a new one must start."""


class _ChunkBody:
    """One chunk's bytes, streamed from the file in pieces and re-readable: a refresh-then-resend of the same PUT
    (``call``'s ``AuthExpired`` path) sends the whole chunk again instead of an exhausted generator."""

    def __init__(self, media: MediaFile, start: int, end: int) -> None:
        self.media, self.start, self.end = media, start, end

    def __iter__(self) -> Iterator[bytes]:
        return self.media.chunks(READ_PIECE, self.start, self.end)


def _next_offset(range_header: str | None) -> int:
    """``Range: bytes=0-N`` means bytes up to N arrived, so resume at N+1; no header means nothing arrived."""
    if not range_header:
        return 0
    match = re.fullmatch(r"\s*bytes=0-(\d+)\s*", range_header)
    if not match:
        raise Transient(f"youtube: unreadable Range header in the upload status: {range_header!r}")
    return int(match.group(1)) + 1


def _google_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(reason, message)`` from Google's ``{"error": {"errors": [{"reason": ...}], "message": ...}}``."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):  # the OAuth token endpoint: {"error": "invalid_grant", "error_description": ...}
        return error, str(body.get("error_description") or error)
    if not isinstance(error, dict):
        return None, ""
    reasons = [e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")]
    return (reasons[0] if reasons else error.get("status")), str(error.get("message") or "")


class YouTubeHook(OAuthPlatformHook):
    platform: ClassVar[str] = "youtube"
    base_url: ClassVar[str] = "https://www.googleapis.com"
    me_path: ClassVar[str] = "/youtube/v3/channels?part=snippet&mine=true"
    chunk_size: int = DEFAULT_CHUNK
    max_resumes: int = MAX_RESUMES
    # The hook point for a shared quota store of your own; by default stored connections persist their use in
    # their metadata (ConnectionLedger) and unsaved credentials count in memory (MemoryLedger).
    quota_ledger: ClassVar[QuotaLedger | None] = None
    _uploads_id: str | None = None

    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        items = data.get("items") or []
        if not items:
            raise NeedsReconnect("youtube: this Google account has no YouTube channel; create one, then connect again")
        return str(items[0]["id"]), (items[0].get("snippet") or {}).get("title")

    # -- settings -------------------------------------------------------------------------------------------------
    @property
    def channel_id(self) -> str:
        return self.credentials.platform_user_id

    @property
    def feed_base(self) -> str:
        return str(self.credentials.metadata.get("feed_base") or FEED_BASE).rstrip("/")

    @property
    def upload_chunk(self) -> int:
        size = int(self.credentials.metadata.get("upload_chunk_bytes") or self.chunk_size)
        if size <= 0 or size % CHUNK_UNIT:
            raise Rejected(f"youtube: upload_chunk_bytes {size} is not a positive multiple of {CHUNK_UNIT} (256 KiB)")
        return size

    # -- quota ----------------------------------------------------------------------------------------------------
    @property
    def quota_plan(self) -> QuotaPlan:
        return QuotaPlan.of(self.credentials.metadata)

    @property
    def quota_project(self) -> str:
        return str(self.credentials.metadata.get("quota_project") or "default")

    def ledger(self) -> QuotaLedger:
        if self.quota_ledger is not None:
            return self.quota_ledger
        if self.credentials.connection_id is None:
            return MemoryLedger()
        return ConnectionLedger(self.credentials.connection_id)

    def spend(self, op: str) -> None:
        """Count ``op`` against today's quota before it is sent; ``QuotaSpent`` (RateLimited) when it cannot fit."""
        plan = self.quota_plan
        self.ledger().spend(self.quota_project, pacific_day(), plan.cost(op), plan.limits())

    def quota_used(self) -> dict[str, int]:
        return self.ledger().used(self.quota_project, pacific_day())

    def api(self, op: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.spend(op)
        return self.call(method, path, **kwargs)

    # -- errors ---------------------------------------------------------------------------------------------------
    def map_error(self, response: httpx.Response) -> PlatformError | None:
        code = response.status_code
        if code < 400:
            return None
        url = response.request.url
        if code in (404, 410) and url.path == UPLOAD_PATH and "upload_id" in url.params:
            return UploadSessionExpired(f"youtube: the upload session has expired (HTTP {code})")
        reason, message = _google_error(response)
        said = f"youtube: HTTP {code}: {message}{f' ({reason})' if reason else ''}" if message else ""
        if reason in ("quotaExceeded", "dailyLimitExceeded"):
            bucket = "inserts" if response.request.method == "POST" and url.path == UPLOAD_PATH else "units"
            limit = self.quota_plan.limits()[bucket]
            try:  # remembered, so later calls stop before sending until the reset
                self.ledger().exhaust(self.quota_project, pacific_day(), bucket, limit)
            except Exception as exc:  # the count is a courtesy; the platform's answer is what matters
                log.warning("youtube: could not record the exhausted quota (%s)", type(exc).__name__)
            wait = until_pacific_midnight()
            return RateLimited(
                f"youtube: the project's daily YouTube Data API quota is used up (quotaExceeded); it resets at "
                f"midnight Pacific Time, in {hours(wait)}",
                wait,
            )
        if reason == "uploadLimitExceeded":
            return RateLimited(
                "youtube: the channel has reached its daily upload limit (uploadLimitExceeded); try again in 24 hours",
                UPLOAD_LIMIT_WAIT,
            )
        if reason in ("rateLimitExceeded", "userRateLimitExceeded") or code == 429:
            return RateLimited(said or f"youtube: HTTP {code}", parse_retry_after(response.headers.get("Retry-After")))
        if code == 401:
            return AuthExpired(f"youtube: HTTP 401: {message or 'the access token was refused'}")
        if code == 403 and reason in RECONNECT_REASONS:
            return NeedsReconnect(f"{said or 'youtube: HTTP 403'}; reconnect the YouTube account")
        error = classify(response, self.platform)
        if isinstance(error, Transient):
            return Transient(said or f"youtube: HTTP {code}")
        return Rejected(said) if said else error  # type: ignore[return-value]

    # -- check and publish ----------------------------------------------------------------------------------------
    def _video(self, request: PublishRequest) -> list[MediaRef]:
        return [m for m in request.media if m.kind == "video"]

    def check(self, request: PublishRequest) -> list[str]:
        """Every limit the request breaks: options, title, description, tags, schedule and the video itself."""
        try:
            opts = parse_options("youtube", request.options)
        except Rejected as exc:
            problems = str(exc).split("; ")
        else:
            problems = list(build_metadata(request, opts).problems)
        videos = self._video(request)
        if not videos:
            problems.append("youtube needs a video")
        elif len(videos) > 1:
            problems.append(f"youtube takes one video per upload, got {len(videos)}")
        else:
            problems += check_video(videos[0].url, VIDEO_LIMITS, self.platform)
        return problems

    def publish(self, request: PublishRequest) -> PublishResult:
        meta = build_metadata(request, parse_options("youtube", request.options))
        if meta.problems:
            raise Rejected("; ".join(meta.problems))
        videos = self._video(request)
        if len(videos) != 1:
            raise Rejected("youtube needs exactly one video")
        mime = videos[0].mime_type if videos[0].mime_type and "*" not in videos[0].mime_type else "video/mp4"
        with open_media(videos[0].url, MAX_VIDEO_BYTES, self.platform, mime) as media:
            resource = self.upload(media, meta, mime, request)
        return self._result(str(resource["id"]))

    def _result(self, video_id: str) -> PublishResult:
        return PublishResult(platform_post_id=video_id, url=WATCH_URL.format(video_id))

    # -- the resumable upload -------------------------------------------------------------------------------------
    def start_session(self, meta: Metadata, size: int, mime: str) -> str:
        """Step 1: POST the metadata; the session URI comes back in ``Location``."""
        resp = self.api(
            "videos.insert",
            "POST",
            UPLOAD_PATH,
            params={"uploadType": "resumable", "part": "snippet,status", "notifySubscribers": meta.notify},
            json=meta.body,
            headers={"X-Upload-Content-Length": str(size), "X-Upload-Content-Type": mime},
        )
        location = resp.headers.get("Location")
        if not location:
            raise Transient(f"youtube: the upload session answered HTTP {resp.status_code} without a Location")
        return location

    def upload_status(self, session: str, total: int) -> tuple[int, dict[str, Any] | None]:
        """Ask how far the upload got: ``(next offset, None)`` on 308, ``(total, video)`` when it is complete."""
        resp = self.call(
            "PUT",
            session,
            content=b"",
            headers={"Content-Range": f"bytes */{total}"},
            follow_redirects=False,
        )
        if resp.status_code in (200, 201):
            return total, resp.json()
        return _next_offset(resp.headers.get("Range")), None

    def upload(
        self, media: MediaFile, meta: Metadata, mime: str, request: PublishRequest | None = None
    ) -> dict[str, Any]:
        """Upload in chunks of ``upload_chunk`` bytes streamed from disk. A broken connection or a 5xx asks the
        session where it stopped and resumes from there; an expired session starts a new one (after checking the
        channel, so a video that did complete is not uploaded twice). Resumes are bounded by ``max_resumes``."""
        chunk, total = self.upload_chunk, media.size
        session = self.start_session(meta, total, mime)
        offset, resumes = 0, 0
        while True:
            try:
                if offset >= total:  # every byte was sent without a final answer: ask for it
                    offset, done = self.upload_status(session, total)
                    if done is not None:
                        return done
                    raise Transient(f"youtube: the session holds {offset} of {total} bytes after the last chunk")
                end = min(offset + chunk, total)
                resp = self.call(
                    "PUT",
                    session,
                    retries=0,  # a failed chunk is resumed from the session's offset, not resent blindly
                    content=_ChunkBody(media, offset, end),
                    headers={
                        "Content-Length": str(end - offset),
                        "Content-Range": f"bytes {offset}-{end - 1}/{total}",
                        "Content-Type": mime,
                    },
                    timeout=UPLOAD_TIMEOUT,
                    follow_redirects=False,
                )
                if resp.status_code in (200, 201):
                    return dict(resp.json())
                advanced = _next_offset(resp.headers.get("Range"))
                if advanced <= offset:
                    raise Transient(f"youtube: the upload did not advance past byte {offset}")
                offset = advanced
            except Transient as exc:
                resumes += 1
                if resumes > self.max_resumes:
                    raise Transient(f"youtube: the upload broke {resumes} times; the last: {exc}") from None
                time.sleep(backoff(resumes, base=0.25, cap=8.0))
                try:
                    offset, done = self.upload_status(session, total)
                except UploadSessionExpired:
                    session, done = self._restart(meta, total, mime, request)
                    offset = 0
                if done is not None:
                    return done
            except UploadSessionExpired:
                resumes += 1
                if resumes > self.max_resumes:
                    raise
                session, done = self._restart(meta, total, mime, request)
                offset = 0
                if done is not None:
                    return done

    def _restart(
        self, meta: Metadata, total: int, mime: str, request: PublishRequest | None
    ) -> tuple[str, dict[str, Any] | None]:
        """A new session, unless the expired one had completed: then the video found on the channel."""
        found = self.find_published(request) if request is not None else None
        if found is not None:
            return "", {"id": found.platform_post_id}
        return self.start_session(meta, total, mime), None

    # -- reading the channel --------------------------------------------------------------------------------------
    def _uploads_playlist(self) -> Flow:
        known = self.credentials.metadata.get("uploads_playlist_id") or self._uploads_id
        if known:
            return str(known)
        self.spend("channels.list")
        resp = yield Call("GET", "/youtube/v3/channels", kwargs={"params": {"part": "contentDetails", "mine": "true"}})
        items = resp.json().get("items") or []
        if not items:
            raise NeedsReconnect("youtube: this Google account has no YouTube channel; create one, then connect again")
        self._uploads_id = str(items[0]["contentDetails"]["relatedPlaylists"]["uploads"])
        return self._uploads_id

    def uploads_playlist(self) -> str:
        """The channel's uploads playlist id (from the connection's metadata when known, else channels.list)."""
        return run(self._uploads_playlist(), self.send)  # type: ignore[no-any-return]

    def _recent_uploads(self, limit: int) -> Flow:
        playlist = yield from self._uploads_playlist()
        self.spend("playlistItems.list")
        params = {"part": "snippet,contentDetails", "playlistId": playlist, "maxResults": min(max(limit, 1), 50)}
        resp = yield Call("GET", "/youtube/v3/playlistItems", kwargs={"params": params})
        return list(resp.json().get("items") or [])

    def recent_uploads(self, limit: int = 25) -> list[dict[str, Any]]:
        """The uploads playlist's items, newest first (1 unit per page, plus channels.list once)."""
        return run(self._recent_uploads(limit), self.send)  # type: ignore[no-any-return]

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """A video on the channel with this request's title and description, uploaded since the intent was written:
        what makes a retry after a crash or an ambiguous failure safe."""
        try:
            meta = build_metadata(request, parse_options("youtube", request.options))
        except Rejected:
            return None  # check() reports the options; nothing could have been uploaded with them
        since = (request.created_at or datetime.now(UTC) - timedelta(days=1)) - timedelta(minutes=1)
        for item in self.recent_uploads():
            snippet = item.get("snippet") or {}
            when = utc_time((item.get("contentDetails") or {}).get("videoPublishedAt") or snippet.get("publishedAt"))
            if (snippet.get("title"), snippet.get("description")) != (meta.title, meta.description):
                continue
            if when is None or when >= since:
                video = (snippet.get("resourceId") or {}).get("videoId") or (item.get("contentDetails") or {}).get(
                    "videoId"
                )
                if video:
                    return self._result(str(video))
        return None

    def _playlist_items(self, uploads: list[dict[str, Any]]) -> list[ContentItem]:
        out = []
        for item in reversed(uploads):
            snippet = item.get("snippet") or {}
            details = item.get("contentDetails") or {}
            video = details.get("videoId") or (snippet.get("resourceId") or {}).get("videoId")
            if not video:
                continue
            thumbs = snippet.get("thumbnails") or {}
            thumb = next((thumbs[k] for k in ("maxres", "standard", "high", "medium", "default") if k in thumbs), None)
            title, description = snippet.get("title") or "", snippet.get("description") or ""
            out.append(
                ContentItem(
                    platform="youtube",
                    platform_post_id=str(video),
                    content_type="video",
                    title=title,
                    caption=description,
                    url=WATCH_URL.format(video),
                    media=[MediaRef(url=thumb["url"], mime_type="image/jpeg")] if thumb and thumb.get("url") else [],
                    hashtags=extract_hashtags(f"{title} {description}"),
                    published_at=utc_time(details.get("videoPublishedAt") or snippet.get("publishedAt")),
                    author=snippet.get("channelTitle"),
                )
            )
        return out

    @property
    def feed_url(self) -> str:
        return f"{self.feed_base}/feeds/videos.xml?channel_id={self.channel_id}"

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        """The channel's RSS feed (its 15 newest videos, no quota); the uploads playlist when the feed fails."""
        try:
            items = items_from_feed((yield Call("GET", self.feed_url, auth=False)).content)
        except (Transient, Rejected):
            items = self._playlist_items((yield from self._recent_uploads(limit)))
        return _since(items, since_id, limit)
