"""Mastodon (REST API on the account's own instance): statuses with an ``Idempotency-Key``, media through
``/api/v2/media`` (202, then polled until processed) with alt text, scheduled statuses settled later, the instance's
limits, ``X-RateLimit-*`` windows, and the account's statuses for polling (``min_id`` pages forward)."""

from __future__ import annotations

import mimetypes
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from kipu.auth import oauth
from kipu.captions.counting import URL_RE, grapheme_count, link_weighted_length
from kipu.captions.platforms import CaptionRules
from kipu.hooks.base import (
    NeedsReconnect,
    PlatformError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    Transient,
)
from kipu.hooks.client import Call, Flow, reset_time
from kipu.hooks.media import open_media
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.hooks.platform import Credentials, TokenSet
from kipu.hooks.times import utc_time
from kipu.platforms.mastodon.instance import InstanceLimits, limits_of
from kipu.platforms.mastodon.options import MastodonOptions
from kipu.platforms.mastodon.text import plain_text
from kipu.platforms.options import parse
from kipu.specs.items import ContentItem, MediaRef

# Mastodon refuses a ``scheduled_at`` less than five minutes ahead; a nearer time is published at once.
MIN_SCHEDULE = timedelta(minutes=5)
# How long an ``Idempotency-Key`` is kept by the instance: a retry within it cannot post twice.
IDEMPOTENCY_WINDOW = timedelta(minutes=55)
# A scheduled status that is neither scheduled nor found this long after its time was cancelled or deleted.
SCHEDULE_GRACE = timedelta(days=1)
PAGE = 40  # the most statuses one call lists
MAX_PAGES = 5  # pages read in one poll when earlier pages held only statuses Kipu never reposts
SHARED = ("public", "unlisted")  # followers-only and direct statuses are never reposted elsewhere
MEDIA_KINDS = {"image": "image/*", "gifv": "video/mp4", "video": "video/*", "audio": "audio/*"}


def _plain(text: str) -> str:
    """Text for finding a status again: links and mentions are rendered by the instance, so they are left out."""
    text = URL_RE.sub("", text)
    text = re.sub(r"@[\w.-]+(?:@[\w.-]+)?", "", text)
    return re.sub(r"\s+", " ", text).strip()


class MastodonHook(OAuthPlatformHook):
    platform: ClassVar[str] = "mastodon"
    base_url: ClassVar[str] = ""  # every account lives on its own instance (``metadata.base_url``)
    me_path: ClassVar[str] = "/api/v1/accounts/verify_credentials"
    message_keys: ClassVar[tuple[str, ...]] = ("error",)
    # 300 requests per 5 minutes per account (Mastodon's default); the X-RateLimit-* headers keep us under the
    # instance's real window, whatever it is.
    token_rate: ClassVar[float | None] = 1.0
    token_burst: ClassVar[float] = 30
    limit_headers: ClassVar[tuple[str, str] | None] = ("x-ratelimit-remaining", "x-ratelimit-reset")
    processing_timeout: float = 120.0  # seconds for the instance to process an upload
    processing_interval: float = 1.0

    # -- connecting ------------------------------------------------------------------------------------------------
    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        return str(data["id"]), data.get("username")

    @classmethod
    def connect(cls, base_url: str, app: oauth.OAuthApp, tokens: TokenSet) -> list[oauth.ConnectedAccount]:
        """The account behind the token on its instance, with the instance's limits. An account id is only unique
        on its instance, so the connection's user id is ``id@host``."""
        base = base_url.rstrip("/")
        account_id, username = cls.identify(base, tokens)
        host = httpx.URL(base).netloc.decode("ascii")
        metadata = {
            "base_url": base,
            "account_id": account_id,
            "limits": limits_of(base).model_dump(),
        }
        return [oauth.ConnectedAccount(f"{account_id}@{host}", f"{username}@{host}", tokens, metadata)]

    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        raise NeedsReconnect("mastodon: the access token was revoked (Mastodon tokens do not expire); reconnect")

    @property
    def account_id(self) -> str:
        return str(self.credentials.metadata.get("account_id") or self.credentials.platform_user_id.split("@")[0])

    @property
    def limits(self) -> InstanceLimits:
        return InstanceLimits.model_validate(self.credentials.metadata.get("limits") or {})

    @property
    def caption_rules(self) -> CaptionRules:
        """Mastodon's rules with this instance's status limit."""
        return replace(super().caption_rules, max_length=self.limits.max_characters)

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        error = super().map_error(response)
        if isinstance(error, RateLimited) and error.retry_after is None:  # Mastodon sends its window's end instead
            reset = reset_time(response.headers.get("x-ratelimit-reset"))
            if reset is not None:
                error.retry_after = max(0.0, reset - time.time())
        if error is not None and len(str(error)) > 300:  # the instance's words, kept short
            error = type(error)(str(error)[:300])
        return error

    # -- limits ----------------------------------------------------------------------------------------------------
    def options(self, request: PublishRequest) -> MastodonOptions:
        return parse(self.platform, request.options) or MastodonOptions()

    def check(self, request: PublishRequest) -> list[str]:
        problems = super().check(request)
        if any(p.startswith("mastodon option") for p in problems):
            return problems
        limits, opts = self.limits, self.options(request)
        # The instance counts the content warning and the text in one budget (the warning's links are not shortened).
        length = link_weighted_length(request.caption, limits.characters_reserved_per_url)
        total = length + grapheme_count(opts.spoiler_text or "")
        if total > limits.max_characters and not any(p.startswith("mastodon caption is") for p in problems):
            what = "caption and content warning are" if opts.spoiler_text else "caption is"
            problems.append(f"mastodon {what} {total} characters, over the limit of {limits.max_characters}")
        media = [m for m in request.media if m.kind in ("image", "video")]
        videos = [m for m in media if m.kind == "video"]
        if videos and len(media) > 1:
            problems.append(f"mastodon takes one video or up to {limits.max_media_attachments} images, not both")
        elif self.capabilities.max_images >= len(media) > limits.max_media_attachments:
            problems.append(
                f"mastodon takes at most {limits.max_media_attachments} media on this instance, got {len(media)}"
            )
        for m in media:
            if m.alt_text and len(m.alt_text) > limits.description_limit:
                problems.append(
                    f"mastodon alt text of {m.url} is {len(m.alt_text)} characters, over the limit of "
                    f"{limits.description_limit}"
                )
            size_limit = limits.video_size_limit if m.kind == "video" else limits.image_size_limit
            if m.size_bytes is not None and m.size_bytes > size_limit:
                problems.append(f"mastodon {m.kind} {m.url} is {m.size_bytes} bytes, over the limit of {size_limit}")
        return problems

    # -- media -----------------------------------------------------------------------------------------------------
    def upload(self, media: MediaRef) -> str:
        """Upload one file with its alt text; wait (bounded) until the instance has processed it."""
        video = media.kind == "video"
        limit = self.limits.video_size_limit if video else self.limits.image_size_limit
        mime = media.mime_type if media.mime_type and "*" not in media.mime_type else None
        with open_media(media.url, limit, self.platform, mime) as local, local.open() as fh:
            name = local.path.name
            mime = mime or local.mime_type or mimetypes.guess_type(name)[0] or ("video/mp4" if video else "image/jpeg")
            data = {"description": media.alt_text} if media.alt_text else {}
            resp = self.call("POST", "/api/v2/media", files={"file": (name, fh, mime)}, data=data)
        attachment = resp.json()
        if resp.status_code == 202 or not attachment.get("url"):
            self._processed(str(attachment["id"]))
        return str(attachment["id"])

    def _processed(self, media_id: str) -> None:
        """``GET /api/v1/media/:id`` until 200 (206 while processing); 422 when the instance could not process it."""
        deadline = time.monotonic() + self.processing_timeout
        while True:
            resp = self.call("GET", f"/api/v1/media/{media_id}")
            if resp.status_code == 200 and resp.json().get("url"):
                return
            if time.monotonic() > deadline:
                raise Transient(f"mastodon: media {media_id} still processing after {self.processing_timeout:g}s")
            time.sleep(self.processing_interval)

    # -- publishing ------------------------------------------------------------------------------------------------
    def _result(self, status: dict[str, Any]) -> PublishResult:
        local = (self.credentials.username or "").split("@")[0]
        url = status.get("url") or f"{self.base}/@{local}/{status['id']}"
        return PublishResult(platform_post_id=str(status["id"]), url=url)

    def publish(self, request: PublishRequest) -> PublishResult:
        opts = self.options(request)
        media_ids = [self.upload(m) for m in request.media if m.kind in ("image", "video")]
        body: dict[str, Any] = {"status": request.caption, **opts.model_dump(exclude_none=True)}
        if media_ids:
            body["media_ids"] = media_ids
        if request.schedule_at is not None and request.schedule_at > datetime.now(UTC) + MIN_SCHEDULE:
            body["scheduled_at"] = request.schedule_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        # The key makes the instance answer a repeat (a retry, a crash after the call) with the first status.
        resp = self.call("POST", "/api/v1/statuses", json=body, headers={"Idempotency-Key": request.idempotency_key})
        answer = resp.json()
        if "scheduled_at" in body:
            ref = f"scheduled:{answer['id']}"
            self.accepted(ref)
            return PublishResult(awaiting=True, publish_ref=ref)
        self.accepted(str(answer["id"]))
        return self._result(answer)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """The status this request became: by its id once the instance accepted it, by its scheduled status until
        that is published, else (the instance forgets an idempotency key after an hour) among the newest."""
        ref = request.publish_ref
        if ref and ref.startswith("scheduled:"):
            return self._scheduled(ref.removeprefix("scheduled:"), request)
        if ref:
            try:
                return self._result(self.call("GET", f"/api/v1/statuses/{ref}").json())
            except Rejected:
                raise Rejected(f"mastodon: status {ref} was published and has since been deleted") from None
        created = request.created_at or datetime.now(UTC)
        if datetime.now(UTC) - created < IDEMPOTENCY_WINDOW:
            return None  # publishing again with the same key returns the status if there is one
        return self._among_newest(request, created)

    def _scheduled(self, scheduled_id: str, request: PublishRequest) -> PublishResult | None:
        try:
            self.call("GET", f"/api/v1/scheduled_statuses/{scheduled_id}")
        except Rejected:  # no longer scheduled: published (or cancelled)
            when = request.schedule_at or request.created_at or datetime.now(UTC)
            found = self._among_newest(request, when)
            if found is not None:
                return found
            if datetime.now(UTC) > when + SCHEDULE_GRACE:
                raise Rejected(f"mastodon: scheduled status {scheduled_id} was cancelled on the instance") from None
        return PublishResult(awaiting=True, publish_ref=f"scheduled:{scheduled_id}")

    def _among_newest(self, request: PublishRequest, since: datetime) -> PublishResult | None:
        wanted = _plain(request.caption)
        params = {"limit": PAGE, "exclude_reblogs": "true"}
        for status in self.call("GET", f"/api/v1/accounts/{self.account_id}/statuses", params=params).json():
            created = utc_time(status.get("created_at"))
            if created is not None and created < since - timedelta(minutes=1):
                break
            if _plain(plain_text(status.get("content") or "")) == wanted:
                return self._result(status)
        return None

    # -- polling ---------------------------------------------------------------------------------------------------
    def _item(self, status: dict[str, Any]) -> ContentItem:
        media = [
            MediaRef(
                url=a["url"],
                mime_type=MEDIA_KINDS.get(a.get("type", ""), "application/octet-stream"),
                alt_text=a.get("description") or None,
                width=((a.get("meta") or {}).get("original") or {}).get("width"),
                height=((a.get("meta") or {}).get("original") or {}).get("height"),
                duration_seconds=((a.get("meta") or {}).get("original") or {}).get("duration"),
            )
            for a in status.get("media_attachments") or []
            if a.get("url")
        ]
        kinds = {m.kind for m in media}
        content_type = "text" if not media else "carousel" if len(media) > 1 else kinds.pop()
        return ContentItem(
            platform=self.platform,
            platform_post_id=str(status["id"]),
            content_type=content_type if content_type in ("text", "image", "video", "carousel") else "text",
            caption=plain_text(status.get("content") or ""),
            url=status.get("url"),
            media=media,
            hashtags=[t["name"] for t in status.get("tags") or [] if t.get("name")],
            published_at=utc_time(status.get("created_at")),
            author=self.credentials.username,
        )

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        """The account's own statuses (no boosts, no replies), oldest first. After a cursor, ``min_id`` reads the
        statuses right after it, page by page, so a burst longer than a page is read in order, never skipped
        (``since_id`` would return the newest page and skip the gap). Followers-only and direct statuses are
        passed over; a page of nothing else does not count toward ``pages``, so they never hold the cursor."""
        params: dict[str, Any] = {"limit": min(limit, PAGE), "exclude_reblogs": "true", "exclude_replies": "true"}
        if since_id:
            params["min_id"] = since_id
        found: list[dict[str, Any]] = []
        read = 0
        for _ in range(MAX_PAGES):
            resp = yield Call("GET", f"/api/v1/accounts/{self.account_id}/statuses", kwargs={"params": dict(params)})
            page = [s for s in resp.json() if isinstance(s, dict) and s.get("id")]
            shared = [s for s in page if s.get("visibility") in SHARED]
            found += shared
            read += 1 if shared else 0
            if not since_id or len(page) < params["limit"] or read >= (pages or MAX_PAGES):
                break
            params["min_id"] = max((str(s["id"]) for s in page), key=lambda i: (len(i), i))
        found.sort(key=lambda s: (len(str(s["id"])), str(s["id"])))
        return [self._item(s) for s in found]
