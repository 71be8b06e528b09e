"""The X hook and OAuth 2.0 with PKCE against a local fake of the X API v2 contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from kipu.auth import oauth
from kipu.hooks.base import NeedsReconnect, PublishRequest, Rejected, Transient
from kipu.platforms import target_hook
from kipu.platforms.x.hook import XHook
from kipu.specs.items import MediaRef
from kipu.store.accounts import connection_tokens, find_team
from kipu.store.engine import session_scope
from kipu.store.models import Connection

from tests.conftest import REPO
from tests.fakes.x_server import XServer

IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"
VIDEO = REPO / "include" / "demo" / "media" / "tour.mp4"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[XServer]:
    with XServer() as server:
        app = {
            "conn_type": "kipu_x_app",
            "login": server.state.client_id,
            "password": server.state.client_secret,
            "extra": {
                "redirect_uri": "https://kipu.example/kipu/api/auth/callback/x",
                "authorize_url": f"{server.url}/i/oauth2/authorize",
                "token_url": f"{server.url}/2/oauth2/token",
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_X_APP", json.dumps(app))
        yield server


def connect(fake: XServer) -> uuid.UUID:
    """The whole OAuth dance: authorization URL, the user's consent (the fake redirects), the callback."""
    app = oauth.app_for("x")
    with session_scope() as s:
        url = oauth.begin(s, app, find_team(s, "demo"))
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["state"][0]) >= 40
    consent = httpx.get(url, follow_redirects=False)
    assert consent.status_code == 302
    back = parse_qs(urlparse(consent.headers["location"]).query)
    assert back["state"] == query["state"]
    with session_scope() as s:
        [conn] = oauth.complete(s, app, back["state"][0], back["code"][0], lambda t: XHook.connect(fake.url, app, t))
        assert conn.metadata_ == {"base_url": fake.url}  # not X's own host: kept for the hook
        return conn.id


@pytest.fixture
def x(fake: XServer, pg_demo_team: dict) -> uuid.UUID:
    return connect(fake)


def hook(conn_id: uuid.UUID) -> XHook:
    with session_scope() as s:
        h = target_hook(s.get(Connection, conn_id))
    assert isinstance(h, XHook)
    return h


def request(caption: str, **kw: object) -> PublishRequest:
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, created_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


def test_oauth_with_pkce_stores_the_connection_encrypted_and_state_is_single_use(
    fake: XServer, pg_demo_team: dict
) -> None:
    conn_id = connect(fake)
    with session_scope() as s:
        conn = s.get(Connection, conn_id)
        assert conn.platform_user_id == "9001" and conn.platform_username == "ana_cooks"
        assert conn.scopes and "tweet.write" in conn.scopes and conn.token_expires_at > datetime.now(UTC)
        access, refresh = connection_tokens(conn)
        assert access.get_secret_value() in fake.state.access and refresh.get_secret_value() in fake.state.refresh
        assert access.get_secret_value() not in conn.access_token  # ciphertext at rest
    app = oauth.app_for("x")
    with session_scope() as s:
        url = oauth.begin(s, app, find_team(s, "demo"))
    back = parse_qs(urlparse(httpx.get(url).headers["location"]).query)
    with session_scope() as s:
        oauth.complete(s, app, back["state"][0], back["code"][0], lambda t: XHook.connect(fake.url, app, t))
    with session_scope() as s, pytest.raises(Rejected, match="unknown or already used OAuth state"):
        oauth.complete(s, app, back["state"][0], back["code"][0], lambda t: XHook.connect(fake.url, app, t))


def test_a_missing_oauth_app_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_KIPU_LINKEDIN_APP", raising=False)
    with pytest.raises(Rejected, match="set the Airflow connection kipu_linkedin_app"):
        oauth.app_for("linkedin")


def test_text_image_and_video_posts(x: uuid.UUID, fake: XServer) -> None:
    h = hook(x)
    text = h.publish(request("Fresh pasta tonight 🍝 https://example.com/p"))
    assert text.url == f"https://x.com/ana_cooks/status/{text.platform_post_id}"
    image = h.publish(request("With a picture", media=[MediaRef(url=str(IMAGE), mime_type="image/png")]))
    video = h.publish(request("With a video", media=[MediaRef(url=str(VIDEO), mime_type="video/mp4")]))
    tweets = {t["id"]: t for t in fake.state.tweets}
    assert len(tweets[image.platform_post_id]["media"]) == 1 and len(tweets[video.platform_post_id]["media"]) == 1
    (mid,) = tweets[video.platform_post_id]["media"]
    assert fake.state.media[mid]["state"] == "succeeded" and fake.state.media[mid]["total"] == VIDEO.stat().st_size
    assert [p.caption for p in h.list_posts()] == [t["text"] for t in fake.state.tweets]


def test_the_weighted_limit_is_checked_before_any_call(x: uuid.UUID) -> None:
    h = hook(x)
    link = " https://example.com/" + "x" * 200  # any link counts 23
    assert h.check(request("a" * 256 + link)) == []  # 256 + 1 + 23 = 280
    over = "a" * 255 + "😀" + link  # 255 + 2 (emoji) + 1 + 23 = 281
    assert h.check(request(over)) == ["x caption is 281 weighted characters, over the limit of 280"]
    with pytest.raises(Rejected, match="x: HTTP 400: One or more parameters"):  # had it been sent, X refuses it
        h.publish(request(over))


def test_processing_that_never_finishes_is_a_bounded_wait(x: uuid.UUID, fake: XServer) -> None:
    fake.state.stuck_media = True
    h = hook(x)
    h.processing_timeout = 2.0
    with pytest.raises(Transient, match="still processing after 2s"):
        h.publish(request("stuck", media=[MediaRef(url=str(VIDEO), mime_type="video/mp4")]))
    assert fake.state.tweets == []


def test_an_expired_token_is_refreshed_once_and_the_rotation_stored(x: uuid.UUID, fake: XServer) -> None:
    fake.state.expire_all()
    calls = fake.state.token_calls
    result = hook(x).publish(request("after refresh"))
    assert result.platform_post_id and fake.state.token_calls == calls + 1
    with session_scope() as s:
        access, refresh = connection_tokens(s.get(Connection, x))
    assert fake.state.access[access.get_secret_value()] > 0 and refresh.get_secret_value() in fake.state.refresh


def test_a_refused_refresh_flags_the_connection_for_reconnect(x: uuid.UUID, fake: XServer) -> None:
    fake.state.expire_all()
    fake.state.refresh.clear()
    with pytest.raises(NeedsReconnect, match="reconnect the account"):
        hook(x).publish(request("nope"))
    with session_scope() as s:
        conn = s.get(Connection, x)
        assert conn.status == "needs_reconnect" and "refresh token was refused" in conn.last_error


def test_5xx_is_retried_and_an_ambiguous_retry_does_not_post_twice(x: uuid.UUID, fake: XServer) -> None:
    fake.state.fail_next = 1
    h = hook(x)
    req = request("exactly once")
    first = h.publish(req)
    again = h.publish(req)  # as if the answer to the first had been lost
    assert again == first and len(fake.state.tweets) == 1
    assert h.find_published(req) == first


def test_the_window_headers_keep_the_hook_under_the_rate_limit(x: uuid.UUID, fake: XServer) -> None:
    fake.state.limit, fake.state.window = 5, 2.0
    h = hook(x)
    for i in range(12):
        h.publish(request(f"post {i}"))
    assert len(fake.state.tweets) == 12 and fake.state.rate_limited == 0


@pytest.mark.slow
def test_kipu_maintenance_refreshes_expiring_tokens_and_reports_reconnects(
    x: uuid.UUID, fake: XServer, airflow_db: object
) -> None:
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    fake.state.user = {"id": "9002", "name": "Bo", "username": "bo_bakes"}
    other = connect(fake)  # a second account, whose refresh token the platform has revoked
    with session_scope() as s:
        for cid in (x, other):
            s.get(Connection, cid).token_expires_at = datetime.now(UTC) + timedelta(hours=3)
        old_access = connection_tokens(s.get(Connection, x))[0].get_secret_value()
        revoked = connection_tokens(s.get(Connection, other))[1].get_secret_value()
    fake.state.refresh.discard(revoked)
    dag = DagBag(dag_folder=str(REPO / "dags" / "kipu_maintenance.py")).dags["kipu_maintenance"]
    run = dag.test()
    assert run.state == "success"
    with create_session() as session:
        xcoms = {
            r.task_id: r.value
            for r in session.scalars(
                # The tasks return dicts, so Airflow also pushes each key as its own XCom: read the whole value.
                select(XComModel).where(
                    XComModel.dag_id == "kipu_maintenance",
                    XComModel.run_id == run.run_id,
                    XComModel.key == "return_value",
                )
            )
        }
    report, flagged = xcoms["refresh_expiring_tokens"], xcoms["report_reconnects"]
    assert report["refreshed"] == 1 and report["needs_reconnect"] == 1
    assert [f["connection_id"] for f in flagged] == [str(other)] and "refresh token was refused" in flagged[0]["reason"]
    with session_scope() as s:
        assert connection_tokens(s.get(Connection, x))[0].get_secret_value() != old_access
    assert old_access not in json.dumps(xcoms)


def test_video_limits_are_probed_before_any_call(x: uuid.UUID, fake: XServer, tmp_path: Path) -> None:
    from tests.videos import make_video

    h = hook(x)
    long = make_video(tmp_path / "long.mp4", seconds=150, width=32, height=32, fps=1)
    wide = make_video(tmp_path / "wide.mp4", seconds=2, width=128, height=32)
    ok = make_video(tmp_path / "ok.mp4", seconds=2)
    assert h.check(request("long", media=[MediaRef(url=str(long), mime_type="video/mp4")])) == [
        "x video is 150.0s long, over the limit of 140s"
    ]
    assert (
        "aspect ratio 4.000 is over the maximum of 3.000"
        in h.check(request("wide", media=[MediaRef(url=str(wide), mime_type="video/mp4")]))[0]
    )
    assert h.check(request("fine", media=[MediaRef(url=str(ok), mime_type="video/mp4")])) == []
    assert fake.state.media == {} and fake.state.tweets == []
