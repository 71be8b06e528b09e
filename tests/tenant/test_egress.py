"""Class 5: no URL a user supplies reaches the server's own network. One egress guard: http(s) only; loopback,
private, link-local, CGNAT, multicast, reserved (IPv4, IPv6, IPv4 inside IPv6) refused on the address actually
connected to; every redirect re-checked; the remote's words never echoed; item media never read from the server."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from kipu import egress
from kipu.egress import EgressRefused
from kipu.hooks.base import PublishRequest, Rejected
from kipu.hooks.http import LimitedClient
from kipu.platforms.feed.hook import FeedHook
from kipu.platforms.outbox.hook import OutboxHook
from kipu.publishing import deliver
from kipu.specs.items import MediaRef

from tests.fakes.canary_server import CANARY, CanaryServer

API = "/kipu/api"


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard as deployed: the demo-and-tests allowance off."""
    monkeypatch.delenv(egress.ALLOW_PRIVATE_ENV, raising=False)
    monkeypatch.delenv(egress.ALLOW_CIDRS_ENV, raising=False)


@pytest.fixture
def canary() -> Iterator[CanaryServer]:
    server = CanaryServer()
    yield server
    server.stop()


REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "fec0::1",  # site-local: Python 3.11 calls it global
    "fec0::a9fe:a9fe",
    "3fff::1",  # documentation (RFC 9637): Python 3.11 calls it global
    "64:ff9b:1::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_every_non_public_address_is_refused(guarded: None, address: str) -> None:
    assert egress.blocked_rule(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(guarded: None, address: str) -> None:
    assert egress.blocked_rule(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("ftp://example.com/x", "scheme 'ftp'"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data", "link-local"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.8/", "private"),
        ("/etc/passwd", "scheme 'none'"),
    ],
)
def test_urls_are_refused_before_any_connection(guarded: None, url: str, rule: str) -> None:
    with pytest.raises(EgressRefused, match=rule):
        egress.check_url(url)


def test_a_name_is_checked_on_the_address_it_resolves_to(guarded: None, canary: CanaryServer) -> None:
    port = canary.url.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/", f"http://2130706433:{port}/", canary.url):
        with egress.client() as client, pytest.raises(EgressRefused, match="loopback"):
            client.get(url)
    assert canary.requests == []


def test_dns_rebinding_cannot_reach_what_was_checked_away(
    guarded: None, canary: CanaryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that answers a public address first and loopback after: Kipu resolves once per connection and
    connects to the address it checked, so the second answer is never used."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    monkeypatch.setattr(egress, "_getaddrinfo", rebinding)
    port = int(canary.url.rsplit(":", 1)[1])
    with egress.client(timeout=2) as client, pytest.raises((httpx.ConnectError, httpx.ConnectTimeout)):
        client.get(f"http://rebind.example:{port}/")
    assert calls == ["rebind.example"] and canary.requests == []
    # A name with a public and a private answer is refused outright.
    monkeypatch.setattr(egress, "_getaddrinfo", lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with egress.client() as client, pytest.raises(EgressRefused, match="loopback"):
        client.get(f"http://mixed.example:{port}/")
    assert canary.requests == []


def test_every_redirect_is_checked_again(guarded: None, canary: CanaryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed host (127.0.0.2, allowed by KIPU_EGRESS_ALLOW_CIDRS) redirects to loopback: refused."""
    monkeypatch.setenv(egress.ALLOW_CIDRS_ENV, "127.0.0.2/32")
    bouncer = CanaryServer(host="127.0.0.2", redirect_to=canary.url + "/secret")
    try:
        with egress.client() as client, pytest.raises(EgressRefused, match="loopback"):
            client.get(bouncer.url + "/start")

        async def poll() -> None:
            async with LimitedClient() as http:
                await http.request("GET", bouncer.url + "/start", platform="feed", token_key="x")

        with pytest.raises(EgressRefused, match="loopback"):
            asyncio.run(poll())
        assert len(bouncer.requests) == 2 and canary.requests == []
    finally:
        bouncer.stop()


def test_the_poll_engines_client_is_guarded_too(guarded: None, canary: CanaryServer) -> None:
    port = canary.url.rsplit(":", 1)[1]

    async def poll(url: str) -> None:
        async with LimitedClient() as http:
            await http.request("GET", url, platform="feed", token_key="x")

    for url in (canary.url + "/", f"http://localhost:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"):
        with pytest.raises(EgressRefused):
            asyncio.run(poll(url))
    assert canary.requests == []


def test_feeds_are_read_through_the_guard(guarded: None, canary: CanaryServer, tmp_path) -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        FeedHook(canary.url + "/feed.xml").fetch()
    local = tmp_path / "feed.xml"
    local.write_text("<rss/>")
    with pytest.raises(Rejected, match="local files only in the demo"):
        FeedHook(str(local)).fetch()
    with pytest.raises(Rejected, match="local files only in the demo"):
        FeedHook(local.as_uri()).fetch()

    async def poll() -> None:
        async with LimitedClient() as http:
            await FeedHook(canary.url + "/feed.xml").fetch_posts(http)

    with pytest.raises(EgressRefused):
        asyncio.run(poll())
    assert canary.requests == []


def test_bluesky_service_cannot_be_an_internal_address(api, roles: dict, guarded: None, canary: CanaryServer) -> None:
    password = "app-pass-SECRET-9911"
    for service, rule in (
        (canary.url, "loopback"),
        ("http://169.254.169.254", "link-local"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://[::ffff:127.0.0.1]:1", "loopback"),
    ):
        out = api.post(
            f"{API}/connections/bluesky",
            json={"team": "demo", "handle": "ana.test", "app_password": password, "service": service},
            headers=roles["owner"],
        )
        assert out.status_code == 422, out.text
        assert out.json()["detail"][0]["loc"] == ["body", "service"] and rule in out.text
        assert password not in out.text
    assert canary.requests == []


def test_a_remote_error_body_is_never_echoed(api, roles: dict, canary: CanaryServer) -> None:
    """With private networks allowed (as in the demo), a service that answers an error or nothing gets a 422 that
    names the service and repeats none of its words; a closed port is a 422, not a 500."""
    canary.status = 500
    closed = CanaryServer()
    closed.stop()
    for service in (canary.url, closed.url):
        out = api.post(
            f"{API}/connections/bluesky",
            json={"team": "demo", "handle": "ana.test", "app_password": "x", "service": service},
            headers=roles["owner"],
        )
        assert out.status_code == 422 and out.json()["detail"][0]["loc"] == ["body", "service"], out.text
        assert CANARY.decode() not in out.text and "InternalError" not in out.text


def test_item_media_is_never_read_from_the_server(
    guarded: None, canary: CanaryServer, tmp_path, pg_demo_team: dict
) -> None:
    secret = tmp_path / "canary.txt"
    secret.write_bytes(CANARY)
    outbox = OutboxHook(tmp_path / "outbox")
    for url in (str(secret), secret.as_uri(), "s3://kipu-media/media/other-team/x.png", canary.url + "/x.png"):
        request = PublishRequest(idempotency_key=f"k{len(url)}", media=[MediaRef(url=url, mime_type="image/png")])
        with pytest.raises(Rejected):
            deliver(outbox, request)
    assert canary.requests == []
    assert not any(CANARY in p.read_bytes() for p in (tmp_path / "outbox").rglob("*") if p.is_file())


def test_library_media_is_the_teams_own(pg_demo_team: dict, tmp_path, guarded: None) -> None:
    import uuid

    from kipu.hooks.media import library_ref
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope
    from kipu.store.models import Media

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    with session_scope() as s:
        ours, theirs = find_team(s, "demo"), find_team(s, "other")
        media_id = uuid.uuid4()
        s.add(Media(id=media_id, team_id=theirs.id, filename="p.png", storage_path=str(photo), mime_type="image/png"))
        ours_id, theirs_id = ours.id, theirs.id
    request = PublishRequest(idempotency_key="lib", media=[MediaRef(url=library_ref(media_id))])
    with pytest.raises(Rejected, match="not in this team's media library"):
        deliver(OutboxHook(tmp_path / "a"), request, ours_id)
    result = deliver(OutboxHook(tmp_path / "b"), request, theirs_id)
    copied = [p.read_bytes() for p in (tmp_path / "b" / "lib").iterdir()]
    assert result.platform_post_id == "lib" and copied == [photo.read_bytes()]


def test_manual_run_refuses_media_on_the_server(api, roles: dict, guarded: None) -> None:
    from tests.helpers import demo_doc

    wf = api.post(f"{API}/workflows", json=demo_doc(), headers=roles["member"]).json()
    for url in ("/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:8080/kipu/openapi.json", "s3://b/k"):
        item = {"platform": "feed", "platform_post_id": "m1", "media": [{"url": url}]}
        out = api.post(f"{API}/workflows/{wf['id']}/run", json={"item": item}, headers=roles["member"])
        assert out.status_code == 422 and "media[0].url" in out.text, out.text


def test_a_manual_run_names_a_library_item_it_cannot_use_at_once(api, roles: dict, tmp_path) -> None:
    """Another team's media, a missing one and a malformed reference are the same 422 naming the field, before the
    item is recorded (they used to fail only at the publish step); the team's own is accepted."""
    import uuid

    from kipu.hooks.media import library_ref
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope
    from kipu.store.models import Media, WorkflowRun

    from tests.helpers import demo_doc

    with session_scope() as s:
        ours, theirs = find_team(s, "demo").id, find_team(s, "other").id
        mine, foreign = uuid.uuid4(), uuid.uuid4()
        for media_id, team in ((mine, ours), (foreign, theirs)):
            s.add(Media(id=media_id, team_id=team, filename="p.png", storage_path=str(tmp_path / "p.png")))
    wf = api.post(f"{API}/workflows", json=demo_doc(status="active"), headers=roles["member"]).json()
    answers = []
    for ref in (library_ref(foreign), library_ref(uuid.uuid4()), "kipu-media:not-a-uuid"):
        item = {"caption": "x", "media": [{"url": library_ref(mine)}, {"url": ref}]}
        out = api.post(f"{API}/workflows/{wf['id']}/run", json={"item": item}, headers=roles["member"])
        assert out.status_code == 422, out.text
        assert out.json()["detail"][0]["loc"] == ["body", "item", "media", 1, "url"]
        answers.append(out.json()["detail"][0]["msg"].replace(ref, "REF"))
    assert len(set(answers)) == 1  # another team's media answers exactly like a missing one
    with session_scope() as s:
        assert s.query(WorkflowRun).filter(WorkflowRun.workflow_id == uuid.UUID(wf["id"])).count() == 0
    ok = api.post(
        f"{API}/workflows/{wf['id']}/run",
        json={"item": {"caption": "x", "media": [{"url": library_ref(mine)}]}},
        headers=roles["member"],
    )
    assert ok.status_code == 202, ok.text


def test_a_media_server_that_dribbles_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read has its own timeout; a server sending a byte at a time passed every one and held the publish task
    (a worker slot every team shares) for as long as it liked. Now the whole download has a wall clock."""
    import time

    from kipu.hooks.base import Transient
    from kipu.hooks.media import open_media

    from tests.fakes.dribbler import Dribbler

    monkeypatch.setenv("KIPU_MEDIA_FETCH_SECONDS", "2")
    started = time.monotonic()
    with Dribbler("body") as slow:
        with pytest.raises(Transient, match="not fetched within 2 s"), open_media(slow.url, 10**6, "x"):
            pass
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_guarded_request_with_a_deadline_ends_on_time_whatever_the_server_does(where: str) -> None:
    """Logins, tokens and registrations at servers a user names (a Bluesky PDS, a Mastodon instance) run in the
    API's request threads, which every team shares: a server that answers a byte at a time no longer holds one."""
    import time

    from tests.fakes.canary_server import CanaryServer
    from tests.fakes.dribbler import Dribbler

    started = time.monotonic()
    with Dribbler(where) as slow:  # type: ignore[arg-type]
        with pytest.raises(httpx.TimeoutException), egress.client(timeout=5, deadline=2) as http:
            http.get(slow.url).read()
        assert time.monotonic() - started < 4
    prompt = CanaryServer()
    try:
        with egress.client(timeout=5, deadline=2) as http:  # a prompt answer is untouched
            assert http.get(prompt.url + "/x").status_code == 200
    finally:
        prompt.stop()


def test_a_bluesky_app_password_is_sent_over_https_only(
    api, roles: dict, guarded: None, canary: CanaryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API documents the service as a public https URL: a plain http one is refused, naming the field, before
    the app password is sent anywhere."""
    monkeypatch.setenv(egress.ALLOW_CIDRS_ENV, "127.0.0.1/32")  # the canary stands in for a public host
    password = "app-pass-SECRET-7733"
    out = api.post(
        f"{API}/connections/bluesky",
        json={"team": "demo", "handle": "ana.test", "app_password": password, "service": canary.url},
        headers=roles["owner"],
    )
    assert out.status_code == 422, out.text
    assert out.json()["detail"][0]["loc"] == ["body", "service"] and "https" in out.text
    assert password not in out.text and canary.requests == []
