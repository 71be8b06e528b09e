"""YouTube Data API v3: a resumable upload that resumes from the ``308`` ``Range`` offset, the snippet limits checked
first, per-project daily quota accounting, a crash-safe retry through the uploads playlist, and polling through the
channel's public RSS feed (no quota). Sources are listed in docs/platforms/youtube.md."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import feedparser
import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from kipu.captions.hashtags import extract_hashtags
from kipu.hooks.base import (
    AuthExpired,
    Capabilities,
    NeedsReconnect,
    PlatformError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    Transient,
)
from kipu.hooks.feed import FeedError, struct_time_utc
from kipu.hooks.http import LimitedClient, backoff, classify, parse_retry_after
from kipu.hooks.media import MediaFile, VideoLimits, check_video, open_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.specs.common import PlatformName
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
WATCH_URL = "https://www.youtube.com/watch?v={}"
PACIFIC = ZoneInfo("America/Los_Angeles")  # quotas reset at midnight Pacific Time
UPLOAD_LIMIT_WAIT = 24 * 3600.0

# Units per call (developers.google.com/youtube/v3/determine_quota_cost). videos.insert has its own bucket of
# calls per day; projects still on the older single-bucket scheme set quota.insert_units (it was 1,600).
COSTS: Mapping[str, int] = {"channels.list": 1, "playlistItems.list": 1, "videos.list": 1}
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


# -- quota ----------------------------------------------------------------------------------------------------------
def pacific_day(now: datetime | None = None) -> str:
    """The quota day (``YYYY-MM-DD`` in Pacific Time) that ``now`` falls in."""
    return (now or datetime.now(UTC)).astimezone(PACIFIC).date().isoformat()


def until_pacific_midnight(now: datetime | None = None) -> float:
    """Seconds until the next midnight Pacific Time, when YouTube resets daily quotas (DST-aware)."""
    now = (now or datetime.now(UTC)).astimezone(PACIFIC)
    reset = datetime.combine(now.date() + timedelta(days=1), clock(0), tzinfo=PACIFIC)
    return max(1.0, (reset - now).total_seconds())


def _hours(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


@dataclass(frozen=True)
class QuotaPlan:
    """A project's daily allowance: ``units`` shared by most methods, ``inserts`` for videos.insert."""

    units_per_day: int = 10_000
    inserts_per_day: int = 100
    insert_units: int = 0

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> QuotaPlan:
        raw = metadata.get("quota") or {}
        return cls(**{k: int(v) for k, v in raw.items() if k in cls.__dataclass_fields__})

    def limits(self) -> dict[str, int]:
        return {"units": self.units_per_day, "inserts": self.inserts_per_day}

    def cost(self, op: str) -> dict[str, int]:
        if op == "videos.insert":
            return {"inserts": 1, "units": self.insert_units}
        return {"units": COSTS.get(op, 1)}


class QuotaSpent(RateLimited):
    """Kipu's own count says the call would pass the day's quota; nothing was sent."""


class QuotaLedger(ABC):
    """Quota used per project and Pacific day, by bucket. ``spend`` raises ``QuotaSpent`` instead of going over."""

    @abstractmethod
    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None: ...

    @abstractmethod
    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        """Record that YouTube said the bucket is empty (quotaExceeded), so later calls stop before sending."""

    @abstractmethod
    def used(self, project: str, day: str) -> dict[str, int]: ...


def _over(used: Mapping[str, int], cost: Mapping[str, int], limits: Mapping[str, int]) -> tuple[str, int] | None:
    for bucket, n in cost.items():
        if n and used.get(bucket, 0) + n > limits[bucket]:
            return bucket, used.get(bucket, 0)
    return None


class MemoryLedger(QuotaLedger):
    """In this process only: for credentials that are not stored (tests, one-off use)."""

    _used: ClassVar[dict[tuple[str, str, str], int]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def used(self, project: str, day: str) -> dict[str, int]:
        return {b: n for (p, d, b), n in self._used.items() if (p, d) == (project, day)}

    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None:
        with self._lock:
            over = _over(self.used(project, day), cost, limits)
            if over:
                raise _spent(over[0], over[1], limits[over[0]])
            for bucket, n in cost.items():
                self._used[(project, day, bucket)] = self._used.get((project, day, bucket), 0) + n

    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        with self._lock:
            key = (project, day, bucket)
            self._used[key] = max(self._used.get(key, 0), limit)

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._used.clear()


class ConnectionLedger(QuotaLedger):
    """Persisted in each YouTube connection's metadata (``youtube_quota``), so every task and worker sees it.

    A project's use is the sum over its YouTube connections; a spend locks the spending connection's row.
    """

    KEY = "youtube_quota"

    def __init__(self, connection_id: uuid.UUID) -> None:
        self.connection_id = connection_id

    def _totals(self, session: Any, project: str, day: str) -> dict[str, int]:
        from sqlalchemy import select

        from kipu.store.models import Connection

        totals: dict[str, int] = {}
        for meta in session.scalars(select(Connection.metadata_).where(Connection.platform == "youtube")):
            entry = (meta or {}).get(self.KEY) or {}
            if entry.get("project") == project and entry.get("day") == day:
                for bucket, n in (entry.get("used") or {}).items():
                    totals[bucket] = totals.get(bucket, 0) + int(n)
        return totals

    def _update(self, project: str, day: str, change: Any) -> None:
        from kipu.store.engine import session_scope
        from kipu.store.models import Connection

        with session_scope() as s:
            own = s.get(Connection, self.connection_id, with_for_update=True)
            if own is None:
                raise NeedsReconnect("the YouTube connection was deleted")
            entry = (own.metadata_ or {}).get(self.KEY) or {}
            mine = dict(entry.get("used") or {}) if (entry.get("project"), entry.get("day")) == (project, day) else {}
            change(mine, self._totals(s, project, day))
            # A new dict, so the JSON column is written (in-place changes are not tracked).
            own.metadata_ = {**(own.metadata_ or {}), self.KEY: {"project": project, "day": day, "used": mine}}

    def used(self, project: str, day: str) -> dict[str, int]:
        from kipu.store.engine import session_scope

        with session_scope() as s:
            return self._totals(s, project, day)

    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None:
        def change(mine: dict[str, int], totals: dict[str, int]) -> None:
            over = _over(totals, cost, limits)
            if over:
                raise _spent(over[0], over[1], limits[over[0]])
            for bucket, n in cost.items():
                mine[bucket] = mine.get(bucket, 0) + n

        self._update(project, day, change)

    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        def change(mine: dict[str, int], totals: dict[str, int]) -> None:
            mine[bucket] = mine.get(bucket, 0) + max(0, limit - totals.get(bucket, 0))

        self._update(project, day, change)


def _spent(bucket: str, used: int, limit: int) -> QuotaSpent:
    wait = until_pacific_midnight()
    what = f"{limit} videos.insert calls" if bucket == "inserts" else f"{limit} units"
    return QuotaSpent(
        f"youtube: the project's daily quota of {what} is used up ({used} used); it resets at midnight "
        f"Pacific Time, in {_hours(wait)}",
        wait,
    )


# -- options and snippet ----------------------------------------------------------------------------------------------
class YouTubeOptions(BaseModel):
    """The publish step's config as YouTube reads it; unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    privacy: Literal["public", "unlisted", "private"] | None = None
    category_id: str = "22"  # People & Blogs
    tags: list[str] = Field(default_factory=list)
    made_for_kids: bool = False
    publish_at: AwareDatetime | None = None
    notify_subscribers: bool = True
    # The rest of a publish step's config: read elsewhere (captions, scheduling) or by other targets of the step;
    # YouTube's own extras (publish_at, notify_subscribers, ...) come from platform_options.
    use_original_caption: bool | None = None
    custom_caption: str | None = None
    schedule_at: AwareDatetime | None = None
    share_to_feed: bool | None = None

    @field_validator("category_id", mode="before")
    @classmethod
    def _category(cls, value: Any) -> str:
        if not str(value).isdigit():
            raise ValueError(f"{value!r} is not a YouTube category id (digits, e.g. 22)")
        return str(value)


YOUTUBE_KEYS = ("title", "privacy", "category_id", "tags", "made_for_kids", "publish_at", "notify_subscribers")


def _youtube_platform_options(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where the step's YouTube extras are: ``platform_options.youtube`` when the step publishes to several
    platforms (any platform name as a key means nested), else ``platform_options`` itself."""
    extras = options.get("platform_options") or {}
    if not isinstance(extras, dict):
        raise Rejected("youtube option 'platform_options' must be a mapping")
    if "youtube" in extras:
        if not isinstance(extras["youtube"], dict):
            raise Rejected("youtube option 'platform_options.youtube' must be a mapping")
        return "platform_options.youtube", extras["youtube"]
    if set(extras) & set(get_args(PlatformName)):
        return "platform_options.youtube", {}  # nested for other platforms; none for YouTube
    return "platform_options", extras


def parse_options(options: Mapping[str, Any]) -> YouTubeOptions:
    """The step config with YouTube's extras from ``platform_options`` (which win); ``Rejected`` names every bad
    field and the allowed keys."""
    where, extras = _youtube_platform_options(options)
    merged = {**{k: v for k, v in options.items() if k != "platform_options"}, **extras}
    origin = {k: f"{where}.{k}" for k in extras}
    known = ", ".join(YOUTUBE_KEYS)
    problems = [f"youtube option '{origin[k]}' is not known ({known})" for k in extras if k not in YOUTUBE_KEYS]
    try:
        parsed = YouTubeOptions.model_validate(
            {k: v for k, v in merged.items() if k in YOUTUBE_KEYS or k not in origin}
        )
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            field = ".".join([origin.get(key, key), *(str(p) for p in err["loc"][1:])])
            if err["type"] == "extra_forbidden":
                problems.append(f"youtube option '{field}' is not known ({known})")
            else:
                problems.append(f"youtube option '{field}': {err['msg']}")
        parsed = None
    if problems or parsed is None:
        raise Rejected("; ".join(problems))
    return parsed


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
    privacy = opts.privacy or ("private" if opts.publish_at else "public")
    status: dict[str, Any] = {"privacyStatus": privacy, "selfDeclaredMadeForKids": opts.made_for_kids}
    if opts.publish_at is not None:
        if opts.publish_at <= (now or datetime.now(UTC)):
            problems.append(f"youtube publish_at {opts.publish_at.isoformat()} is not in the future")
        if privacy != "private":
            problems.append(
                f"youtube publish_at needs privacy 'private' (YouTube makes it public then), got '{privacy}'"
            )
        status["publishAt"] = opts.publish_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    snippet: dict[str, Any] = {"title": title, "description": description, "categoryId": opts.category_id}
    if tags:
        snippet["tags"] = tags
    body = {"snippet": snippet, "status": status}
    return Metadata(title, description, body, opts.notify_subscribers, tuple(problems))


# -- the RSS feed ---------------------------------------------------------------------------------------------------
def feed_entries(data: bytes) -> list[tuple[str | None, ContentItem]]:
    """``(channel id, video)`` for each entry of a channel's Atom feed or a WebSub notification, oldest first;
    ``FeedError`` if the body is not a feed. A notification of a deleted video has no entries."""
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise FeedError(f"youtube: not a readable channel feed: {parsed.get('bozo_exception')}")
    out = []
    for entry in parsed.entries:
        video_id = entry.get("yt_videoid") or str(entry.get("id", "")).removeprefix("yt:video:")
        if not video_id:
            continue
        title = entry.get("title") or ""
        description = entry.get("summary") or ""
        media = [
            MediaRef(
                url=t["url"],
                mime_type="image/jpeg",
                width=int(t["width"]) if str(t.get("width", "")).isdigit() else None,
                height=int(t["height"]) if str(t.get("height", "")).isdigit() else None,
            )
            for t in entry.get("media_thumbnail") or []
            if t.get("url")
        ]
        item = ContentItem(
            platform="youtube",
            platform_post_id=video_id,
            content_type="video",
            title=title,
            caption=description,
            url=entry.get("link") or WATCH_URL.format(video_id),
            media=media,
            hashtags=extract_hashtags(f"{title} {description}"),
            published_at=struct_time_utc(entry.get("published_parsed") or entry.get("updated_parsed")),
            author=entry.get("author"),
        )
        out.append((entry.get("yt_channelid"), item))
    return sorted(out, key=lambda pair: pair[1].published_at or datetime.min.replace(tzinfo=UTC))


def items_from_feed(data: bytes) -> list[ContentItem]:
    """The videos of a channel's Atom feed, oldest first."""
    return [item for _, item in feed_entries(data)]


def topic_for(channel_id: str) -> str:
    """The WebSub topic of a channel's uploads (the push-notifications guide)."""
    return f"https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}"


def topic_channel(topic: str) -> str | None:
    """The channel id of a YouTube feed topic (``/xml/feeds/videos.xml`` or ``/feeds/videos.xml``), else None."""
    parsed = urlparse(topic)
    feeds = ("/xml/feeds/videos.xml", "/feeds/videos.xml")
    if parsed.hostname not in ("www.youtube.com", "youtube.com") or parsed.path not in feeds:
        return None
    found = parse_qs(parsed.query).get("channel_id")
    return found[0] if found and re.fullmatch(r"[\w-]{3,64}", found[0]) else None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


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
    conn_type = "kipu_youtube"
    hook_name = "Kipu YouTube (Data API v3)"
    base_url: ClassVar[str] = "https://www.googleapis.com"
    me_path: ClassVar[str] = "/youtube/v3/channels?part=snippet&mine=true"
    capabilities: ClassVar[Capabilities] = Capabilities(text=False, video=True, scheduling=True)
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
                f"midnight Pacific Time, in {_hours(wait)}",
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
            opts = parse_options(request.options)
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
        meta = build_metadata(request, parse_options(request.options))
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
    def uploads_playlist(self) -> str:
        """The channel's uploads playlist id (from the connection's metadata when known, else channels.list)."""
        known = self.credentials.metadata.get("uploads_playlist_id") or self._uploads_id
        if known:
            return str(known)
        data = self.api(
            "channels.list", "GET", "/youtube/v3/channels", params={"part": "contentDetails", "mine": "true"}
        ).json()
        items = data.get("items") or []
        if not items:
            raise NeedsReconnect("youtube: this Google account has no YouTube channel; create one, then connect again")
        self._uploads_id = str(items[0]["contentDetails"]["relatedPlaylists"]["uploads"])
        return self._uploads_id

    def recent_uploads(self, limit: int = 25) -> list[dict[str, Any]]:
        """The uploads playlist's items, newest first (1 unit per page, plus channels.list once)."""
        playlist = self.uploads_playlist()
        data = self.api(
            "playlistItems.list",
            "GET",
            "/youtube/v3/playlistItems",
            params={"part": "snippet,contentDetails", "playlistId": playlist, "maxResults": min(max(limit, 1), 50)},
        ).json()
        return list(data.get("items") or [])

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """A video on the channel with this request's title and description, uploaded since the intent was written:
        what makes a retry after a crash or an ambiguous failure safe."""
        try:
            meta = build_metadata(request, parse_options(request.options))
        except Rejected:
            return None  # check() reports the options; nothing could have been uploaded with them
        since = (request.created_at or datetime.now(UTC) - timedelta(days=1)) - timedelta(minutes=1)
        for item in self.recent_uploads():
            snippet = item.get("snippet") or {}
            when = _when((item.get("contentDetails") or {}).get("videoPublishedAt") or snippet.get("publishedAt"))
            if (snippet.get("title"), snippet.get("description")) != (meta.title, meta.description):
                continue
            if when is None or when >= since:
                video = (snippet.get("resourceId") or {}).get("videoId") or (item.get("contentDetails") or {}).get(
                    "videoId"
                )
                if video:
                    return self._result(str(video))
        return None

    def _playlist_items(self, limit: int) -> list[ContentItem]:
        out = []
        for item in reversed(self.recent_uploads(limit)):
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
                    published_at=_when(details.get("videoPublishedAt") or snippet.get("publishedAt")),
                    author=snippet.get("channelTitle"),
                )
            )
        return out

    @property
    def feed_url(self) -> str:
        return f"{self.feed_base}/feeds/videos.xml?channel_id={self.channel_id}"

    def list_posts(self, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        """The channel's RSS feed (its 15 newest videos, no quota); the uploads playlist when the feed fails."""
        try:
            items = items_from_feed(self.call("GET", self.feed_url, auth=False).content)
        except (Transient, Rejected):
            items = self._playlist_items(limit)
        return _since(items, since_id, limit)

    async def fetch_posts(self, http: LimitedClient, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        try:
            resp = await http.request("GET", self.feed_url, platform="youtube", token_key=self.channel_id)
            items = items_from_feed(resp.content)
        except (Transient, Rejected):
            # The fallback costs quota and goes through the hook's own path (quota ledger, error mapping).
            items = await asyncio.to_thread(self._playlist_items, limit)
        return _since(items, since_id, limit)
