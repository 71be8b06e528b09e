"""Bluesky (AT Protocol XRPC): app-password sessions, blobs, posts with facets at UTF-8 byte offsets, polling.

Exactly once: each post's record key is a TID derived from its ``posts`` row (creation time and id), so a retry
finds the record with ``getRecord`` instead of posting it again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from kipu import egress
from kipu.captions.entities import find
from kipu.hooks.base import (
    AuthExpired,
    PlatformError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
)
from kipu.hooks.client import Call, Flow, classify
from kipu.hooks.media import read_media
from kipu.hooks.platform import Credentials, PlatformHook, TokenSet
from kipu.hooks.times import utc_time
from kipu.specs.items import ContentItem, MediaRef

POST = "app.bsky.feed.post"
MAX_BLOB = 1_000_000
TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"
AUTH_ERRORS = {"ExpiredToken", "InvalidToken", "AuthRequired", "AuthenticationRequired"}


class ServiceUnusable(Rejected):
    """The service URL given for a Bluesky account cannot be used (unreachable, or not a PDS)."""


def _service_url(service: str) -> str:
    """``https://host`` of the PDS a user named, through the egress guard. https only, as for every instance a user
    names: the app password must not cross the network in clear."""
    from kipu.auth.oauth import normalise_instance

    try:
        return normalise_instance("bluesky", service)
    except egress.EgressRefused:
        raise
    except Rejected as exc:
        raise ServiceUnusable(str(exc)) from None


def tid(micros: int, clock_id: int) -> str:
    """An AT Protocol TID: 13 base32-sortable characters of (microseconds << 10 | clock id)."""
    n = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(TID_CHARS[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def tid_for(request: PublishRequest) -> str:
    when = request.created_at or datetime.now(UTC)
    clock = int.from_bytes(hashlib.sha256(request.idempotency_key.encode()).digest()[:2], "big")
    return tid(int(when.timestamp() * 1_000_000), clock)


def _byte_range(text: str, start: int, end: int) -> dict[str, int]:
    return {"byteStart": len(text[:start].encode()), "byteEnd": len(text[:end].encode())}


def jwt_expiry(token: str) -> datetime | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (IndexError, KeyError, ValueError):
        return None


def _session_tokens(body: dict[str, Any]) -> TokenSet:
    return TokenSet(
        access_token=SecretStr(body["accessJwt"]),
        refresh_token=SecretStr(body["refreshJwt"]) if body.get("refreshJwt") else None,
        expires_at=jwt_expiry(body["accessJwt"]),
        platform_user_id=body.get("did"),
        username=body.get("handle"),
    )


class BlueskyHook(PlatformHook):
    platform: ClassVar[str] = "bluesky"
    base_url: ClassVar[str] = "https://bsky.social"
    # 5,000 write points per hour per account (PLATFORMS.md); a create costs 3: about 1.4 writes per second.
    token_rate: ClassVar[float | None] = 1.4

    # -- sessions --------------------------------------------------------------------------------------------------
    @classmethod
    def login(cls, service: str, identifier: str, app_password: SecretStr) -> TokenSet:
        """``createSession`` with a handle (or DID) and an app password, at a service URL the user chose: through
        the egress guard, and no word of the remote's answer is repeated (it could be anyone's server)."""
        service = _service_url(service)
        shown = egress.shown_url(service)
        url = f"{service}/xrpc/com.atproto.server.createSession"
        try:
            with egress.client(timeout=20, follow_redirects=False, deadline=egress.SMALL_ANSWER_SECONDS) as client:
                resp = client.post(url, json={"identifier": identifier, "password": app_password.get_secret_value()})
        except httpx.HTTPError as exc:
            raise ServiceUnusable(f"bluesky: {shown} cannot be reached ({type(exc).__name__})") from None
        if resp.status_code in (400, 401):
            raise Rejected(f"bluesky: {identifier} could not sign in at {shown}: check the handle and the app password")
        if resp.status_code >= 300:
            raise ServiceUnusable(f"bluesky: {shown} answered HTTP {resp.status_code} to a sign-in")
        try:
            return _session_tokens(resp.json())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServiceUnusable(f"bluesky: {shown} did not answer like a Bluesky PDS") from None

    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        if credentials.refresh_token is None:
            raise super().refresh_tokens(credentials)  # type: ignore[misc]
        resp = self.client.post(
            f"{self.base}/xrpc/com.atproto.server.refreshSession",
            headers={"Authorization": f"Bearer {credentials.refresh_token.get_secret_value()}"},
        )
        if self._xrpc_error(resp) is not None:
            from kipu.hooks.base import NeedsReconnect

            raise NeedsReconnect("bluesky: the session cannot be refreshed; sign in again with an app password")
        return _session_tokens(resp.json())

    @staticmethod
    def _xrpc_error(resp: httpx.Response) -> PlatformError | None:
        if resp.status_code < 400:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        name, message = body.get("error", ""), body.get("message", "")
        where = f"bluesky: {name or 'HTTP ' + str(resp.status_code)}" + (f": {message}" if message else "")
        if name in AUTH_ERRORS or resp.status_code == 401:
            return AuthExpired(where)
        if resp.status_code == 429 or name == "RateLimitExceeded":
            reset = resp.headers.get("ratelimit-reset")
            wait = max(0.0, float(reset) - datetime.now(UTC).timestamp()) if reset and reset.isdigit() else None
            return RateLimited(where, wait)
        if resp.status_code == 413 or name == "BlobTooLarge":
            return Rejected(where)
        error = classify(resp, "bluesky")
        return type(error)(where) if error is not None and not isinstance(error, RateLimited) else error

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        return self._xrpc_error(response)

    @property
    def did(self) -> str:
        return self.credentials.platform_user_id

    # -- publishing ------------------------------------------------------------------------------------------------
    def check(self, request: PublishRequest) -> list[str]:
        problems = super().check(request)
        for m in request.media:
            if m.kind == "image" and m.size_bytes is not None and m.size_bytes > MAX_BLOB:
                problems.append(f"bluesky image {m.url} is {m.size_bytes} bytes, over the limit of {MAX_BLOB}")
        return problems

    def facets(self, text: str) -> list[dict[str, Any]]:
        """Links, mentions and hashtags, each with its UTF-8 byte range (start inclusive, end exclusive)."""
        out: list[dict[str, Any]] = []
        for entity in find(text, self.caption_rules.entities):  # never overlapping, nothing inside a link
            if entity.kind == "url":
                feature = {"$type": "app.bsky.richtext.facet#link", "uri": entity.text}
            elif entity.kind == "mention":
                did = self.resolve_handle(entity.value)
                if not did:
                    continue
                feature = {"$type": "app.bsky.richtext.facet#mention", "did": did}
            elif len(entity.value) <= 64:
                feature = {"$type": "app.bsky.richtext.facet#tag", "tag": entity.value}
            else:
                continue
            out.append({"index": _byte_range(text, entity.start, entity.end), "features": [feature]})
        return out

    def resolve_handle(self, handle: str) -> str | None:
        try:
            resp = self.call(
                "GET", "/xrpc/com.atproto.identity.resolveHandle", auth=False, retries=0, params={"handle": handle}
            )
        except PlatformError:
            return None  # an unknown handle is plain text, not an error
        return resp.json().get("did")

    def upload_image(self, media: MediaRef) -> dict[str, Any]:
        data = read_media(media.url, MAX_BLOB, "bluesky")
        resp = self.call(
            "POST",
            "/xrpc/com.atproto.repo.uploadBlob",
            content=data,
            headers={
                "Content-Type": media.mime_type if media.mime_type and "*" not in media.mime_type else "image/jpeg"
            },
        )
        return {"alt": (media.alt_text or "")[:2000], "image": resp.json()["blob"]}

    def _result(self, rkey: str, uri: str) -> PublishResult:
        who = self.credentials.username or self.did
        return PublishResult(platform_post_id=uri, url=f"https://bsky.app/profile/{who}/post/{rkey}")

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        rkey = tid_for(request)
        try:
            resp = self.call(
                "GET",
                "/xrpc/com.atproto.repo.getRecord",
                auth=False,
                params={"repo": self.did, "collection": POST, "rkey": rkey},
            )
        except Rejected:  # RecordNotFound
            return None
        return self._result(rkey, resp.json()["uri"])

    def publish(self, request: PublishRequest) -> PublishResult:
        rkey = tid_for(request)
        images = [self.upload_image(m) for m in request.media if m.kind == "image"][:4]
        text = request.caption
        record: dict[str, Any] = {
            "$type": POST,
            "text": text,
            "createdAt": (request.created_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        }
        facets = self.facets(text)
        if facets:
            record["facets"] = facets
        if images:
            record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
        else:
            link = request.link or next((e.text for e in find(text) if e.kind == "url"), None)
            if link:
                card = {"uri": link, "title": (request.title or link)[:300], "description": ""}
                record["embed"] = {"$type": "app.bsky.embed.external", "external": card}
        body = {"repo": self.did, "collection": POST, "rkey": rkey, "record": record}
        try:
            resp = self.call("POST", "/xrpc/com.atproto.repo.createRecord", json=body)
        except PlatformError:
            # An ambiguous failure (a reset, a 5xx after the write): the record key says whether it landed.
            found = self.find_published(request)
            if found is not None:
                return found
            raise
        return self._result(rkey, resp.json()["uri"])

    # -- polling ---------------------------------------------------------------------------------------------------
    def _items(self, records: list[dict[str, Any]]) -> list[ContentItem]:
        items = []
        for rec in reversed(records):  # the PDS lists newest first
            value = rec.get("value") or {}
            images = ((value.get("embed") or {}).get("images")) or []
            media = [
                MediaRef(
                    url=f"{self.base}/xrpc/com.atproto.sync.getBlob?did={self.did}&cid={img['image']['ref']['$link']}",
                    mime_type=img["image"].get("mimeType"),
                    size_bytes=img["image"].get("size"),
                    alt_text=img.get("alt") or None,
                )
                for img in images
                if isinstance(img, dict) and img.get("image")
            ]
            tags = [f["tag"] for facet in value.get("facets") or [] for f in facet.get("features", []) if f.get("tag")]
            created = value.get("createdAt")
            items.append(
                ContentItem(
                    platform="bluesky",
                    platform_post_id=rec["uri"],
                    content_type="image" if len(media) == 1 else ("carousel" if media else "text"),
                    caption=value.get("text", ""),
                    url=self._result(rec["uri"].rsplit("/", 1)[-1], rec["uri"]).url,
                    media=media,
                    hashtags=tags,
                    published_at=utc_time(created),
                    author=self.credentials.username,
                )
            )
        return items

    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        params = {"repo": self.did, "collection": POST, "limit": min(limit, 100)}
        resp = yield Call("GET", "/xrpc/com.atproto.repo.listRecords", auth=False, kwargs={"params": params})
        return self._items(resp.json().get("records", []))


def connect_with_app_password(session: Any, team: Any, service: str, handle: str, app_password: SecretStr) -> Any:
    """Sign in (``createSession``) and store the connection with its encrypted session tokens."""
    from kipu.store.accounts import upsert_connection

    service = _service_url(service)
    tokens = BlueskyHook.login(service, handle, app_password)
    return upsert_connection(
        session,
        team,
        "bluesky",
        tokens.platform_user_id or handle,
        username=tokens.username,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        metadata={"base_url": service},
    )
