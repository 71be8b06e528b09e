"""YouTube's WebSub notifications into /kipu/api/webhooks/youtube: hub verification and leases, HMAC-signed Atom
deliveries checked in constant time, runs recorded through the Meta webhooks' path, and lease renewal at the hub."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kipu.platforms.youtube.atom import topic_for
from kipu.platforms.youtube.websub import renew_leases, subscribe, verify_token, websub_secret
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection, WorkflowRun
from sqlalchemy import select

from tests.fakes.youtube_server import YouTubeServer
from tests.helpers import demo_doc

API = "/kipu/api/webhooks/youtube"
CHANNEL = "UCwatched0000000000000a1"
APP_SECRET = "google-client-secret-for-tests"
CALLBACK = "https://kipu.example/kipu/api/webhooks/youtube"


@pytest.fixture
def client(api: TestClient) -> TestClient:
    """Airflow's API server with the Kipu app, in which the YouTube router sits ahead of Meta's."""
    return api


@pytest.fixture
def channel(client: TestClient, roles: dict, monkeypatch: pytest.MonkeyPatch) -> str:
    """A YouTube connection and an active workflow triggered by its notifications."""
    monkeypatch.setenv("KIPU_YOUTUBE_APP_SECRET", APP_SECRET)
    monkeypatch.delenv("KIPU_YOUTUBE_VERIFY_TOKEN", raising=False)
    with session_scope() as s:
        upsert_connection(s, find_team(s, "demo"), "youtube", CHANNEL, username="Ana's Kitchen")
    doc = demo_doc(slug="yt_hooks", name="From the channel")
    doc["trigger"] = {
        "type": "webhook",
        "connection_id": f"youtube:{CHANNEL}",
        "platform": "youtube",
        "webhook_url": CALLBACK,
    }
    assert client.post("/kipu/api/workflows", json=doc, headers=roles["member"]).status_code == 201
    return CHANNEL


def notification(video: str = "dQw4w9WgXcQ", channel: str = CHANNEL, published: datetime | None = None) -> bytes:
    """The Atom body YouTube's hub sends (the push-notifications guide)."""
    when = (published or datetime.now(UTC)).isoformat()
    return f"""<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">
  <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
  <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel}"/>
  <title>YouTube video feed</title>
  <updated>{datetime.now(UTC).isoformat()}</updated>
  <entry>
    <id>yt:video:{video}</id>
    <yt:videoId>{video}</yt:videoId>
    <yt:channelId>{channel}</yt:channelId>
    <title>Pasta night #pasta</title>
    <link rel="alternate" href="http://www.youtube.com/watch?v={video}"/>
    <author><name>Ana's Kitchen</name><uri>http://www.youtube.com/channel/{channel}</uri></author>
    <published>{when}</published>
    <updated>{datetime.now(UTC).isoformat()}</updated>
  </entry>
</feed>""".encode()


def signed(body: bytes, secret: str | None = None, method: str = "sha1") -> dict[str, str]:
    key = secret if secret is not None else websub_secret()
    assert key
    digest = hmac.new(key.encode(), body, getattr(hashlib, method)).hexdigest()
    return {"X-Hub-Signature": f"{method}={digest}", "Content-Type": "application/atom+xml"}


def runs() -> list[WorkflowRun]:
    with session_scope() as s:
        return list(s.scalars(select(WorkflowRun)))


def lease() -> dict[str, Any]:
    with session_scope() as s:
        conn = s.scalar(select(Connection).where(Connection.platform_user_id == CHANNEL))
        assert conn is not None
        return dict((conn.metadata_ or {}).get("websub") or {})


def verification(mode: str = "subscribe", channel: str = CHANNEL, **extra: str) -> dict[str, str]:
    """The hub's verification GET, with the token Kipu gave it when subscribing."""
    return {
        "hub.mode": mode,
        "hub.topic": topic_for(channel),
        "hub.challenge": uuid.uuid4().hex,
        "hub.lease_seconds": "432000",
        "hub.verify_token": verify_token() or "",
        **extra,
    }


def test_the_hub_verification_echoes_the_challenge_and_records_the_lease(client: TestClient, channel: str) -> None:
    params = verification()
    ok = client.get(API, params=params)
    assert ok.status_code == 200 and ok.text == params["hub.challenge"]
    recorded = lease()
    assert recorded["status"] == "subscribed" and recorded["lease_seconds"] == 432000
    expires = datetime.fromisoformat(recorded["expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(days=5)) < timedelta(minutes=1)
    assert client.get(API, params=verification(channel="UCnobodywatches0000000a1")).status_code == 404
    other_site = {**params, "hub.topic": "https://evil.example/feeds/videos.xml?channel_id=" + CHANNEL}
    assert client.get(API, params=other_site).status_code == 404


def test_unsubscribing_is_confirmed_only_for_channels_nobody_watches(client: TestClient, channel: str) -> None:
    assert client.get(API, params=verification("unsubscribe")).status_code == 404  # a forged request at the hub
    gone = verification("unsubscribe", channel="UCnobodywatches0000000a1")
    answer = client.get(API, params=gone)
    assert answer.status_code == 200 and answer.text == gone["hub.challenge"]
    denied = client.get(API, params={"hub.mode": "denied", "hub.topic": topic_for(CHANNEL), "hub.reason": "no"})
    assert denied.status_code == 200 and lease()["status"] == "denied"


def test_a_verification_without_kipus_token_is_refused_and_a_lease_is_never_longer_than_asked(
    client: TestClient, channel: str
) -> None:
    """Anyone can send the hub's GET: without the token Kipu gave the hub, a forged one recorded a lease of its
    choosing (366 days), so renewal stopped and the channel fell silent when the hub's real lease ended."""
    forged = {**verification(**{"hub.lease_seconds": str(366 * 86400)}), "hub.verify_token": ""}
    assert client.get(API, params=forged).status_code == 403
    assert lease().get("status") != "subscribed"
    long = client.get(API, params=verification(**{"hub.lease_seconds": str(366 * 86400)}))
    assert long.status_code == 200 and lease()["lease_seconds"] == 10 * 86400  # what Kipu asked for, at most


def test_a_configured_verify_token_must_match(
    client: TestClient, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIPU_YOUTUBE_VERIFY_TOKEN", "verify-me")
    assert client.get(API, params={**verification(), "hub.verify_token": ""}).status_code == 403
    assert client.get(API, params=verification(**{"hub.verify_token": "nope"})).status_code == 403
    assert client.get(API, params=verification(**{"hub.verify_token": "verify-me"})).status_code == 200


def test_a_signed_notification_records_one_webhook_run_and_repeats_do_not(client: TestClient, channel: str) -> None:
    body = notification()
    first = client.post(API, content=body, headers=signed(body))
    assert first.status_code == 200 and first.json()["recorded"] == 1
    again = client.post(API, content=body, headers=signed(body))  # the same video again (an edit, a redelivery)
    assert again.json() == {"recorded": 0, "duplicates": 1, "started": 0, "ignored": 0}
    (run,) = runs()
    assert run.source == "webhook" and run.platform_post_id == "dQw4w9WgXcQ" and run.dag_id == "kipu.demo.yt_hooks"
    data = run.trigger_data or {}
    assert data["platform"] == "youtube" and data["content_type"] == "video" and data["title"] == "Pasta night #pasta"
    assert data["url"] == "http://www.youtube.com/watch?v=dQw4w9WgXcQ" and data["hashtags"] == ["pasta"]
    body256 = notification("second00001")
    assert client.post(API, content=body256, headers=signed(body256, method="sha256")).json()["recorded"] == 1


@pytest.mark.parametrize(
    "headers,status",
    [
        ({"Content-Type": "application/atom+xml"}, 401),
        ({"X-Hub-Signature": "md5=abc", "Content-Type": "application/atom+xml"}, 401),
        ({"X-Hub-Signature": "sha1=" + "0" * 40, "Content-Type": "application/atom+xml"}, 403),
        ("wrong-secret", 403),
        ("the-app-secret-itself", 403),
    ],
)
def test_unsigned_or_wrongly_signed_notifications_start_nothing(
    client: TestClient, channel: str, headers: object, status: int
) -> None:
    body = notification()
    if headers == "wrong-secret":
        headers = signed(body, "not-the-secret")
    elif headers == "the-app-secret-itself":
        headers = signed(body, APP_SECRET)  # the hub is given a derived secret, never the client secret
    out = client.post(API, content=body, headers=headers)  # type: ignore[arg-type]
    assert out.status_code == status and runs() == []


def test_other_channels_stale_edits_and_deletions_are_ignored(client: TestClient, channel: str) -> None:
    other = notification(channel="UCnobodywatches0000000a1")
    edit = notification("oldvideo001", published=datetime.now(UTC) - timedelta(days=30))
    deleted = b"""<feed xmlns:at="http://purl.org/atompub/tombstones/1.0" xmlns="http://www.w3.org/2005/Atom">
  <at:deleted-entry ref="yt:video:dQw4w9WgXcQ" when="2025-01-01T00:00:00+00:00"/></feed>"""
    for body in (other, edit, deleted):
        out = client.post(API, content=body, headers=signed(body))
        assert out.status_code == 200 and out.json()["recorded"] == 0
    assert runs() == []
    junk = b"not xml at all <"
    assert client.post(API, content=junk, headers=signed(junk)).status_code == 400


def test_subscribing_and_renewing_leases_at_the_hub(client: TestClient, channel: str) -> None:
    with YouTubeServer() as fake:
        hub = f"{fake.url}/hub/subscribe"
        subscribe(channel, CALLBACK, hub=hub, lease_seconds=3600)
        (sent,) = fake.state.hub_requests
        assert sent == {
            "hub.mode": "subscribe",
            "hub.topic": f"https://www.youtube.com/xml/feeds/videos.xml?channel_id={CHANNEL}",
            "hub.callback": CALLBACK,
            "hub.verify": "async",
            "hub.lease_seconds": "3600",
            "hub.secret": websub_secret(),
            "hub.verify_token": verify_token(),
        }
        assert sent["hub.secret"] != APP_SECRET and lease()["status"] == "subscribe_requested"
        assert renew_leases(hub=hub) == [CHANNEL]  # not verified yet: asked again
        assert fake.state.hub_requests[-1]["hub.callback"] == CALLBACK  # the workflow's webhook_url
        client.get(API, params=verification(**{"hub.lease_seconds": str(10 * 86400)}))
        assert renew_leases(hub=hub) == []  # ten days left
        assert renew_leases(hub=hub, now=datetime.now(UTC) + timedelta(days=9, hours=12)) == [CHANNEL]
        assert len(fake.state.hub_requests) == 3
        with pytest.raises(Exception, match="hub refused to subscribe"):
            subscribe(channel, CALLBACK, hub=f"{fake.url}/no-such-hub")


@pytest.fixture
def no_youtube_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("KIPU_YOUTUBE_APP_SECRET", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_KIPU_YOUTUBE_APP", raising=False)
    yield


def test_without_a_secret_nothing_is_subscribed_or_accepted(
    client: TestClient, channel: str, no_youtube_secret: None
) -> None:
    from kipu.hooks.base import Rejected

    with pytest.raises(Rejected, match="KIPU_YOUTUBE_APP_SECRET"):
        subscribe(channel, CALLBACK, hub="http://127.0.0.1:9/unused")
    body = notification()
    assert client.post(API, content=body, headers=signed(body, "anything")).status_code == 403
    assert runs() == []
