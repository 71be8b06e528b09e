"""Connecting Instagram, Threads and Facebook Pages through the real API routes (``POST /connections/oauth/{p}`` →
Meta's authorization window → ``GET /auth/callback/{p}``) against the fake Graph server: the long-lived token is
stored with its expiry, Facebook stores one connection per Page (Page token; long-lived user token as the refresh
token) that publishes, and every refusal is a clear 4xx with no secret in it and nothing stored."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from kipu.hooks.base import PublishRequest
from kipu.platforms import target_hook
from kipu.platforms.facebook.hook import FacebookPageHook
from kipu.platforms.instagram.hook import InstagramHook
from kipu.platforms.threads.hook import ThreadsHook
from kipu.specs.items import MediaRef
from kipu.store.accounts import connection_tokens, find_team
from kipu.store.engine import session_scope
from kipu.store.models import Connection
from sqlalchemy import select

from tests.api_helpers import SECRETS, assert_no_secret, oauth_app_env, recorded_bodies, signed_in
from tests.conftest import REPO
from tests.fakes.meta_server import LONG_LIVED, MetaServer

API = "/kipu/api"
IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"
SECOND_PAGE = ("104000000000002", "Ana's Bakery")
ENDPOINTS = {  # the fake's paths for each product's authorization window and code exchange
    "instagram": ("/oauth/authorize", "/oauth/access_token"),
    "threads": ("/oauth/authorize", "/oauth/access_token"),
    "facebook": ("/v24.0/dialog/oauth", "/v24.0/oauth/access_token"),
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetaServer]:
    """The fake Graph server, and an OAuth app per product pointing at it (``api_base_url`` for the Graph host)."""
    with MetaServer() as server:
        for platform, (authorize, token) in ENDPOINTS.items():
            client_id, secret = server.state.apps[platform]
            monkeypatch.setenv(*oauth_app_env(platform, server.url, client_id, secret, authorize, token))
        yield server


@pytest.fixture
def client(api: TestClient, roles: dict, fake: MetaServer) -> Iterator[TestClient]:
    """The API client; no response may carry an app secret, a token Meta issued or a Kipu API token."""
    with recorded_bodies(api) as seen:
        yield api
    assert_no_secret(seen, [*SECRETS, *(secret for _, secret in fake.state.apps.values()), *fake.state.tokens])


def authorize(api: TestClient, roles: dict, platform: str) -> dict[str, str]:
    """Start connecting as the team's owner and let the user consent: the state and code Meta redirects with."""
    signed_in(api)  # the owner's own browser, signed in to Airflow
    started = api.post(f"{API}/connections/oauth/{platform}?team=demo", headers=roles["owner"])
    assert started.status_code == 200, started.text
    url = started.json()["authorization_url"]
    query = parse_qs(urlparse(url).query)
    assert query["response_type"] == ["code"] and len(query["state"][0]) >= 40
    consent = httpx.get(url, follow_redirects=False)  # the user's browser at Meta's authorization window
    assert consent.status_code == 302, consent.text
    back = urlparse(consent.headers["location"])
    assert back.path == f"/kipu/api/auth/callback/{platform}"
    got = parse_qs(back.query)
    assert got["state"] == query["state"]
    return {"state": got["state"][0], "code": got["code"][0]}


def connect(api: TestClient, roles: dict, platform: str) -> httpx.Response:
    return api.get(f"{API}/auth/callback/{platform}", params=authorize(api, roles, platform))


def stored(platform: str) -> list[Connection]:
    with session_scope() as s:
        team = find_team(s, "demo")
        rows = s.scalars(
            select(Connection)
            .where(Connection.team_id == team.id, Connection.platform == platform)
            .order_by(Connection.platform_user_id)
        ).all()
        s.expunge_all()
        return list(rows)


def request(caption: str, **kw: Any) -> PublishRequest:
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, created_at=datetime.now(UTC), **kw)


def about(when: str | datetime | None, seconds: float) -> bool:
    """``when`` is ``seconds`` from now, give or take a minute."""
    assert when is not None
    at = datetime.fromisoformat(when) if isinstance(when, str) else when
    return abs((at - datetime.now(UTC) - timedelta(seconds=seconds)).total_seconds()) < 60


def test_instagram_stores_the_long_lived_token_and_publishes(
    client: TestClient, roles: dict, fake: MetaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpx")  # Airflow quiets it to WARNING; a deployment may not
    resp = connect(client, roles, "instagram")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["platform"], out["platform_user_id"], out["username"]) == ("instagram", fake.state.ig_user, "ana.cooks")
    assert out["status"] == "healthy" and about(out["token_expires_at"], LONG_LIVED)
    assert [c["id"] for c in out["connections"]] == [out["id"]]
    assert "instagram_business_content_publish" in out["scopes"]
    assert fake.state.exchanges == ["authorization_code", "ig_exchange_token"]

    [conn] = stored("instagram")
    access, refresh = connection_tokens(conn)
    token = fake.state.tokens[access.get_secret_value()]
    assert not token.short and token.owner == fake.state.ig_user  # the long-lived one, not the code's
    assert refresh is None  # Instagram refreshes the long-lived token with itself (ig_refresh_token)
    assert about(conn.token_expires_at, LONG_LIVED) and conn.metadata_ == {"base_url": fake.url}

    hook = target_hook(conn)
    assert isinstance(hook, InstagramHook)
    hook.poll_interval = 0.02
    image = MediaRef(url=fake.serve("sunrise.png", IMAGE.read_bytes()), mime_type="image/png")
    result = hook.publish(request("Sunrise bread", media=[image]))
    assert result.platform_post_id == fake.state.posts("instagram")[0]["id"]

    secret = fake.state.apps["instagram"][1]
    assert secret not in caplog.text and access.get_secret_value() not in caplog.text
    assert "client_secret=***" in caplog.text  # httpx logs the exchange's URL, with the secrets masked


def test_threads_stores_the_long_lived_token_and_publishes(client: TestClient, roles: dict, fake: MetaServer) -> None:
    resp = connect(client, roles, "threads")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["platform_user_id"], out["username"]) == (fake.state.threads_user, fake.state.ig_username)
    assert about(out["token_expires_at"], LONG_LIVED)
    assert fake.state.exchanges == ["authorization_code", "th_exchange_token"]

    [conn] = stored("threads")
    access, refresh = connection_tokens(conn)
    assert not fake.state.tokens[access.get_secret_value()].short and refresh is None
    hook = target_hook(conn)
    assert isinstance(hook, ThreadsHook)
    hook.poll_interval = 0.02
    result = hook.publish(request("Fresh focaccia out of the oven"))
    assert fake.state.posts("threads")[0]["id"] == result.platform_post_id


def test_facebook_stores_one_connection_per_page_that_publishes_and_renews(
    client: TestClient, roles: dict, fake: MetaServer
) -> None:
    fake.state.pages = {fake.state.page_id: fake.state.page_name, SECOND_PAGE[0]: SECOND_PAGE[1]}
    fake.state.accounts_page_size = 1  # /me/accounts is followed page by page
    resp = connect(client, roles, "facebook")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [(c["platform_user_id"], c["username"]) for c in out["connections"]] == [
        (fake.state.page_id, fake.state.page_name),
        SECOND_PAGE,
    ]
    assert out["id"] == out["connections"][0]["id"] and out["platform"] == "facebook"
    assert fake.state.exchanges == ["authorization_code", "fb_exchange_token"]

    conns = stored("facebook")
    assert [c.platform_user_id for c in conns] == [fake.state.page_id, SECOND_PAGE[0]]
    users = set()
    for conn in conns:
        access, refresh = connection_tokens(conn)
        page, user = fake.state.tokens[access.get_secret_value()], fake.state.tokens[refresh.get_secret_value()]
        assert (page.kind, page.owner) == ("page", conn.platform_user_id)
        assert page.expires_at > time.time() + 365 * 86400  # a Page token from a long-lived user token
        assert (user.kind, user.owner, user.short) == ("user", fake.state.fb_user, False)
        assert conn.metadata_ == {"page_id": conn.platform_user_id, "base_url": fake.url}
        assert conn.token_expires_at is None
        users.add(refresh.get_secret_value())
    assert len(users) == 1  # the same long-lived user token renews every Page

    main = conns[0]
    hook = target_hook(main)
    assert isinstance(hook, FacebookPageHook)
    first = hook.publish(request("Open until 6 today"))
    [post] = fake.state.posts("facebook")
    assert post["id"] == first.platform_post_id and post["media_type"] == "STATUS"

    old = connection_tokens(main)[0].get_secret_value()
    fake.state.expire(old)  # the Page token is refused: a new one is derived from the stored user token
    again = target_hook(main).publish(request("Closed on Sunday"))
    assert again.platform_post_id == fake.state.posts("facebook")[1]["id"]
    [renewed] = [c for c in stored("facebook") if c.id == main.id]
    new = connection_tokens(renewed)[0].get_secret_value()
    assert new != old and fake.state.tokens[new].kind == "page" and renewed.status == "healthy"


def test_facebook_user_without_pages_is_refused_and_nothing_is_stored(
    client: TestClient, roles: dict, fake: MetaServer
) -> None:
    fake.state.pages = {}
    resp = connect(client, roles, "facebook")
    assert resp.status_code == 400
    assert "facebook: this Facebook account manages no Page" in resp.json()["detail"]
    assert stored("facebook") == []


def test_facebook_pages_without_create_content_are_refused(client: TestClient, roles: dict, fake: MetaServer) -> None:
    fake.state.page_tasks = ["ANALYZE"]
    resp = connect(client, roles, "facebook")
    assert resp.status_code == 400
    assert "cannot publish to any of the Pages it manages (Ana's Kitchen)" in resp.json()["detail"]
    assert stored("facebook") == []


@pytest.mark.parametrize("platform", ["instagram", "threads", "facebook"])
def test_a_refused_exchange_names_what_failed_without_any_secret(
    client: TestClient, roles: dict, fake: MetaServer, platform: str
) -> None:
    # as if Meta echoed the parameters back: Kipu must still not repeat them
    fake.state.refuse_exchange = "Invalid token {token} for the app secret {secret}"
    resp = connect(client, roles, platform)
    assert resp.status_code == 400
    detail = resp.json()["detail"]
    assert detail.startswith(f"{platform}: the long-lived token exchange failed (HTTP 400): Invalid token *** for")
    assert fake.state.apps[platform][1] not in detail and "***" in detail
    assert stored(platform) == []


def test_a_refused_code_exchange_keeps_metas_words(client: TestClient, roles: dict, fake: MetaServer) -> None:
    got = authorize(client, roles, "instagram")
    fake.state.codes.clear()  # the code expired (or was used) at Meta
    resp = client.get(f"{API}/auth/callback/instagram", params=got)
    assert resp.status_code == 400
    assert resp.json()["detail"] == (
        "instagram: token request failed (HTTP 400): This authorization code has been used or is invalid"
    )
    assert stored("instagram") == []


def test_the_state_is_single_use_even_when_the_exchange_failed(
    client: TestClient, roles: dict, fake: MetaServer
) -> None:
    got = authorize(client, roles, "threads")
    assert client.get(f"{API}/auth/callback/threads", params=got).status_code == 200
    reused = client.get(f"{API}/auth/callback/threads", params=got)
    assert reused.status_code == 400 and "unknown or already used OAuth state" in reused.json()["detail"]

    fake.state.refuse_exchange = "Session expired"
    failed = authorize(client, roles, "instagram")
    assert client.get(f"{API}/auth/callback/instagram", params=failed).status_code == 400
    retried = client.get(f"{API}/auth/callback/instagram", params=failed)
    assert retried.status_code == 400 and "unknown or already used OAuth state" in retried.json()["detail"]
    assert stored("instagram") == []


def test_another_platforms_state_is_refused(client: TestClient, roles: dict, fake: MetaServer) -> None:
    got = authorize(client, roles, "instagram")
    resp = client.get(f"{API}/auth/callback/threads", params=got)
    assert resp.status_code == 400 and "unknown or already used OAuth state" in resp.json()["detail"]


def test_cli_connect_start_and_finish(
    fake: MetaServer, pg_demo_team: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kipu.cli import main

    fake.state.pages = {fake.state.page_id: fake.state.page_name, SECOND_PAGE[0]: SECOND_PAGE[1]}
    assert main(["connect", "start", "facebook", "--team", "demo"]) == 0
    url = capsys.readouterr().out.strip()
    back = parse_qs(urlparse(httpx.get(url, follow_redirects=False).headers["location"]).query)
    assert main(["connect", "finish", "facebook", "--state", back["state"][0], "--code", back["code"][0]]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [name for _, name in lines] == [fake.state.page_name, SECOND_PAGE[1]]
    assert {c.id for c in stored("facebook")} == {uuid.UUID(i) for i, _ in lines}

    assert main(["connect", "finish", "facebook", "--state", back["state"][0], "--code", back["code"][0]]) == 1
    assert "kipu: facebook: unknown or already used OAuth state" in capsys.readouterr().err
