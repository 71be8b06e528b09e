"""YouTube's push notifications (PubSubHubbub / WebSub): subscribing a channel, renewing leases, and the webhook
handler. The hub's signature authenticates a delivery, not a token.

``verify`` (``GET``) confirms a subscription (``hub.challenge`` echoed) only for a channel a webhook workflow
watches, and records its lease on the channel's connections so ``renew_leases`` can subscribe again before it ends;
an unsubscription only for a channel no workflow watches. ``receive`` (``POST``) checks ``X-Hub-Signature``
(``sha1=`` HMAC of the raw body with the subscription secret) in constant time: unsigned is 401, wrongly signed 403,
and neither records anything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from kipu import egress
from kipu.hooks.client import classify
from kipu.hooks.errors import Rejected, Transient
from kipu.platforms.feed.hook import FeedError
from kipu.platforms.youtube.atom import feed_entries, topic_channel, topic_for
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Workflow
from kipu.webhooks import Delivery, WebhookRefused, app_setting, check_signature, same_token, watchers

log = logging.getLogger(__name__)
HUB_URL = "https://pubsubhubbub.appspot.com/subscribe"
LEASE_SECONDS = 10 * 86400  # asked for; the hub decides and says so in the verification
RENEW_BEFORE = timedelta(days=1)
# Notifications also come for title and description edits: an edit of a video this old is not a new upload.
STALE_AFTER = timedelta(days=2)
LEASE_KEY = "websub"


def websub_secret() -> str | None:
    """``hub.secret``: derived from the YouTube app secret (``kipu_youtube_app`` password or
    ``KIPU_YOUTUBE_APP_SECRET``), so the Google client secret itself never leaves Kipu."""
    base = app_setting("youtube", "secret")
    return hmac.new(base.encode(), b"kipu youtube websub", hashlib.sha256).hexdigest() if base else None


def verify_token() -> str | None:
    """``hub.verify_token``: the configured one, else one derived from the YouTube app secret. Kipu sends it with
    every request to the hub and refuses a verification without it: anyone can send the hub's GET, and a forged one
    would record a lease the hub never granted (and stop its renewal)."""
    explicit = app_setting("youtube", "verify_token")
    if explicit:
        return explicit
    base = app_setting("youtube", "secret")
    return hmac.new(base.encode(), b"kipu youtube websub verify", hashlib.sha256).hexdigest() if base else None


def _record(session: Any, channel: str, **lease: Any) -> None:
    """The subscription's state on every connection to the channel (any team)."""
    rows = session.scalars(
        select(Connection).where(Connection.platform == "youtube", Connection.platform_user_id == channel)
    )
    for conn in rows:
        meta = dict(conn.metadata_ or {})
        meta[LEASE_KEY] = {**(meta.get(LEASE_KEY) or {}), **lease}
        conn.metadata_ = meta  # a new dict, so the JSON column is written


class Verification(BaseModel):
    """The hub's verification query."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["subscribe", "unsubscribe", "denied"] = Field(alias="hub.mode")
    topic: str = Field(alias="hub.topic", max_length=2000)
    challenge: str = Field("", alias="hub.challenge", max_length=1000)
    lease_seconds: int | None = Field(None, alias="hub.lease_seconds", ge=0, le=366 * 24 * 3600)
    verify_token: str | None = Field(None, alias="hub.verify_token", max_length=1000)
    reason: str | None = Field(None, alias="hub.reason", max_length=1000)


class YouTubeWebSub:
    platform = "youtube"

    def verify(self, query: Mapping[str, str]) -> str:
        try:
            q = Verification.model_validate(dict(query))
        except ValidationError as exc:
            raise WebhookRefused(422, "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
        channel = topic_channel(q.topic)
        if channel is None:
            raise WebhookRefused(404, "not a YouTube channel feed topic")
        now = datetime.now(UTC)
        if q.mode == "denied":  # the hub refused the subscription (no token in a denial): renew_leases asks again
            with session_scope() as s:
                _record(s, channel, status="denied", reason=q.reason, checked_at=now.isoformat())
            return ""
        expected = verify_token()
        if not expected or not same_token(q.verify_token, expected):
            raise WebhookRefused(403, "the verify token does not match")
        with session_scope() as s:
            watched = bool(watchers(s, "youtube", [channel]).get(channel))
            # WebSub: a subscriber that does not want the change answers 404. An unsubscription is confirmed only
            # for a channel nobody watches, so a forged unsubscribe request at the hub cannot silence a watched one.
            if (q.mode == "subscribe") != watched:
                raise WebhookRefused(404, f"Kipu does not want to {q.mode} {channel}")
            lease: dict[str, Any] = {"status": f"{q.mode}d", "topic": q.topic, "verified_at": now.isoformat()}
            if q.mode == "subscribe":  # never longer than Kipu asks for: renewal must come before the hub's end
                seconds = min(q.lease_seconds or LEASE_SECONDS, LEASE_SECONDS)
                lease["lease_seconds"] = seconds
                lease["expires_at"] = (now + timedelta(seconds=seconds)).isoformat()
            _record(s, channel, **lease)
        return q.challenge

    def receive(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        check_signature(headers.get("x-hub-signature", ""), body, websub_secret(), "X-Hub-Signature (sha1=HMAC)")
        try:
            entries = feed_entries(body)
        except FeedError:
            raise WebhookRefused(400, "the body is not an Atom notification") from None
        oldest = datetime.now(UTC) - STALE_AFTER
        fresh = [(c or "", i) for c, i in entries if i.published_at is None or i.published_at >= oldest]
        return Delivery(fresh, ignored=len(entries) - len(fresh))


WEBHOOK = YouTubeWebSub()


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
    token = verify_token()
    if token:
        data["hub.verify_token"] = token
    try:
        if client is None:
            with egress.client(timeout=20, deadline=egress.SMALL_ANSWER_SECONDS) as own:
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
        watched = watchers(s, "youtube")
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
