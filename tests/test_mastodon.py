"""Mastodon against a local fake instance that implements the documented contract: an OAuth client registered once
per instance (PKCE), the instance's own limits, async media with alt text, visibility and content warnings,
idempotent and scheduled statuses, ``X-RateLimit-*`` windows, polling with ``min_id``, and the egress guard on the
instance URL a user types."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from kipu.auth import oauth
from kipu.egress import EgressRefused
from kipu.hooks.base import NeedsReconnect, PublishRequest, RateLimited, Rejected
from kipu.hooks.client import THROTTLE, run
from kipu.platforms import target_hook
from kipu.platforms.mastodon.hook import MastodonHook
from kipu.platforms.options import problems_and_options
from kipu.poll.due import due_sources
from kipu.poll.engine import run_cycle
from kipu.specs.errors import WorkflowSpecError
from kipu.specs.items import MediaRef
from kipu.store.accounts import connection_tokens, find_team
from kipu.store.engine import session_scope
from kipu.store.models import Connection, InstanceClient, PollCursor, WorkflowRun
from kipu.store.workflows import save_workflow
from sqlalchemy import select, text

from tests.api_helpers import SECRETS, assert_no_secret, recorded_bodies, signed_in
from tests.conftest import REPO
from tests.fakes.linkedin_server import LinkedInServer
from tests.fakes.mastodon_server import MastodonServer
from tests.helpers import demo_doc

API = "/kipu/api"
IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"
VIDEO = REPO / "include" / "demo" / "media" / "tour.mp4"
CALLBACK = "https://kipu.example/kipu/api/auth/callback/mastodon"


@pytest.fixture(autouse=True)
def public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIPU_PUBLIC_URL", "https://kipu.example")
    THROTTLE.reset()


@pytest.fixture
def fake() -> Iterator[MastodonServer]:
    with MastodonServer() as server:
        yield server


def consent(url: str) -> tuple[str, str]:
    """The user approves at the instance: the code and state it redirects back with."""
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code in (302, 307), answer.text
    back = urlparse(answer.headers["location"])
    assert f"https://{back.netloc}{back.path}" == CALLBACK
    got = parse_qs(back.query)
    return got["code"][0], got["state"][0]


def connect(instance: str) -> uuid.UUID:
    with session_scope() as s:
        url = oauth.begin(s, oauth.app_for("mastodon", instance, s), find_team(s, "demo"))
    code, state = consent(url)
    with session_scope() as s:
        [conn] = oauth.finish(s, "mastodon", state, code)
        return conn.id


@pytest.fixture
def account(fake: MastodonServer, pg_demo_team: dict) -> uuid.UUID:
    return connect(fake.url)


def hook(conn_id: uuid.UUID) -> MastodonHook:
    with session_scope() as s:
        h = target_hook(s.get(Connection, conn_id))
    assert isinstance(h, MastodonHook)
    h.processing_interval = 0.01
    return h


def request(caption: str, **kw: Any) -> PublishRequest:
    kw.setdefault("created_at", datetime.now(UTC))
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, **kw)


# -- connecting ------------------------------------------------------------------------------------------------------
def test_connecting_registers_one_client_per_instance_with_pkce(fake: MastodonServer, pg_demo_team: dict) -> None:
    with session_scope() as s:
        app = oauth.app_for("mastodon", fake.url, s)
        url = oauth.begin(s, app, find_team(s, "demo"))
    assert url.startswith(f"{fake.url}/oauth/authorize?")
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    assert query["scope"] == ["read:accounts read:statuses write:media write:statuses"]
    [registered] = fake.state.apps.values()
    assert registered["redirect_uri"] == CALLBACK and registered["scopes"] == query["scope"][0]

    code, state = consent(url)
    with session_scope() as s:
        [conn] = oauth.finish(s, "mastodon", state, code)
        host = urlparse(fake.url).netloc
        assert conn.platform_user_id == f"{fake.state.account_id}@{host}" and conn.platform_username == f"ana@{host}"
        assert conn.metadata_["base_url"] == fake.url and conn.metadata_["account_id"] == fake.state.account_id
        assert conn.metadata_["limits"]["max_characters"] == 500
        [token] = fake.state.tokens
        assert connection_tokens(conn)[0].get_secret_value() == token
    # A second account of the same instance reuses the client; the client secret is stored encrypted.
    connect(fake.url)
    assert len(fake.state.apps) == 1
    with session_scope() as s:
        [client] = s.scalars(select(InstanceClient)).all()
        assert client.instance == fake.url
        raw = s.execute(text("select client_secret from instance_clients")).scalar_one()
        assert registered["secret"] not in str(raw)

    with MastodonServer(account_id="42", username="bo") as other:  # another instance: its own client
        other_id = connect(other.url)
        assert len(other.state.apps) == 1 and len(fake.state.apps) == 1
    with session_scope() as s:
        assert s.get(Connection, other_id).platform_user_id == f"42@{urlparse(other.url).netloc}"


def test_the_instance_url_goes_through_the_egress_guard(
    fake: MastodonServer, pg_demo_team: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = connect(fake.url)
    monkeypatch.delenv("KIPU_EGRESS_ALLOW_PRIVATE")
    for hostile in (fake.url, "http://169.254.169.254", "localhost:3000", "http://[::1]/"):
        with session_scope() as s, pytest.raises(EgressRefused):
            oauth.app_for("mastodon", hostile, s)
    with session_scope() as s, pytest.raises(Rejected, match="give the instance"):
        oauth.app_for("mastodon", " ", s)
    # A stored connection whose instance resolves to the server's own network publishes nothing.
    with pytest.raises(EgressRefused):
        hook(conn_id).publish(request("never sent"))
    assert not fake.state.statuses


def test_a_server_that_is_not_mastodon_is_a_clear_refusal(pg_demo_team: dict) -> None:
    with LinkedInServer() as other, session_scope() as s:
        with pytest.raises(Rejected, match=r"answered HTTP 404 to an app registration: not a Mastodon server\?"):
            oauth.app_for("mastodon", other.url, s)
        assert s.scalars(select(InstanceClient)).all() == []


# -- limits ----------------------------------------------------------------------------------------------------------
def test_the_instance_limit_and_its_counting(fake: MastodonServer, pg_demo_team: dict) -> None:
    fake.state.max_characters = 1000
    h = hook(connect(fake.url))
    assert h.check(request("x" * 1000)) == []
    assert h.check(request("x" * 1001)) == ["mastodon caption is 1001 characters, over the limit of 1000"]
    # A URL counts 23 whatever its length, a remote mention by its user part, an emoji sequence as one.
    long_url = "https://example.com/" + "a" * 700
    assert h.check(request(f"{'y' * 970} {long_url}")) == []
    assert h.check(request("@ana@" + "very-long-domain." * 40 + "social " + "z" * 990)) == []
    assert h.check(request("👩‍👩‍👧‍👦" * 1000)) == []
    # The content warning shares the budget.
    warned = request("x" * 990, options={"spoiler_text": "spoilers ahead"})
    assert h.check(warned) == ["mastodon caption and content warning are 1004 characters, over the limit of 1000"]
    assert h.publish(request(f"{'y' * 970} {long_url}")).platform_post_id  # the instance agrees


def test_an_instance_without_a_description_gets_the_defaults(pg_demo_team: dict) -> None:
    with MastodonServer(describe_instance=False) as fake:
        h = hook(connect(fake.url))
        assert h.limits.max_characters == 500
        assert h.check(request("x" * 501)) == ["mastodon caption is 501 characters, over the limit of 500"]


def test_options_media_and_scheduling_are_checked_before_any_call(account: uuid.UUID, fake: MastodonServer) -> None:
    problems, _ = problems_and_options("mastodon", {"visibility": "friends", "language": "English", "cw": "x"})
    assert "mastodon option 'cw' is not known (visibility, spoiler_text, sensitive, language)" in problems
    assert any(p.startswith("mastodon option 'visibility': Input should be 'public'") for p in problems)
    assert any(p.startswith("mastodon option 'language': String should match pattern") for p in problems)
    h = hook(account)
    fake.state.requests.clear()
    images = [MediaRef(url=str(IMAGE), mime_type="image/png")] * 5
    assert h.check(request("five", media=images)) == ["mastodon takes at most 4 images, got 5"]
    mixed = [MediaRef(url="v.mp4", mime_type="video/mp4"), MediaRef(url=str(IMAGE), mime_type="image/png")]
    assert h.check(request("mixed", media=mixed)) == ["mastodon takes one video or up to 4 images, not both"]
    alt = [MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="a" * 1501)]
    assert h.check(request("alt", media=alt)) == [
        f"mastodon alt text of {IMAGE} is 1501 characters, over the limit of 1500"
    ]
    assert fake.state.requests == []  # nothing asked of the instance


# -- publishing ------------------------------------------------------------------------------------------------------
def test_text_with_visibility_content_warning_and_language(account: uuid.UUID, fake: MastodonServer) -> None:
    options = {"visibility": "unlisted", "spoiler_text": "food", "language": "en", "sensitive": True}
    result = hook(account).publish(request("Weeknight pasta #cooking https://example.com/p", options=options))
    [status] = fake.state.statuses
    assert (status["visibility"], status["spoiler_text"], status["language"], status["sensitive"]) == (
        "unlisted",
        "food",
        "en",
        True,
    )
    assert result.platform_post_id == status["id"] and result.url == status["url"]


def test_images_with_alt_text_and_a_video_processed_asynchronously(account: uuid.UUID, fake: MastodonServer) -> None:
    h = hook(account)
    image = MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="A loaf at sunrise")
    h.publish(request("two loaves", media=[image, image]))
    first = fake.state.statuses[-1]
    assert [a["description"] for a in first["media_attachments"]] == ["A loaf at sunrise"] * 2
    assert not any(path.startswith("/api/v1/media/") for _, path in fake.state.requests)  # images: 200 at once

    fake.state.processing_polls = 3
    h.publish(request("a clip", media=[MediaRef(url=str(VIDEO), mime_type="video/mp4", alt_text="steam")]))
    polls = [path for method, path in fake.state.requests if method == "GET" and path.startswith("/api/v1/media/")]
    assert len(polls) == 4  # 206 three times, then 200
    assert fake.state.statuses[-1]["media_attachments"][0]["type"] == "video"

    fake.state.fail_processing = True
    with pytest.raises(Rejected, match="error processing the media attachment"):
        h.publish(request("a broken clip", media=[MediaRef(url=str(VIDEO), mime_type="video/mp4")]))
    assert len(fake.state.statuses) == 2


def test_retries_and_crashes_never_post_twice(account: uuid.UUID, fake: MastodonServer) -> None:
    h = hook(account)
    req = request("exactly once")
    fake.state.fail_next = 1  # a 503 first: retried with the same Idempotency-Key
    first = h.publish(req)
    again = h.publish(req)  # a task retry after a crash: the instance answers with the same status
    assert first == again and len(fake.state.statuses) == 1
    # Once accepted, the status is found by its id; deleted since, it is refused rather than posted again.
    stored = req.model_copy(update={"publish_ref": first.platform_post_id})
    assert h.find_published(stored) == first
    fake.state.statuses.clear()
    with pytest.raises(Rejected, match="has since been deleted"):
        h.find_published(stored)
    # After the instance forgot the key (an hour), the status is found among the newest by its text.
    old = request("from yesterday", created_at=datetime.now(UTC) - timedelta(hours=3))
    fake.state.add_status("from yesterday", base=fake.url, created_at=datetime.now(UTC) - timedelta(hours=3))
    assert h.find_published(old).platform_post_id == fake.state.statuses[-1]["id"]


def test_scheduled_statuses_are_settled_later(account: uuid.UUID, fake: MastodonServer) -> None:
    h = hook(account)
    when = datetime.now(UTC) + timedelta(hours=2)
    req = request("at dinner time https://example.com/recipe", schedule_at=when)
    result = h.publish(req)
    assert result.awaiting and result.publish_ref.startswith("scheduled:") and not fake.state.statuses
    pending = req.model_copy(update={"publish_ref": result.publish_ref})
    assert h.find_published(pending).awaiting
    [published] = fake.state.publish_due(when + timedelta(seconds=1))
    settled = h.find_published(pending)
    assert not settled.awaiting and settled.platform_post_id == published["id"]
    # Less than five minutes ahead: Mastodon would refuse it, so it is published at once.
    soon = h.publish(request("right away", schedule_at=datetime.now(UTC) + timedelta(minutes=2)))
    assert not soon.awaiting and fake.state.statuses[-1]["id"] == soon.platform_post_id


# -- errors and rate limits ------------------------------------------------------------------------------------------
def test_a_revoked_token_asks_for_a_reconnect(account: uuid.UUID, fake: MastodonServer) -> None:
    fake.state.tokens.clear()
    with pytest.raises(NeedsReconnect, match="reconnect"):
        hook(account).publish(request("revoked"))


def test_the_instance_refusal_keeps_its_words(account: uuid.UUID, fake: MastodonServer) -> None:
    fake.state.max_characters = 10  # the instance lowered its limit since the account was connected
    with pytest.raises(Rejected, match=r"mastodon: HTTP 422: Validation failed: Text character limit of 10 exceeded"):
        hook(account).publish(request("longer than ten"))


def test_rate_limit_windows(account: uuid.UUID, fake: MastodonServer) -> None:
    h = hook(account)
    fake.state.rate_window, fake.state.throttle_next = 1.0, 1  # a 429 whose window ends within a second: waited
    started = time.monotonic()
    assert h.publish(request("after a short wait")).platform_post_id
    assert time.monotonic() - started < 5
    # A spent window that ends in five minutes: the next call is not sent, and the wait is said.
    fake.state.rate_window, fake.state.rate_limit, fake.state.window_start = 300.0, 1, time.time()
    fake.state.used = 0
    h.publish(request("the last one in this window"))
    sent = len(fake.state.requests)
    with pytest.raises(RateLimited) as caught:
        h.publish(request("too many"))
    assert caught.value.retry_after is not None and 200 < caught.value.retry_after <= 300
    assert len(fake.state.requests) == sent


# -- polling ---------------------------------------------------------------------------------------------------------
def test_polling_reads_own_shared_statuses_oldest_first(account: uuid.UUID, fake: MastodonServer) -> None:
    s = fake.state
    s.add_status("first #bread\n\nsecond paragraph https://example.com/" + "a" * 60, base=fake.url)
    s.add_status("followers only", visibility="private", base=fake.url)
    s.add_status("a reply", base=fake.url, in_reply_to_id="1")
    s.add_status("quiet @bo@other.example", visibility="unlisted", base=fake.url)
    items = hook(account).list_posts()
    assert [i.caption for i in items] == [
        "first #bread\n\nsecond paragraph https://example.com/" + "a" * 60,
        "quiet @bo",
    ]
    assert items[0].hashtags == ["bread"] and items[0].url == s.statuses[0]["url"]
    assert items[0].published_at is not None and items[0].published_at.tzinfo is not None


def test_polling_pages_forward_with_min_id(account: uuid.UUID, fake: MastodonServer) -> None:
    h = hook(account)
    cursor = fake.state.add_status("the cursor", base=fake.url)["id"]
    for n in range(45):
        fake.state.add_status(f"post {n}", base=fake.url, visibility="private" if n < 41 else "public")
    for n in range(45, 50):
        fake.state.add_status(f"post {n}", base=fake.url)
    # One page per poll cycle, but a page of statuses never reposted does not hold the cursor back.
    items = run(h.poll(cursor, 40, pages=1), h.send)
    assert [i.caption for i in items] == [f"post {n}" for n in range(41, 50)]
    calls = [q for q in fake.state.requests if q[1].endswith("/statuses")]
    assert len(calls) == 2
    assert run(h.poll(items[-1].platform_post_id, 40, pages=1), h.send) == []


# -- through the API, as a user connects ------------------------------------------------------------------------------
def test_connecting_through_the_api(
    api: TestClient, roles: dict, fake: MastodonServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recorded_bodies(api) as seen:
        missing = api.post(f"{API}/connections/oauth/mastodon?team=demo", headers=roles["owner"])
        assert missing.status_code == 422 and "give the instance" in missing.text
        with monkeypatch.context() as guarded:
            guarded.delenv("KIPU_EGRESS_ALLOW_PRIVATE")
            for internal in ("http://169.254.169.254", fake.url):
                refused = api.post(
                    f"{API}/connections/oauth/mastodon?team=demo&instance={internal}", headers=roles["owner"]
                )
                assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "instance"]
        assert fake.state.apps == {}
        with LinkedInServer() as other:
            odd = api.post(f"{API}/connections/oauth/mastodon?team=demo&instance={other.url}", headers=roles["owner"])
            assert odd.status_code == 422 and "not a Mastodon server" in odd.text
        member = api.post(f"{API}/connections/oauth/mastodon?team=demo&instance={fake.url}", headers=roles["member"])
        assert member.status_code == 403
        signed_in(api)  # the owner's own browser, signed in to Airflow
        started = api.post(f"{API}/connections/oauth/mastodon?team=demo&instance={fake.url}", headers=roles["owner"])
        assert started.status_code == 200, started.text
        code, state = consent(started.json()["authorization_url"])
        back = api.get(f"{API}/auth/callback/mastodon", params={"code": code, "state": state})
        assert back.status_code == 200, back.text
        assert back.json()["platform"] == "mastodon" and back.json()["username"].startswith("ana@")
        assert api.get(f"{API}/auth/callback/mastodon", params={"code": code, "state": state}).status_code == 400
    [client] = fake.state.apps.values()
    assert_no_secret(seen, [*SECRETS, client["secret"], *fake.state.tokens])


# -- as a workflow uses it -------------------------------------------------------------------------------------------
def mastodon_workflow(account: uuid.UUID, **publish: Any) -> dict[str, Any]:
    doc = demo_doc(slug="from_mastodon", name="From Mastodon")
    doc["trigger"] = {"type": "poll", "connection_id": str(account), "platform": "mastodon"}
    doc["steps"] = [
        {
            "id": "skip_text",
            "type": "filter",
            "config": {"conditions": [{"field": "type", "operator": "not_contains", "value": "text"}]},
        },
        {
            "id": "to_mastodon",
            "type": "publish",
            "connection_id": str(account),
            "platform": "mastodon",
            "config": publish,
        },
    ]
    return doc


def test_a_workflow_polls_an_account_through_the_poll_engine(account: uuid.UUID, fake: MastodonServer) -> None:
    with session_scope() as s:
        wf = save_workflow(s, mastodon_workflow(account, platform_options={"visibility": "unlisted"})).id
    fake.state.add_status("before the workflow", base=fake.url)
    with session_scope() as s:
        sources = due_sources(s, datetime.now(UTC))
    assert asyncio.run(run_cycle(sources, source_timeout=5.0)).new_runs == 0  # no history replayed
    fake.state.add_status("a photo", base=fake.url, media=[{"id": "9", "type": "image", "url": f"{fake.url}/f/9"}])
    fake.state.add_status("just words", base=fake.url)
    with session_scope() as s:
        cursor = s.get(PollCursor, wf)
        cursor.last_checked_at -= timedelta(days=1)
    with session_scope() as s:
        sources = due_sources(s, datetime.now(UTC))
    report = asyncio.run(run_cycle(sources, source_timeout=5.0))
    assert report.failed == 0 and report.new_runs == 2
    with session_scope() as s:
        rows = s.scalars(select(WorkflowRun).where(WorkflowRun.workflow_id == wf)).all()
        assert sorted((r.trigger_data["caption"], r.status) for r in rows) == [
            ("a photo", "pending"),
            ("just words", "pending"),
        ]


def test_a_workflow_with_bad_mastodon_options_names_the_field(account: uuid.UUID) -> None:
    with session_scope() as s, pytest.raises(WorkflowSpecError) as caught:
        save_workflow(s, mastodon_workflow(account, platform_options={"visibility": "friends"}))
    assert "mastodon option 'platform_options.visibility': Input should be 'public'" in str(caught.value)
