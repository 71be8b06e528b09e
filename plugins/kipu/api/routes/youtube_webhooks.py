"""``/api/webhooks/youtube``: YouTube's PubSubHubbub (WebSub) push notifications, starting runs through the same
record-then-start path as Meta's webhooks. The signature authenticates a delivery, not a token.

``GET`` answers the hub's verification: a subscription is confirmed (``hub.challenge`` echoed) only for a channel a
webhook workflow watches, and its lease is recorded on the channel's connections so ``renew_leases`` can subscribe
again before it ends; an unsubscription only for a channel no workflow watches. ``POST`` checks ``X-Hub-Signature``
(``sha1=`` HMAC of the raw body with the subscription secret) in constant time: unsigned is 401, wrongly signed 403,
and neither records anything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from kipu import egress
from kipu.api.routes.webhooks import MAX_BODY, _app_setting, _watchers, record_and_start
from kipu.hooks.base import Rejected, Transient
from kipu.hooks.feed import FeedError
from kipu.hooks.http import classify
from kipu.hooks.youtube import feed_entries, topic_channel, topic_for
from kipu.specs.items import ContentItem
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Workflow

router = APIRouter(prefix="/webhooks/youtube", tags=["webhooks"])
log = logging.getLogger(__name__)
HUB_URL = "https://pubsubhubbub.appspot.com/subscribe"
LEASE_SECONDS = 10 * 86400  # asked for; the hub decides and says so in the verification
RENEW_BEFORE = timedelta(days=1)
# Notifications also come for title and description edits: an edit of a video this old is not a new upload.
STALE_AFTER = timedelta(days=2)
SIGNATURES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
LEASE_KEY = "websub"


def websub_secret() -> str | None:
    """``hub.secret``: derived from the YouTube app secret (``kipu_youtube_app`` password or
    ``KIPU_YOUTUBE_APP_SECRET``), so the Google client secret itself never leaves Kipu."""
    base = _app_setting("youtube", "secret")
    return hmac.new(base.encode(), b"kipu youtube websub", hashlib.sha256).hexdigest() if base else None


def _record(session: Any, channel: str, **lease: Any) -> None:
    """The subscription's state on every connection to the channel (any team)."""
    rows = session.scalars(
        select(Connection).where(Connection.platform == "youtube", Connection.platform_user_id == channel)
    )
    for conn in rows:
        meta = dict(conn.metadata_ or {})
        meta[LEASE_KEY] = {**(meta.get(LEASE_KEY) or {}), **lease}
        conn.metadata_ = meta  # a new dict, so the JSON column is written


@router.get("", response_class=PlainTextResponse)
def verify_subscription(
    mode: Literal["subscribe", "unsubscribe", "denied"] = Query(alias="hub.mode"),
    topic: str = Query(alias="hub.topic", max_length=2000),
    challenge: str = Query("", alias="hub.challenge", max_length=1000),
    lease_seconds: int | None = Query(None, alias="hub.lease_seconds", ge=0, le=366 * 24 * 3600),
    verify_token: str | None = Query(None, alias="hub.verify_token", max_length=1000),
    reason: str | None = Query(None, alias="hub.reason", max_length=1000),
) -> str:
    channel = topic_channel(topic)
    if channel is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not a YouTube channel feed topic")
    expected = _app_setting("youtube", "verify_token")
    if expected and not hmac.compare_digest((verify_token or "").encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the verify token does not match")
    now = datetime.now(UTC)
    with session_scope() as s:
        watched = bool(_watchers(s, "youtube").get(channel))
        if mode == "denied":  # the hub refused the subscription; renew_leases asks again
            _record(s, channel, status="denied", reason=reason, checked_at=now.isoformat())
            return ""
        # WebSub: a subscriber that does not want the change answers 404. An unsubscription is confirmed only for
        # a channel nobody watches, so a forged unsubscribe request at the hub cannot silence a watched channel.
        if (mode == "subscribe") != watched:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Kipu does not want to {mode} {channel}")
        lease: dict[str, Any] = {"status": f"{mode}d", "topic": topic, "verified_at": now.isoformat()}
        if mode == "subscribe":
            lease["lease_seconds"] = lease_seconds
            lease["expires_at"] = (now + timedelta(seconds=lease_seconds)).isoformat() if lease_seconds else None
        _record(s, channel, **lease)
    return challenge


def _signed(request_sig: str, body: bytes) -> bool | None:
    """None when unsigned (or an unknown method), else whether the HMAC matches, compared in constant time."""
    method, _, digest = request_sig.partition("=")
    if method not in SIGNATURES or not digest:
        return None
    secret = websub_secret()
    if not secret:
        return False
    expected = hmac.new(secret.encode(), body, SIGNATURES[method]).hexdigest()
    return hmac.compare_digest(digest.strip().lower().encode(), expected.encode())


@router.post("")
async def receive(request: Request) -> dict[str, int]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"webhook bodies are limited to {MAX_BODY} bytes")
    signed = _signed(request.headers.get("x-hub-signature", ""), body)
    if signed is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-Hub-Signature (sha1=HMAC of the body) is required")
    if not signed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the signature does not match")
    try:
        entries = feed_entries(body)
    except FeedError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not an Atom notification") from None
    counts = {"recorded": 0, "duplicates": 0, "started": 0, "ignored": 0}
    with session_scope() as s:
        watchers = _watchers(s, "youtube")
    oldest = datetime.now(UTC) - STALE_AFTER
    for channel, item in entries:
        if not watchers.get(channel or "") or _stale(item, oldest):
            counts["ignored"] += 1
            continue
        record_and_start(watchers[channel or ""], item, counts)
    return counts


def _stale(item: ContentItem, oldest: datetime) -> bool:
    return item.published_at is not None and item.published_at < oldest


def subscribe(
    channel_id: str,
    callback: str,
    *,
    mode: Literal["subscribe", "unsubscribe"] = "subscribe",
    lease_seconds: int = LEASE_SECONDS,
    hub: str = HUB_URL,
    client: httpx.Client | None = None,
) -> None:
    """Ask the hub to (re)subscribe ``callback`` to the channel's uploads; the hub then verifies with a ``GET``.
    Renewing is subscribing again before the lease ends."""
    secret = websub_secret()
    if mode == "subscribe" and not secret:
        raise Rejected(
            "youtube: notifications are signed with a secret derived from the YouTube app secret: set the "
            "kipu_youtube_app connection's password or KIPU_YOUTUBE_APP_SECRET"
        )
    data = {
        "hub.mode": mode,
        "hub.topic": topic_for(channel_id),
        "hub.callback": callback,
        "hub.verify": "async",
        "hub.lease_seconds": str(lease_seconds),
    }
    if secret:
        data["hub.secret"] = secret
    token = _app_setting("youtube", "verify_token")
    if token:
        data["hub.verify_token"] = token
    try:
        if client is None:
            with egress.client(timeout=20) as own:
                resp = own.post(hub, data=data)
        else:
            resp = client.post(hub, data=data)
    except httpx.HTTPError as exc:
        raise Transient(f"youtube: the WebSub hub is unreachable: {type(exc).__name__}") from None
    if resp.status_code not in (202, 204):
        error = classify(resp, "youtube") or Rejected("youtube: unexpected hub answer")
        raise type(error)(
            f"youtube: the hub refused to {mode} {channel_id}: HTTP {resp.status_code}: {resp.text[:200]}"
        )
    with session_scope() as s:
        _record(s, channel_id, status=f"{mode}_requested", requested_at=datetime.now(UTC).isoformat())


def renew_leases(
    callback: str | None = None,
    *,
    within: timedelta = RENEW_BEFORE,
    now: datetime | None = None,
    hub: str = HUB_URL,
    client: httpx.Client | None = None,
) -> list[str]:
    """Subscribe every channel a webhook workflow watches whose lease is unknown, refused, or ends within
    ``within``; returns the channels asked for. Run it at least daily (a lease lasts days).

    The callback is ``callback``, else the watching workflow's ``trigger.webhook_url``, else
    ``KIPU_YOUTUBE_WEBSUB_CALLBACK`` (the public URL of ``/kipu/api/webhooks/youtube``).
    """
    now = now or datetime.now(UTC)
    with session_scope() as s:
        watched = _watchers(s, "youtube")
        leases = {
            c.platform_user_id: (c.metadata_ or {}).get(LEASE_KEY) or {}
            for c in s.scalars(select(Connection).where(Connection.platform == "youtube"))
        }
        urls = {
            wid: (cfg or {}).get("webhook_url") for wid, cfg in s.execute(select(Workflow.id, Workflow.trigger_config))
        }
    asked = []
    for channel, workflows in watched.items():
        lease = leases.get(channel, {})
        expires = lease.get("expires_at")
        if lease.get("status") == "subscribed" and expires and datetime.fromisoformat(expires) - now > within:
            continue
        url = callback or next((urls[w] for w in workflows if urls.get(w)), None)
        url = url or os.environ.get("KIPU_YOUTUBE_WEBSUB_CALLBACK")
        if not url:
            log.warning("youtube: no callback URL for %s: set KIPU_YOUTUBE_WEBSUB_CALLBACK", channel)
            continue
        subscribe(channel, url, hub=hub, client=client)
        asked.append(channel)
    return asked
