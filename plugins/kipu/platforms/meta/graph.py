"""The Graph API base shared by Instagram, Facebook Pages and Threads: Meta's error bodies mapped onto Kipu's taxonomy,
a configurable API version, token refresh, publishing-quota checks and the container flow (create → bounded status
poll → publish) that Instagram and Threads share. Sources: docs/platforms/meta.md."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from kipu import egress
from kipu.auth import oauth
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
from kipu.hooks.client import Call, Flow, parse_retry_after
from kipu.hooks.media import public_url
from kipu.hooks.oauth_platform import OAuthPlatformHook
from kipu.hooks.platform import Credentials, TokenSet
from kipu.hooks.times import utc_time
from kipu.specs.items import ContentItem, MediaRef

log = logging.getLogger(__name__)

# Graph throttling codes: app (4), user (17), page (32), custom (613), Business Use Case (80001-80014).
RATE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
# Auth subcodes of code 190 that no refresh can cure (Graph API "Handling Errors").
RECONNECT_SUBCODES = {
    458: "the app was removed from the account",
    459: "the account is checkpointed: the user must log in to Facebook or Instagram first",
    460: "the account password was changed",
    464: "the account is not confirmed",
    467: "the token is no longer valid (the user logged out)",
    492: "the session is invalid",
}
EXPIRED_SUBCODE = 463
# Instagram subcodes whose documented fix is "try again" (IG error codes table): the task retries.
IG_RETRY_SUBCODES = frozenset({2207001, 2207003, 2207006, 2207008, 2207020, 2207027, 2207032, 2207053})
IG_SPAM_SUBCODE = 2207051  # code 4 with this subcode is a spam restriction, not throttling
IG_DAILY_LIMIT_SUBCODE = 2207042
QUOTA_RETRY = 3600.0  # publishing quotas roll over 24 h: try again in an hour, not in seconds


@dataclass(frozen=True)
class GraphError:
    """Meta's ``{"error": {...}}`` body, or rupload's ``{"debug_info": {...}}``."""

    code: int | None
    subcode: int | None
    kind: str
    message: str
    transient: bool

    @classmethod
    def parse(cls, body: Any) -> GraphError | None:
        if not isinstance(body, dict):
            return None
        err = body.get("error")
        if isinstance(err, dict):
            text = err.get("error_user_msg") or err.get("message") or err.get("error_user_title") or ""
            return cls(
                code=_int(err.get("code")),
                subcode=_int(err.get("error_subcode")),
                kind=str(err.get("type") or ""),
                message=str(text),
                transient=bool(err.get("is_transient")),
            )
        debug = body.get("debug_info")  # rupload.facebook.com answers this way
        if isinstance(debug, dict):
            return cls(
                None, None, str(debug.get("type") or ""), str(debug.get("message") or ""), bool(debug.get("retriable"))
            )
        return None

    def describe(self, platform: str) -> str:
        codes = "/".join(str(c) for c in (self.code, self.subcode) if c is not None)
        return f"{platform}: {self.message or self.kind or 'error'}" + (f" (Graph error {codes})" if codes else "")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def regain_after(headers: httpx.Headers) -> float | None:
    """Seconds until access returns: ``Retry-After``, else the largest ``estimated_time_to_regain_access`` (minutes)
    in ``X-Business-Use-Case-Usage`` / ``X-Ad-Account-Usage``."""
    retry = parse_retry_after(headers.get("Retry-After"))
    if retry is not None:
        return retry
    minutes: list[float] = []
    for name in ("x-business-use-case-usage", "x-ad-account-usage"):
        try:
            usage = json.loads(headers.get(name) or "null")
        except ValueError:
            continue
        entries: Iterable[Any] = []
        if isinstance(usage, dict):
            entries = [e for v in usage.values() for e in (v if isinstance(v, list) else [v])] or [usage]
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("estimated_time_to_regain_access"), int | float):
                minutes.append(float(entry["estimated_time_to_regain_access"]))
    return max(minutes) * 60 if minutes else None


class GraphHook(OAuthPlatformHook):
    """A Graph API host with a versioned path, Meta's error mapping and the long-lived-token refresh grant."""

    api_version: ClassVar[str] = "v24.0"
    refresh_grant: ClassVar[str | None] = None  # ig_refresh_token / th_refresh_token
    me_path: ClassVar[str] = "/me"

    @property
    def version(self) -> str:
        """The Graph version in every path; ``metadata.api_version`` overrides it when Meta retires ours."""
        return str(self.credentials.metadata.get("api_version") or self.api_version).strip("/")

    def path(self, *parts: str) -> str:
        return "/" + "/".join((self.version, *parts))

    @property
    def account_id(self) -> str:
        return self.credentials.platform_user_id

    # -- errors ------------------------------------------------------------------------------------------------
    def map_error(self, response: httpx.Response) -> PlatformError | None:
        if response.status_code < 400:
            return None
        try:
            err = GraphError.parse(response.json())
        except ValueError:
            err = None
        if err is None:
            return super().map_error(response)
        return self.graph_error(err, response)

    def graph_error(self, err: GraphError, response: httpx.Response) -> PlatformError:
        text = err.describe(self.platform)
        code, sub = err.code, err.subcode
        if code in (190, 102):
            if sub in RECONNECT_SUBCODES:
                return NeedsReconnect(f"{self.platform}: {RECONNECT_SUBCODES[sub]}; reconnect the account ({text})")
            return AuthExpired(f"{text}: the access token has expired or was revoked")
        if code == 10 or (code is not None and 200 <= code <= 299):
            return NeedsReconnect(f"{text}: the token lacks a permission Kipu needs; reconnect and grant it")
        if code == 9 and sub == IG_DAILY_LIMIT_SUBCODE:
            return RateLimited(f"{text}: the account's daily API publishing limit is used up", QUOTA_RETRY)
        if code == 4 and sub == IG_SPAM_SUBCODE:
            return Rejected(text)
        if response.status_code == 429 or code in RATE_CODES or code == 368:
            return RateLimited(f"{text}: rate limited by Meta", regain_after(response.headers))
        if err.transient or response.status_code >= 500 or code in (1, 2, -1, -2) or sub in IG_RETRY_SUBCODES:
            return Transient(text)
        return Rejected(text)

    # -- connecting ----------------------------------------------------------------------------------------------
    exchange_grant: ClassVar[str | None] = None  # ig_exchange_token / th_exchange_token / fb_exchange_token

    @classmethod
    def connect(cls, base_url: str, app: oauth.OAuthApp, tokens: TokenSet) -> list[oauth.ConnectedAccount]:
        """The code exchange answers a short-lived (1 h) token: the account is stored with the long-lived one."""
        return super().connect(base_url, app, cls.long_lived(base_url, app, tokens))

    @classmethod
    def exchange_params(cls, app: oauth.OAuthApp, short: str, secret: str) -> tuple[str, dict[str, str]]:
        """The long-lived exchange's path and query (Instagram and Threads: ``GET /access_token``)."""
        return "/access_token", {"grant_type": str(cls.exchange_grant), "client_secret": secret, "access_token": short}

    @classmethod
    def long_lived(cls, base_url: str, app: oauth.OAuthApp, tokens: TokenSet) -> TokenSet:
        """A short-lived token traded for a long-lived (about 60 days) one, with its expiry; Meta documents the
        exchange as a GET with the app secret in the query, so it is made server-side only and never logged."""
        if cls.exchange_grant is None:
            return tokens
        if app.client_secret is None:
            raise Rejected(
                f"{cls.platform}: the long-lived token exchange needs the app secret: set it as the password of the "
                f"Airflow connection kipu_{cls.platform}_app (or KIPU_{cls.platform.upper()}_CLIENT_SECRET)"
            )
        path, params = cls.exchange_params(
            app, tokens.access_token.get_secret_value(), app.client_secret.get_secret_value()
        )
        what = "the long-lived token exchange"
        body = cls.connect_call(base_url, path, what, params=params, secrets=(app.client_secret, tokens.access_token))
        if not body.get("access_token"):
            raise Rejected(f"{cls.platform}: {what} answered without an access token")
        expires = body.get("expires_in")
        return TokenSet(
            access_token=SecretStr(str(body["access_token"])),
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires)) if expires else None,
            scopes=tokens.scopes,
            platform_user_id=tokens.platform_user_id,
        )

    @classmethod
    def connect_call(
        cls,
        base_url: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any],
        token: SecretStr | None = None,
        secrets: tuple[SecretStr | str | None, ...] = (),
    ) -> dict[str, Any]:
        """A GET made while connecting (no stored connection yet): errors name ``what`` failed and keep Meta's
        words, with every secret masked; the URL (which may carry the app secret) is never part of one."""
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else None
        try:
            with egress.client(timeout=20, deadline=egress.SMALL_ANSWER_SECONDS) as client:
                resp = client.get(f"{base_url.rstrip('/')}{path}", params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise Transient(f"{cls.platform}: {what} failed: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            why = oauth.response_message(resp, token, *secrets)
            text = f"{cls.platform}: {what} failed (HTTP {resp.status_code})" + (f": {why}" if why else "")
            try:
                err = GraphError.parse(resp.json())
            except ValueError:
                err = None
            if resp.status_code == 429 or (err is not None and err.code in RATE_CODES):
                raise RateLimited(text, regain_after(resp.headers))
            if resp.status_code >= 500 or (err is not None and err.transient):
                raise Transient(text)
            raise Rejected(text)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Transient(f"{cls.platform}: {what} answered something that is not a JSON object")
        return body

    # -- tokens ------------------------------------------------------------------------------------------------
    @classmethod
    def identity(cls, data: dict[str, Any]) -> tuple[str, str | None]:
        return str(data.get("user_id") or data["id"]), data.get("username") or data.get("name")

    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        """Meta refreshes a long-lived token with itself (``grant_type=<refresh_grant>``), never an expired one."""
        token = credentials.access_token
        if self.refresh_grant is None or token is None:
            return super().refresh_tokens(credentials)
        try:
            resp = self.call(
                "GET",
                "/refresh_access_token",
                auth=False,
                retries=1,
                params={"grant_type": self.refresh_grant},
                headers={"Authorization": f"Bearer {token.get_secret_value()}"},
            )
        except (AuthExpired, NeedsReconnect, Rejected) as exc:
            raise NeedsReconnect(
                f"{self.platform}: the access token could not be refreshed ({_reason(exc)}); Meta cannot refresh "
                "an expired long-lived token: reconnect the account"
            ) from None
        body = resp.json()
        expires = body.get("expires_in")
        return TokenSet(
            access_token=SecretStr(body["access_token"]),
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires)) if expires else None,
        )

    def refresh_if_expiring(self, within: timedelta = timedelta(days=1)) -> None:
        """Refresh a token that expires soon before using it: Meta refuses to refresh one that has expired."""
        expires = self.credentials.expires_at
        if self.refresh_grant is None or expires is None:
            return
        now = datetime.now(UTC)
        if now < expires <= now + within:
            try:
                self.refresh()
            except Transient as exc:  # the token still works for now; the next attempt refreshes
                log.warning("%s: refreshing the expiring token failed for now: %s", self.platform, exc)

    # -- shared helpers --------------------------------------------------------------------------------------------
    def media_url(self, media: MediaRef) -> str:
        """A URL Meta can fetch (Meta downloads media itself): presigned S3 for local files."""
        return public_url(media.url, self.platform)

    def check_quota(self, edge: str) -> None:
        """Refuse before creating anything when the rolling 24-hour publishing quota is used up."""
        try:
            data = self.call("GET", self.path(self.account_id, edge), params={"fields": "quota_usage,config"}).json()
        except Rejected as exc:  # the publish endpoint enforces the quota anyway; do not block on the check
            log.warning("%s: could not read %s: %s", self.platform, edge, exc)
            return
        rows = data.get("data") or [data]
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        usage = _int(row.get("quota_usage"))
        total = _int((row.get("config") or {}).get("quota_total"))
        if usage is not None and total is not None and usage >= total:
            raise RateLimited(
                f"{self.platform}: the account has published {usage} of its {total} API posts allowed in 24 hours "
                f"({edge}); Kipu publishes it when the rolling window frees a slot",
                QUOTA_RETRY,
            )

    def find_recent(
        self,
        request: PublishRequest,
        posts: Iterable[dict[str, Any]],
        text_key: str,
        time_key: str,
        accept: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any] | None:
        """The post with this request's text published since the intent was written (a minute of clock skew)."""
        since = request.created_at - timedelta(minutes=1) if request.created_at else None
        want = request.caption.strip()
        for post in posts:
            when = utc_time(post.get(time_key))
            if since is not None and when is not None and when < since:
                continue
            if (post.get(text_key) or "").strip() == want and accept(post):
                return post
        return None

    def list_call(self, path: str, fields: str, limit: int) -> Call:
        """A page of an edge (posts, media, threads), newest first: for finding a post again and for polling."""
        return Call("GET", path, kwargs={"params": {"fields": fields, "limit": min(limit, 100)}})

    def list_edge(self, path: str, fields: str, limit: int) -> list[dict[str, Any]]:
        return list(self.send(self.list_call(path, fields, limit)).json().get("data") or [])

    def poll_edge(self, path: str, fields: str, since_id: str | None, limit: int) -> Flow:
        resp = yield self.list_call(path, fields, limit)
        return since_filter(self._items(resp.json().get("data") or []), since_id)

    def _items(self, posts: list[dict[str, Any]]) -> list[ContentItem]:
        raise NotImplementedError


def since_filter(items: list[ContentItem], since_id: str | None) -> list[ContentItem]:
    """Items (oldest first) after ``since_id`` when it is among them; all of them otherwise."""
    ids = [i.platform_post_id for i in items]
    return items[ids.index(since_id) + 1 :] if since_id in ids else items


def _reason(exc: Exception) -> str:
    """Meta's own words from a mapped error, without Kipu's platform prefix and advice."""
    text = str(exc).split(": ", 1)[-1]
    for tail in ("; the refreshed token was refused too", ": the access token has expired"):
        text = text.split(tail, 1)[0]
    return text[:200]


class ContainerHook(GraphHook):
    """Instagram and Threads: a media container is created, polled until FINISHED (bounded), then published."""

    status_field: ClassVar[str]  # status_code (Instagram) / status (Threads)
    error_field: ClassVar[str]  # status (Instagram: the error text) / error_message (Threads)
    publish_edge: ClassVar[str]  # media_publish / threads_publish
    limit_edge: ClassVar[str]  # content_publishing_limit / threads_publishing_limit
    container_edge: ClassVar[str]  # media / threads
    processing_timeout: float = 300.0  # seconds; Meta suggests polling about once a minute for up to 5 minutes
    poll_interval: float = 5.0

    def create_container(self, params: dict[str, Any]) -> str:
        return str(self.call("POST", self.path(self.account_id, self.container_edge), data=params).json()["id"])

    def wait_for_container(self, container_id: str, what: str) -> str:
        """FINISHED (or PUBLISHED) within ``processing_timeout``; ERROR and EXPIRED are clear refusals."""
        deadline = time.monotonic() + self.processing_timeout
        fields = f"{self.status_field},{self.error_field}"
        while True:
            data = self.call("GET", self.path(container_id), params={"fields": fields}).json()
            status = str(data.get(self.status_field) or "IN_PROGRESS").upper()
            if status in ("FINISHED", "PUBLISHED"):
                return status
            if status == "ERROR":
                detail = data.get(self.error_field)
                reason = f": {detail}" if detail and detail != status else ""
                raise Rejected(f"{self.platform}: the {what} container {container_id} failed processing{reason}")
            if status == "EXPIRED":
                raise Rejected(
                    f"{self.platform}: the {what} container {container_id} expired (it was not published within "
                    "24 hours); publish again to create a new one"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise Transient(
                    f"{self.platform}: the {what} container {container_id} is still {status} after "
                    f"{self.processing_timeout:g}s; Kipu tries again later"
                )
            time.sleep(min(self.poll_interval, left))

    def publishable(self, request: PublishRequest) -> list[MediaRef]:
        return [m for m in request.media if m.kind in ("image", "video")]

    def build(self, request: PublishRequest, urls: list[str]) -> tuple[str, str]:
        """``(container id, what)`` of the post's top container, children already processed; ``urls`` are the
        publishable media's public URLs, in order."""
        raise NotImplementedError

    def result(self, post_id: str) -> PublishResult:
        """The published post with its permalink (``None`` when Meta does not answer it now)."""
        try:
            link = self.call("GET", self.path(post_id), params={"fields": "permalink"}).json().get("permalink")
        except PlatformError as exc:
            log.warning("%s: no permalink for %s: %s", self.platform, post_id, exc)
            link = None
        return PublishResult(platform_post_id=post_id, url=link)

    def after_publish(self, post_id: str, request: PublishRequest) -> None:
        """Work after the post is live (Instagram's first comment)."""

    def publish(self, request: PublishRequest) -> PublishResult:
        problems = self.check(request)
        if problems:
            raise Rejected("; ".join(problems))
        urls = [self.media_url(m) for m in self.publishable(request)]  # a local file without a bucket fails here
        self.refresh_if_expiring()
        self.check_quota(self.limit_edge)
        container, what = self.build(request, urls)
        if self.wait_for_container(container, what) == "PUBLISHED":  # an earlier attempt published this container
            found = self.find_published(request)
            if found is not None:
                return found
        try:
            # A container publishes at most once, so retrying media_publish cannot post twice.
            post_id = str(
                self.call(
                    "POST", self.path(self.account_id, self.publish_edge), data={"creation_id": container}
                ).json()["id"]
            )
        except (Transient, Rejected):
            found = self.find_published(request)  # the publish may have landed before the error
            if found is not None:
                return found
            raise
        self.after_publish(post_id, request)
        return self.result(post_id)
