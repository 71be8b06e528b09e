"""The LinkedIn hook against a local fake of the versioned Posts API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kipu.auth import oauth
from kipu.hooks.base import NeedsReconnect, PublishRequest, Rejected
from kipu.platforms import target_hook
from kipu.platforms.linkedin.hook import LinkedInHook
from kipu.specs.items import MediaRef
from kipu.store.accounts import find_team
from kipu.store.engine import session_scope
from kipu.store.models import Connection

from tests.conftest import REPO
from tests.fakes.linkedin_server import LinkedInServer

IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[LinkedInServer]:
    with LinkedInServer() as server:
        app = {
            "conn_type": "kipu_linkedin_app",
            "login": server.state.client_id,
            "password": server.state.client_secret,
            "extra": {
                "redirect_uri": "https://kipu.example/cb/linkedin",
                "token_url": f"{server.url}/oauth/v2/accessToken",
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_LINKEDIN_APP", json.dumps(app))
        yield server


@pytest.fixture
def li(fake: LinkedInServer, pg_demo_team: dict) -> uuid.UUID:
    """Connected through the shared OAuth code path (LinkedIn: no PKCE, client secret in the body)."""
    app = oauth.app_for("linkedin")
    with session_scope() as s:
        url = oauth.begin(s, app, find_team(s, "demo"))
    assert "code_challenge" not in url and "scope=openid+profile+w_member_social" in url
    state = url.split("state=")[1].split("&")[0]
    with session_scope() as s:
        [conn] = oauth.complete(s, app, state, "any-code", lambda t: LinkedInHook.connect(fake.url, app, t))
        assert conn.metadata_ == {"base_url": fake.url}
        return conn.id


def hook(conn_id: uuid.UUID) -> LinkedInHook:
    with session_scope() as s:
        h = target_hook(s.get(Connection, conn_id))
    assert isinstance(h, LinkedInHook)
    return h


def request(caption: str, **kw: object) -> PublishRequest:
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, created_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


def test_text_and_image_posts_with_version_headers(li: uuid.UUID, fake: LinkedInServer) -> None:
    h = hook(li)
    text = h.publish(request("Weeknight pasta (15 min) #cooking", link="https://example.com/p", title="Pasta"))
    image = h.publish(
        request("A sunrise loaf", media=[MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="Bread")])
    )
    first, second = fake.state.posts
    assert first["author"] == "urn:li:person:abc123" and first["commentary"] == r"Weeknight pasta \(15 min\) #cooking"
    assert first["content"]["article"]["source"] == "https://example.com/p"
    assert fake.state.images[second["content"]["media"]["id"]] == IMAGE.read_bytes()
    assert second["content"]["media"]["altText"] == "Bread"
    assert text.platform_post_id == first["id"] and image.url.startswith(
        "https://www.linkedin.com/feed/update/urn%3Ali%3Ashare"
    )
    assert [p.platform_post_id for p in h.list_posts()] == [first["id"], second["id"]]


def test_a_retired_version_is_a_clear_error_and_the_version_is_configurable(
    li: uuid.UUID, fake: LinkedInServer
) -> None:
    fake.state.current_versions = ("202611",)
    with pytest.raises(Rejected, match=r"LinkedIn-Version 202511 is retired \(HTTP 426 NONEXISTENT_VERSION\)"):
        hook(li).publish(request("old version"))
    with session_scope() as s:
        conn = s.get(Connection, li)
        conn.metadata_ = {**conn.metadata_, "linkedin_version": "202611"}
    assert hook(li).publish(request("new version")).platform_post_id.startswith("urn:li:share:")


def test_limit_before_the_call_429_and_5xx(li: uuid.UUID, fake: LinkedInServer) -> None:
    h = hook(li)
    assert h.check(request("x" * 3001)) == ["linkedin caption is 3001 characters, over the limit of 3000"]
    fake.state.throttle_next, fake.state.fail_next = 1, 1
    req = request("survives a 429 and a 500")
    result = h.publish(req)
    assert len(fake.state.posts) == 1 and h.find_published(req) == result


def test_expired_token_refresh_and_reconnect(li: uuid.UUID, fake: LinkedInServer) -> None:
    for token in fake.state.access:
        fake.state.access[token] = 0
    assert hook(li).publish(request("after refresh")).platform_post_id
    for token in fake.state.access:
        fake.state.access[token] = 0
    fake.state.refresh.clear()
    with pytest.raises(NeedsReconnect):
        hook(li).publish(request("no way"))
