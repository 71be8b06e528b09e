"""Facebook Pages: feed posts, photos (one, or several attached to one post) and Reels through ``video_reels`` start →
streamed upload to rupload.facebook.com → finish, then a bounded status poll. Publishing needs a Page token: a user
token stored in its place is detected and reported as ``NeedsReconnect``. Sources: docs/platforms/meta.md."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from pydantic import SecretStr

from kipu.auth import oauth
from kipu.hooks.base import (
    NeedsReconnect,
    PlatformError,
    PublishRequest,
    PublishResult,
    Rejected,
    Transient,
)
from kipu.hooks.client import Flow
from kipu.hooks.media import CHUNK, MediaFile, VideoLimits, check_video, open_media
from kipu.hooks.platform import Credentials, TokenSet
from kipu.hooks.times import utc_time
from kipu.platforms.meta.graph import GraphHook
from kipu.specs.items import ContentItem, MediaRef

MAX_PHOTOS = 10
# Reels Publishing API: 3-90 s (1 GB is Meta's general video cap; Reels are far smaller in practice).
REEL_LIMITS = VideoLimits(max_bytes=1_000_000_000, min_duration=3, max_duration=90)
UPLOAD_ATTEMPTS = 3  # a broken upload resumes from the offset Meta reports, at most this often
POST_FIELDS = "id,message,created_time,permalink_url,full_picture"
PAGE_FIELDS = "id,name,access_token,tasks"
MAX_PAGE_LISTS = 20  # /me/accounts pages of 100 Pages each, followed by cursor
REEL_FIELDS = "id,description,created_time"


class FacebookPageHook(GraphHook):
    platform: ClassVar[str] = "facebook"
    base_url: ClassVar[str] = "https://graph.facebook.com"
    me_path: ClassVar[str] = f"/{GraphHook.api_version}/me?fields=id,name"
    processing_timeout: float = 300.0
    poll_interval: float = 5.0
    _page_token_checked: bool = False

    # -- connecting: one connection per Page ------------------------------------------------------------------------
    exchange_grant: ClassVar[str | None] = "fb_exchange_token"

    @classmethod
    def exchange_params(cls, app: oauth.OAuthApp, short: str, secret: str) -> tuple[str, dict[str, str]]:
        return f"/{cls.api_version}/oauth/access_token", {
            "grant_type": "fb_exchange_token",
            "client_id": app.client_id,
            "client_secret": secret,
            "fb_exchange_token": short,
        }

    @classmethod
    def connect(cls, base_url: str, app: oauth.OAuthApp, tokens: TokenSet) -> list[oauth.ConnectedAccount]:
        """The code exchange answers a user token; Kipu publishes as Pages. The user token is made long-lived, the
        Pages the user manages are listed with their Page tokens (which, obtained with a long-lived user token, do
        not expire), and each Page becomes a connection: its token as the access token, the long-lived user token
        as the refresh token (``refresh_tokens`` derives a new Page token from it), ``metadata.page_id``."""
        user = cls.long_lived(base_url, app, tokens)
        pages = cls.managed_pages(base_url, user.access_token)
        if not pages:
            raise Rejected(
                "facebook: this Facebook account manages no Page, or shared none with Kipu when asked: Kipu publishes "
                "to Facebook Pages, not to personal profiles; create a Page (or get a role on one) and connect again, "
                "selecting the Page"
            )
        usable = [p for p in pages if p.get("access_token") and (not p.get("tasks") or "CREATE_CONTENT" in p["tasks"])]
        if not usable:
            names = ", ".join(str(p.get("name") or p["id"]) for p in pages)
            raise Rejected(
                f"facebook: this Facebook account cannot publish to any of the Pages it manages ({names}): it needs "
                "the CREATE_CONTENT task on a Page; ask the Page's admin for it and connect again"
            )
        host = cls.host_metadata(base_url)
        return [
            oauth.ConnectedAccount(
                str(p["id"]),
                str(p.get("name") or p["id"]),
                TokenSet(
                    access_token=SecretStr(str(p["access_token"])),
                    refresh_token=user.access_token,
                    scopes=tokens.scopes,
                ),
                {"page_id": str(p["id"]), **host},
            )
            for p in usable
        ]

    @classmethod
    def managed_pages(cls, base_url: str, user_token: SecretStr) -> list[dict[str, Any]]:
        """``GET /me/accounts``: every Page the user can act on, with its Page token and the user's tasks on it."""
        pages: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGE_LISTS):
            params: dict[str, Any] = {"fields": PAGE_FIELDS, "limit": 100, **({"after": after} if after else {})}
            body = cls.connect_call(
                base_url,
                f"/{cls.api_version}/me/accounts",
                "listing the Pages the user manages",
                params=params,
                token=user_token,
            )
            pages += [p for p in body.get("data") or [] if isinstance(p, dict) and p.get("id")]
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
        return pages

    @property
    def page_id(self) -> str:
        return str(self.credentials.metadata.get("page_id") or self.credentials.platform_user_id)

    # -- the token must be the Page's ---------------------------------------------------------------------------------
    def ensure_page_token(self) -> None:
        """``/me`` with a Page token is the Page itself; anything else means the wrong token was stored."""
        if self._page_token_checked:
            return
        me = self.call("GET", self.path("me"), params={"fields": "id,name"}).json()
        if str(me.get("id")) != self.page_id:
            raise NeedsReconnect(
                f"facebook: the stored token is not the Page token for page {self.page_id}: it belongs to "
                f"{me.get('name') or 'someone else'} ({me.get('id')}): a user token was stored instead of a page token "
                "(or another Page's token); reconnect the page so Kipu stores this page's token"
            )
        self._page_token_checked = True

    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        """A new Page token derived from the long-lived user token kept as the refresh token, when there is one."""
        user = credentials.refresh_token
        if user is None:
            raise NeedsReconnect(
                "facebook: the page token was refused and no user token is stored to renew it; reconnect the page"
            )
        try:
            page = self.call(
                "GET",
                self.path(self.page_id),
                auth=False,
                params={"fields": "access_token"},
                headers={"Authorization": f"Bearer {user.get_secret_value()}"},
            ).json()
        except (PlatformError, KeyError) as exc:
            if isinstance(exc, Transient):
                raise
            raise NeedsReconnect("facebook: the page token could not be renewed; reconnect the page") from None
        if not page.get("access_token"):
            raise NeedsReconnect(f"facebook: the user cannot manage page {self.page_id} any more; reconnect the page")
        self._page_token_checked = False
        return TokenSet(access_token=SecretStr(page["access_token"]))

    # -- limits -----------------------------------------------------------------------------------------------------
    def check(self, request: PublishRequest) -> list[str]:
        problems = list(super().check(request))
        media = [m for m in request.media if m.kind in ("image", "video")]
        videos = [m for m in media if m.kind == "video"]
        if videos and len(media) > 1:
            problems.append("facebook publishes either photos or one Reel per post, not both")
        if len(videos) == 1 and len(media) == 1:
            problems.extend(check_video(videos[0].url, REEL_LIMITS, "facebook"))
        if not media and not request.caption.strip() and not request.link:
            problems.append("facebook needs a message, a link, photos or a Reel")
        return problems

    # -- publishing -------------------------------------------------------------------------------------------------
    def publish(self, request: PublishRequest) -> PublishResult:
        problems = self.check(request)
        if problems:
            raise Rejected("; ".join(problems))
        media = [m for m in request.media if m.kind in ("image", "video")]
        urls = [self.media_url(m) for m in media if m.kind == "image"]  # Meta fetches photos itself
        self.ensure_page_token()
        if media and media[0].kind == "video":
            return self._reel(media[0], request)
        return self._once(request, lambda: self._post(request, urls))

    def _once(self, request: PublishRequest, create: Any) -> PublishResult:
        """A non-idempotent create, sent once: after an ambiguous failure the Page is asked whether it landed."""
        try:
            return create()
        except (Transient, Rejected) as exc:
            if isinstance(exc, Rejected) and "(Graph error 506" not in str(exc):  # "duplicate post": it landed
                raise
            found = self.find_published(request)
            if found is not None:
                return found
            raise

    def _post(self, request: PublishRequest, photo_urls: list[str]) -> PublishResult:
        feed = self.path(self.page_id, "feed")
        if len(photo_urls) == 1:
            body = {"url": photo_urls[0], "caption": request.caption}
            out = self.call("POST", self.path(self.page_id, "photos"), retries=0, data=body).json()
            return self._result(str(out.get("post_id") or out["id"]))
        data: dict[str, Any] = {"message": request.caption}
        if request.link:
            data["link"] = request.link
        for i, url in enumerate(photo_urls):  # unpublished photos attached to one post
            photo = self.call("POST", self.path(self.page_id, "photos"), data={"url": url, "published": "false"}).json()
            data[f"attached_media[{i}]"] = json.dumps({"media_fbid": str(photo["id"])})
        return self._result(str(self.call("POST", feed, retries=0, data=data).json()["id"]))

    def _result(self, post_id: str) -> PublishResult:
        return PublishResult(platform_post_id=post_id, url=f"https://www.facebook.com/{post_id}")

    # -- Reels -------------------------------------------------------------------------------------------------------
    def _reel(self, video: MediaRef, request: PublishRequest) -> PublishResult:
        reels = self.path(self.page_id, "video_reels")
        start = self.call("POST", reels, data={"upload_phase": "start"}).json()
        video_id = str(start["video_id"])
        upload_url = start.get("upload_url") or f"https://rupload.facebook.com/video-upload/{self.version}/{video_id}"
        with open_media(video.url, REEL_LIMITS.max_bytes or 1 << 40, "facebook", video.mime_type) as media:
            self._upload(upload_url, media, video_id)
        finish = {
            "upload_phase": "finish",
            "video_id": video_id,
            "video_state": "PUBLISHED",
            "description": request.caption,
        }
        try:
            self.call("POST", reels, retries=0, data=finish)
        except Transient:
            if self._reel_state(video_id) is None:  # did the finish land? the video knows
                raise
        return self._await_reel(video_id)

    def _upload(self, url: str, media: MediaFile, video_id: str) -> None:
        """Stream the file to rupload (never whole in memory); resume from Meta's ``bytes_transferred`` on a break."""
        token = self.credentials.access_token
        if token is None:
            raise NeedsReconnect("facebook: the connection has no access token; reconnect the page")
        offset = 0
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            headers = {
                "Authorization": f"OAuth {token.get_secret_value()}",
                "offset": str(offset),
                "file_size": str(media.size),
                "Content-Length": str(media.size - offset),
                "Content-Type": "application/octet-stream",
            }
            try:
                self.call("POST", url, auth=False, retries=0, headers=headers, content=media.chunks(CHUNK, offset))
                return
            except Transient:
                if attempt == UPLOAD_ATTEMPTS:
                    raise
                phase = (self._status(video_id).get("uploading_phase") or {}) if video_id else {}
                offset = int(phase.get("bytes_transferred") or 0)
                if offset >= media.size:
                    return
            except Rejected as exc:
                raise Rejected(f"facebook: the Reel upload was refused: {str(exc).split(': ', 1)[-1]}") from None

    def _status(self, video_id: str) -> dict[str, Any]:
        return dict(self.call("GET", self.path(video_id), params={"fields": "status"}).json().get("status") or {})

    def _reel_state(self, video_id: str) -> PublishResult | None:
        """Published (final), processing (awaiting) or ``None`` when not published; ``Rejected`` on a Meta error."""
        status = self._status(video_id)
        processing = status.get("processing_phase") or {}
        publishing = status.get("publishing_phase") or {}
        if status.get("video_status") == "error" or processing.get("status") == "error":
            errors = "; ".join(str(e.get("message", e)) for e in processing.get("errors") or [] if e)
            raise Rejected(f"facebook: Reel {video_id} failed processing" + (f": {errors}" if errors else ""))
        if publishing.get("status") == "complete" and status.get("video_status") in ("ready", "published", None):
            return PublishResult(platform_post_id=video_id, url=f"https://www.facebook.com/reel/{video_id}")
        if publishing.get("status") in ("complete", "in_progress") or status.get("video_status") == "processing":
            return PublishResult(awaiting=True, publish_ref=video_id)
        return None

    def _await_reel(self, video_id: str) -> PublishResult:
        """Bounded: a Reel still processing at the deadline is recorded as awaiting and settled later."""
        deadline = time.monotonic() + self.processing_timeout
        while True:
            state = self._reel_state(video_id)
            if state is not None and not state.awaiting:
                return state
            left = deadline - time.monotonic()
            if left <= 0:
                return PublishResult(awaiting=True, publish_ref=video_id)
            time.sleep(min(self.poll_interval, left))

    # -- exactly once and polling -------------------------------------------------------------------------------------
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        if request.publish_ref:  # a Reel accepted earlier and still processing then
            return self._reel_state(request.publish_ref)
        if any(m.kind == "video" for m in request.media):
            reels = self.list_edge(self.path(self.page_id, "video_reels"), REEL_FIELDS, 25)
            hit = self.find_recent(request, reels, "description", "created_time")
            return self._reel_state(str(hit["id"])) if hit else None
        hit = self.find_recent(
            request,
            self.list_edge(self.path(self.page_id, "published_posts"), POST_FIELDS, 25),
            "message",
            "created_time",
        )
        return PublishResult(platform_post_id=str(hit["id"]), url=hit.get("permalink_url")) if hit else None

    def _items(self, posts: list[dict[str, Any]]) -> list[ContentItem]:
        return [
            ContentItem(
                platform="facebook",
                platform_post_id=str(p["id"]),
                content_type="image" if p.get("full_picture") else "text",
                caption=p.get("message") or "",
                url=p.get("permalink_url"),
                media=[MediaRef(url=p["full_picture"], mime_type="image/jpeg")] if p.get("full_picture") else [],
                published_at=utc_time(p.get("created_time")),
                author=self.credentials.username,
            )
            for p in reversed(posts)  # newest first from Meta
        ]

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        return self.poll_edge(self.path(self.page_id, "published_posts"), POST_FIELDS, since_id, limit)
