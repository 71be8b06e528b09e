"""Connecting TikTok and YouTube through the real API routes (``POST /connections/oauth/{p}`` → the platform's
consent page → ``GET /auth/callback/{p}``) and ``kipu connect start/finish``, against the fakes' Login Kit and
Google OAuth: the tokens the fake issued are stored encrypted with the refresh token and the expiry, the account is
TikTok's open_id or the YouTube channel, the stored connection publishes and reads, and every refusal is a clear 4xx
with no secret in it and nothing stored."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from kipu.auth import oauth
from kipu.hooks.base import NeedsReconnect
from kipu.platforms import source_hook, target_hook
from kipu.platforms.tiktok.hook import TikTokHook
from kipu.platforms.youtube.hook import YouTubeHook
from kipu.platforms.youtube.quota import MemoryLedger
from kipu.specs.common import OAUTH_PLATFORMS
from kipu.store.accounts import connection_tokens, find_team
from kipu.store.engine import session_scope
from kipu.store.models import Connection
from sqlalchemy import select

from tests.api_helpers import SECRETS, assert_no_secret, oauth_app_env, recorded_bodies, signed_in
from tests.fakes.tiktok_server import TikTokServer
from tests.fakes.youtube_server import AUTHORIZE, TOKEN, YouTubeServer
from tests.videos import make_video, video_request

API = "/kipu/api"
PLATFORMS = ("tiktok", "youtube")
YOUTUBE_SCOPES = ["https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"]
NO_CHANNEL = "youtube: this Google account has no YouTube channel; create one, then connect again"


def record_issued(state: Any) -> list[dict[str, Any]]:
    """Every token response the fake hands out, kept (the fakes forget rotated refresh tokens)."""
    issued: list[dict[str, Any]] = []
    original = state.issue

    def issue(*args: Any, **kwargs: Any) -> dict[str, Any]:
        tokens = original(*args, **kwargs)
        issued.append(dict(tokens))
        return tokens

    state.issue = issue
    return issued


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kipu.hooks.client.backoff", lambda attempt: 0.0)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Both fakes, with an OAuth app each pointing at them (``api_base_url`` for the API host)."""
    with TikTokServer() as tiktok, YouTubeServer() as youtube:
        apps = {
            "tiktok": (
                tiktok,
                tiktok.state.client_key,
                tiktok.state.client_secret,
                "/v2/auth/authorize/",
                "/v2/oauth/token/",
            ),
            "youtube": (youtube, youtube.state.client_id, youtube.state.client_secret, AUTHORIZE, TOKEN),
        }
        for platform, (server, client_id, secret, authorize, token) in apps.items():
            monkeypatch.setenv(*oauth_app_env(platform, server.url, client_id, secret, authorize, token))
        MemoryLedger.reset()
        yield {
            "tiktok": tiktok,
            "youtube": youtube,
            "issued": {"tiktok": record_issued(tiktok.state), "youtube": record_issued(youtube.state)},
        }
    MemoryLedger.reset()


@pytest.fixture
def client(api: TestClient, roles: dict, fakes: dict[str, Any]) -> Iterator[TestClient]:
    """The API client; no response may carry an app secret, a token a fake issued or a Kipu API token."""
    app_secrets = [fakes["tiktok"].state.client_secret, fakes["youtube"].state.client_secret]  # before any test changes
    with recorded_bodies(api) as seen:
        yield api
    secrets = [*SECRETS, *app_secrets]
    for issued in fakes["issued"].values():
        secrets += [t[k] for t in issued for k in ("access_token", "refresh_token") if k in t]
    assert_no_secret(seen, secrets)


def authorize(api: TestClient, roles: dict, platform: str) -> dict[str, str]:
    """Start connecting as the team's owner and let the user consent: the state and code the platform redirects
    with. Checks the authorization URL has what each platform documents."""
    signed_in(api)  # the owner's own browser, signed in to Airflow
    started = api.post(f"{API}/connections/oauth/{platform}?team=demo", headers=roles["owner"])
    assert started.status_code == 200, started.text
    url = started.json()["authorization_url"]
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert query["response_type"] == "code" and len(query["state"]) >= 40
    assert query["code_challenge_method"] == "S256"
    if platform == "tiktok":  # client_key, comma-separated scopes, the hex SHA-256 challenge
        assert "client_id" not in query and query["client_key"] == "tt-client-key"
        assert query["scope"] == "user.info.basic,video.list,video.publish,video.upload"
        assert re.fullmatch(r"[0-9a-f]{64}", query["code_challenge"])
    else:  # Google: space-separated scopes, a refresh token asked for, the RFC 7636 challenge
        assert query["scope"].split() == YOUTUBE_SCOPES
        assert (query["access_type"], query["prompt"]) == ("offline", "consent")
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"])
    consent = httpx.get(url, follow_redirects=False)  # the user's browser at the platform's consent page
    assert consent.status_code == 302, consent.text
    back = urlparse(consent.headers["location"])
    assert back.path == f"/kipu/api/auth/callback/{platform}"
    got = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert got["state"] == query["state"]
    return {k: got[k] for k in ("state", "code", "error") if k in got}


def connect(api: TestClient, roles: dict, platform: str) -> httpx.Response:
    return api.get(f"{API}/auth/callback/{platform}", params=authorize(api, roles, platform))


def stored(platform: str) -> list[Connection]:
    with session_scope() as s:
        team = find_team(s, "demo")
        rows = s.scalars(select(Connection).where(Connection.team_id == team.id, Connection.platform == platform)).all()
        s.expunge_all()
        return list(rows)


def reload(conn: Connection) -> Connection:
    with session_scope() as s:
        fresh = s.get(Connection, conn.id)
        assert fresh is not None
        s.expunge(fresh)
        return fresh


def about(when: str | datetime | None, seconds: float) -> bool:
    """``when`` is ``seconds`` from now, give or take a minute."""
    assert when is not None
    at = datetime.fromisoformat(when) if isinstance(when, str) else when
    return abs((at - datetime.now(UTC) - timedelta(seconds=seconds)).total_seconds()) < 60


def test_one_list_of_oauth_platforms_each_with_an_app() -> None:
    assert set(OAUTH_PLATFORMS) == set(oauth.DEFAULT_APPS)
    assert {"tiktok", "youtube"} <= set(OAUTH_PLATFORMS)


def test_the_openapi_document_offers_tiktok_and_youtube(api: TestClient) -> None:
    paths = api.get("/kipu/openapi.json").json()["paths"]
    for path in ("/api/connections/oauth/{platform}", "/api/auth/callback/{platform}"):
        [op] = [op for p, ops in paths.items() if p.endswith(path) for op in ops.values()]
        [param] = [p for p in op["parameters"] if p["name"] == "platform"]
        assert set(param["schema"]["enum"]) == set(OAUTH_PLATFORMS)


def test_pkce_challenges_rfc_and_tiktok() -> None:
    verifier, challenge = oauth.pkce_pair()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert 43 <= len(verifier) <= 128 and challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    verifier, challenge = oauth.pkce_pair("hex")
    assert challenge == hashlib.sha256(verifier.encode()).hexdigest()
    assert oauth.DEFAULT_APPS["tiktok"].pkce_encoding == "hex"
    assert oauth.DEFAULT_APPS["youtube"].pkce_encoding == "base64url"


def test_tiktok_stores_the_issued_tokens_publishes_and_lists(
    client: TestClient, roles: dict, fakes: dict[str, Any], tmp_path: Path
) -> None:
    fake: TikTokServer = fakes["tiktok"]
    resp = connect(client, roles, "tiktok")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["platform"], out["platform_user_id"], out["username"]) == ("tiktok", fake.state.open_id, "Ana")
    # TikTok's access token lasts 24 h, but the stored refresh token renews it: nothing for the user to do.
    assert out["status"] == "healthy" and about(out["token_expires_at"], 86_400)
    assert out["scopes"] == ["user.info.basic", "video.list", "video.publish", "video.upload"]
    assert [c["id"] for c in out["connections"]] == [out["id"]]
    assert fake.state.exchanges == ["authorization_code"]

    [issued] = fakes["issued"]["tiktok"]
    assert issued["open_id"] == fake.state.open_id  # the token response names the account too
    [conn] = stored("tiktok")
    access, refresh = connection_tokens(conn)
    assert access.get_secret_value() == issued["access_token"]
    assert refresh is not None and refresh.get_secret_value() == issued["refresh_token"]
    assert issued["access_token"] not in (conn.access_token or "")  # ciphertext at rest
    assert conn.platform_user_id == fake.state.open_id and about(conn.token_expires_at, 86_400)
    assert conn.metadata_ == {"base_url": fake.url}

    hook = target_hook(conn)
    assert isinstance(hook, TikTokHook)
    hook.poll_interval, hook.endpoint_rates = 0.02, {}  # pacing is tested in test_tiktok.py
    clip = make_video(tmp_path / "clip.mp4", seconds=2.0)
    result = hook.publish(video_request(clip, "Sourdough at dawn #bread", privacy_level="SELF_ONLY"))
    [post] = fake.state.posts
    assert result.platform_post_id and post["privacy_level"] == "SELF_ONLY"

    # A day later the access token has expired: the stored refresh token renews it, and TikTok's rotation is kept.
    fake.state.add_video("Focaccia, the whole recipe", created=int(datetime.now(UTC).timestamp()))
    fake.state.expire_all()
    items = source_hook(conn).list_posts()
    assert [i.caption for i in items] == ["Focaccia, the whole recipe"]
    assert fake.state.exchanges == ["authorization_code", "refresh_token"]
    access, refresh = connection_tokens(reload(conn))
    assert refresh is not None and refresh.get_secret_value() == fakes["issued"]["tiktok"][-1]["refresh_token"]


def test_youtube_stores_the_issued_tokens_and_uploads(
    client: TestClient, roles: dict, fakes: dict[str, Any], tmp_path: Path
) -> None:
    fake: YouTubeServer = fakes["youtube"]
    resp = connect(client, roles, "youtube")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["platform"], out["platform_user_id"]) == ("youtube", fake.state.channel_id)
    assert out["username"] == fake.state.channel_title and out["scopes"] == YOUTUBE_SCOPES
    assert out["status"] == "healthy" and about(out["token_expires_at"], 3599)
    assert fake.state.exchanges == ["authorization_code"]

    [issued] = fakes["issued"]["youtube"]
    assert issued["token_type"] == "Bearer" and issued["scope"].split() == YOUTUBE_SCOPES
    [conn] = stored("youtube")
    access, refresh = connection_tokens(conn)
    assert access.get_secret_value() == issued["access_token"]
    assert refresh is not None and refresh.get_secret_value() == issued["refresh_token"]
    assert conn.platform_user_id == fake.state.channel_id and about(conn.token_expires_at, 3599)
    assert conn.metadata_ == {"base_url": fake.url}

    hook = target_hook(conn)
    assert isinstance(hook, YouTubeHook)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(300_000))
    result = hook.publish(video_request(clip, "Pasta night\nThe whole recipe #pasta", privacy="unlisted"))
    [video] = fake.state.videos
    assert result.platform_post_id == video["id"] and video["data"] == clip.read_bytes()

    # The access token expires within the hour: the stored refresh token renews it; Google keeps it as it is.
    fake.state.expire_all()
    uploads = target_hook(reload(conn)).recent_uploads()  # type: ignore[attr-defined]
    assert [u["contentDetails"]["videoId"] for u in uploads] == [video["id"]]
    assert fake.state.exchanges == ["authorization_code", "refresh_token"]
    access, refresh = connection_tokens(reload(conn))
    assert access.get_secret_value() == fakes["issued"]["youtube"][-1]["access_token"]
    assert refresh is not None and refresh.get_secret_value() == issued["refresh_token"]


def test_a_tiktok_refresh_refused_with_http_200_asks_for_a_reconnect(
    client: TestClient, roles: dict, fakes: dict[str, Any]
) -> None:
    fake: TikTokServer = fakes["tiktok"]
    assert connect(client, roles, "tiktok").status_code == 200
    [conn] = stored("tiktok")
    fake.state.errors_with_200 = True
    fake.state.refresh.clear()  # revoked at TikTok
    fake.state.expire_all()
    with pytest.raises(NeedsReconnect, match="tiktok: the refresh token was refused; reconnect the account"):
        source_hook(conn).list_posts()
    assert fake.state.exchanges == ["authorization_code", "refresh_token"]
    assert reload(conn).status == "needs_reconnect"


def test_reconnecting_youtube_still_gets_a_refresh_token(
    client: TestClient, roles: dict, fakes: dict[str, Any]
) -> None:
    """Google sends a refresh token on the first consent only, unless asked with prompt=consent, as Kipu does."""
    fake: YouTubeServer = fakes["youtube"]
    fake.state.granted_before = True
    assert connect(client, roles, "youtube").status_code == 200
    [conn] = stored("youtube")
    refresh = connection_tokens(conn)[1]
    assert refresh is not None and refresh.get_secret_value() == fakes["issued"]["youtube"][-1]["refresh_token"]


def test_a_google_account_without_a_channel_is_refused_and_nothing_is_stored(
    client: TestClient, roles: dict, fakes: dict[str, Any]
) -> None:
    fakes["youtube"].state.has_channel = False
    resp = connect(client, roles, "youtube")
    assert resp.status_code == 400
    assert resp.json()["detail"] == NO_CHANNEL
    assert fakes["youtube"].state.exchanges == ["authorization_code"]
    assert stored("youtube") == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_state_is_single_use_even_when_the_exchange_failed(
    client: TestClient, roles: dict, fakes: dict[str, Any], platform: str
) -> None:
    got = authorize(client, roles, platform)
    assert client.get(f"{API}/auth/callback/{platform}", params=got).status_code == 200
    reused = client.get(f"{API}/auth/callback/{platform}", params=got)
    assert reused.status_code == 400
    assert reused.json()["detail"] == f"{platform}: unknown or already used OAuth state; start connecting again"

    failed = authorize(client, roles, platform)
    fakes[platform].state.codes.clear()  # the code expired at the platform
    assert client.get(f"{API}/auth/callback/{platform}", params=failed).status_code == 400
    retried = client.get(f"{API}/auth/callback/{platform}", params=failed)
    assert retried.status_code == 400 and "unknown or already used OAuth state" in retried.json()["detail"]
    assert len(stored(platform)) == 1


def test_another_platforms_state_is_refused(client: TestClient, roles: dict, fakes: dict[str, Any]) -> None:
    got = authorize(client, roles, "tiktok")
    resp = client.get(f"{API}/auth/callback/youtube", params=got)
    assert resp.status_code == 400 and "unknown or already used OAuth state" in resp.json()["detail"]
    assert fakes["youtube"].state.exchanges == []


REFUSALS: dict[str, tuple[Callable[[Any], None], str]] = {
    "tiktok-expired-code": (
        lambda st: st.codes.clear(),
        "tiktok: token request failed (HTTP 400): Authorization code is expired. (invalid_grant)",
    ),
    "tiktok-refused-with-http-200": (  # TikTok has been seen to answer a refused grant with HTTP 200
        lambda st: (st.codes.clear(), setattr(st, "errors_with_200", True)),
        "tiktok: token request failed (HTTP 200): Authorization code is expired. (invalid_grant)",
    ),
    "tiktok-wrong-secret": (
        lambda st: setattr(st, "client_secret", "rotated-secret"),
        "tiktok: token request failed (HTTP 401): Client key or secret is incorrect. (invalid_client)",
    ),
    "tiktok-wrong-verifier": (
        lambda st: [c.update(challenge=hashlib.sha256(b"another").hexdigest()) for c in st.codes.values()],
        "tiktok: token request failed (HTTP 400): Code verifier or code challenge is invalid. (invalid_request)",
    ),
    "youtube-expired-code": (
        lambda st: st.codes.clear(),
        "youtube: token request failed (HTTP 400): Bad Request (invalid_grant)",
    ),
    "youtube-wrong-secret": (
        lambda st: setattr(st, "client_secret", "rotated-secret"),
        "youtube: token request failed (HTTP 401): Unauthorized (invalid_client)",
    ),
    "youtube-wrong-verifier": (
        lambda st: [c.update(challenge="x" * 43) for c in st.codes.values()],
        "youtube: token request failed (HTTP 400): Invalid code verifier. (invalid_grant)",
    ),
    "youtube-redirect-mismatch": (
        lambda st: [c.update(redirect_uri="https://elsewhere.example/cb") for c in st.codes.values()],
        "youtube: token request failed (HTTP 400): Bad Request (redirect_uri_mismatch)",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_code_exchange_is_a_clear_4xx_without_secrets(
    client: TestClient, roles: dict, fakes: dict[str, Any], case: str
) -> None:
    platform = case.split("-")[0]
    got = authorize(client, roles, platform)
    change, detail = REFUSALS[case]
    change(fakes[platform].state)
    resp = client.get(f"{API}/auth/callback/{platform}", params=got)
    assert resp.status_code == 400
    assert resp.json()["detail"] == detail
    assert got["code"] not in resp.text
    assert stored(platform) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_user_who_refuses_is_told_and_nothing_is_stored(
    client: TestClient, roles: dict, fakes: dict[str, Any], platform: str
) -> None:
    fakes[platform].state.deny = True
    got = authorize(client, roles, platform)
    assert got["error"] == "access_denied" and "code" not in got
    resp = client.get(f"{API}/auth/callback/{platform}", params=got)
    assert resp.status_code == 400 and resp.json()["detail"] == f"{platform} did not authorize: access_denied"
    assert fakes[platform].state.exchanges == [] and stored(platform) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_only_team_admins_start_connecting(
    client: TestClient, roles: dict, fakes: dict[str, Any], platform: str
) -> None:
    for role in ("member", "viewer", "outsider"):
        resp = client.post(f"{API}/connections/oauth/{platform}?team=demo", headers=roles[role])
        assert resp.status_code in (403, 404), (role, resp.text)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cli_connect_start_and_finish(
    fakes: dict[str, Any], pg_demo_team: dict, capsys: pytest.CaptureFixture[str], platform: str
) -> None:
    from kipu.cli import main

    assert main(["connect", "start", platform, "--team", "demo"]) == 0
    url = capsys.readouterr().out.strip()
    back = parse_qs(urlparse(httpx.get(url, follow_redirects=False).headers["location"]).query)
    state, code = back["state"][0], back["code"][0]
    assert main(["connect", "finish", platform, "--state", state, "--code", code]) == 0
    [(conn_id, name)] = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    [conn] = stored(platform)
    assert uuid.UUID(conn_id) == conn.id
    st = fakes[platform].state
    want = ("Ana", st.open_id) if platform == "tiktok" else (st.channel_title, st.channel_id)
    assert (name, conn.platform_user_id) == want
    assert connection_tokens(conn)[1] is not None

    assert main(["connect", "finish", platform, "--state", state, "--code", code]) == 1
    assert f"kipu: {platform}: unknown or already used OAuth state" in capsys.readouterr().err
