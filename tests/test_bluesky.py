"""The Bluesky hook against a real PDS (``../shared/peers/bluesky-pds``, or ``KIPU_BLUESKY_PDS_URL``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from kipu.hooks.base import PublishRequest, Rejected
from kipu.hooks.http import LimitedClient
from kipu.platforms import target_hook
from kipu.platforms.bluesky.hook import BlueskyHook, tid_for
from kipu.specs.items import MediaRef
from kipu.store.accounts import connection_tokens, find_team, upsert_connection
from kipu.store.crypto import get_cipher
from kipu.store.engine import session_scope
from kipu.store.models import Connection
from pydantic import SecretStr

from tests.conftest import REPO

# Where the shared peer lives next to this checkout (or where KIPU_SHARED_DIR says).
PEER = Path(os.environ.get("KIPU_SHARED_DIR", REPO.parent / "shared")) / "peers" / "bluesky-pds"
IMAGE = REPO / "include" / "demo" / "media" / "sunrise.png"
PASSWORD = "hunter2-hunter2"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/xrpc/_health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def pds() -> Iterator[str]:
    """A running PDS: the one at KIPU_BLUESKY_PDS_URL, one already on 2583, or one this session starts."""
    url = os.environ.get("KIPU_BLUESKY_PDS_URL", "http://127.0.0.1:2583").rstrip("/")
    if _healthy(url):
        yield url
        return
    run = PEER / "run.sh"
    assert run.exists(), f"no PDS at {url} and no {run} to start one"
    subprocess.run(["bash", str(run)], check=True, timeout=600)
    try:
        # run.sh can report ready from the previous run's log before the new server listens: wait for health.
        deadline = time.monotonic() + 90
        while not _healthy(url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _healthy(url), f"the PDS started by {run} never answered {url}/xrpc/_health"
        yield url
    finally:
        subprocess.run(["bash", str(run), "stop"], timeout=60)


@pytest.fixture
def account(pds: str, pg_demo_team: dict) -> dict:
    """A fresh PDS account, connected to the demo team with an app-password session."""
    handle = f"k{uuid.uuid4().hex[:10]}.test"
    created = httpx.post(
        f"{pds}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": f"{handle}@example.test", "password": PASSWORD},
        timeout=20,
    )
    assert created.status_code == 200, created.text
    tokens = BlueskyHook.login(pds, handle, SecretStr(PASSWORD))
    with session_scope() as s:
        conn = upsert_connection(
            s,
            find_team(s, "demo"),
            "bluesky",
            tokens.platform_user_id or "",
            username=tokens.username,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            metadata={"base_url": pds},
        )
        return {"id": conn.id, "did": tokens.platform_user_id, "handle": handle, "pds": pds}


def hook_for(account: dict) -> BlueskyHook:
    with session_scope() as s:
        hook = target_hook(s.get(Connection, account["id"]))
    assert isinstance(hook, BlueskyHook)
    return hook


def request(caption: str, **kw: object) -> PublishRequest:
    return PublishRequest(idempotency_key=str(uuid.uuid4()), caption=caption, created_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


def get_record(account: dict, uri: str) -> dict:
    rkey = uri.rsplit("/", 1)[-1]
    resp = httpx.get(
        f"{account['pds']}/xrpc/com.atproto.repo.getRecord",
        params={"repo": account["did"], "collection": "app.bsky.feed.post", "rkey": rkey},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["value"]


def test_post_with_image_and_facets_reads_back_with_exact_byte_ranges(account: dict) -> None:
    hook = hook_for(account)
    caption = f"Pain au chocolat 🥐 at the #Café, recipe https://example.com/r/1 with @{account['handle']}"
    req = request(caption, media=[MediaRef(url=str(IMAGE), mime_type="image/png", alt_text="A sunrise")])
    assert hook.check(req) == []
    result = hook.publish(req)
    assert result.platform_post_id.endswith(tid_for(req))
    value = get_record(account, result.platform_post_id)
    assert value["text"] == caption
    raw = caption.encode()
    spans = {f["features"][0]["$type"].rsplit("#", 1)[-1]: f for f in value["facets"]}
    tag = spans["tag"]
    assert raw[tag["index"]["byteStart"] : tag["index"]["byteEnd"]] == "#Café".encode()
    assert tag["features"][0]["tag"] == "Café"
    link = spans["link"]
    assert raw[link["index"]["byteStart"] : link["index"]["byteEnd"]] == b"https://example.com/r/1"
    mention = spans["mention"]
    assert raw[mention["index"]["byteStart"] : mention["index"]["byteEnd"]] == f"@{account['handle']}".encode()
    assert mention["features"][0]["did"] == account["did"]
    (image,) = value["embed"]["images"]
    assert image["alt"] == "A sunrise"
    blob = httpx.get(
        f"{account['pds']}/xrpc/com.atproto.sync.getBlob",
        params={"did": account["did"], "cid": image["image"]["ref"]["$link"]},
    )
    assert blob.content == IMAGE.read_bytes()


def test_a_retry_finds_the_post_instead_of_posting_twice(account: dict) -> None:
    hook = hook_for(account)
    req = request("Only once, please #once")
    assert hook.find_published(req) is None
    first = hook.publish(req)
    assert hook.find_published(req) == first
    again = hook.publish(req)  # as if the first answer had been lost: the PDS refuses the key, the hook finds it
    assert again == first
    posts = hook.list_posts()
    assert [p.platform_post_id for p in posts] == [first.platform_post_id]
    assert posts[0].hashtags == ["once"] and posts[0].caption == "Only once, please #once"


def test_links_without_images_get_a_card(account: dict) -> None:
    hook = hook_for(account)
    result = hook.publish(request("Read this https://example.com/story", title="The story"))
    embed = get_record(account, result.platform_post_id)["embed"]
    assert embed["$type"] == "app.bsky.embed.external"
    assert embed["external"]["uri"] == "https://example.com/story" and embed["external"]["title"] == "The story"


def test_limits_are_checked_before_any_call(account: dict, tmp_path: Path) -> None:
    hook = hook_for(account)
    problems = hook.check(request("é" * 301))
    assert problems == ["bluesky caption is 301 graphemes, over the limit of 300"]
    five = [MediaRef(url=str(IMAGE), mime_type="image/png")] * 5
    assert "bluesky takes at most 4 images, got 5" in hook.check(request("five", media=five))
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"0" * 1_000_001)
    with pytest.raises(Rejected, match="over the limit of 1000000 bytes"):
        hook.publish(request("too big", media=[MediaRef(url=str(big), mime_type="image/png")]))


def test_an_expired_access_token_is_refreshed_once_and_stored(account: dict) -> None:
    with session_scope() as s:  # the stored access token no longer works
        s.get(Connection, account["id"]).access_token = get_cipher().encrypt("not-a-valid-jwt")
        old_refresh = connection_tokens(s.get(Connection, account["id"]))[1]
    hook = hook_for(account)
    result = hook.publish(request("After a refresh"))
    assert result.platform_post_id.startswith(f"at://{account['did']}/")
    with session_scope() as s:
        access, refresh = connection_tokens(s.get(Connection, account["id"]))
    assert access.get_secret_value() != "not-a-valid-jwt"
    assert refresh is not None and refresh.get_secret_value() != old_refresh.get_secret_value()  # rotated, stored


def test_two_tasks_refreshing_at_once_make_one_refresh_call(account: dict) -> None:
    with session_scope() as s:
        s.get(Connection, account["id"]).access_token = get_cipher().encrypt("expired-for-both")
    hooks = [hook_for(account), hook_for(account)]
    calls: list[int] = []
    for h in hooks:
        real = h.refresh_tokens

        def counting(creds, real=real):  # type: ignore[no-untyped-def]
            calls.append(1)
            return real(creds)

        h.refresh_tokens = counting  # type: ignore[method-assign]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def refresh(h: BlueskyHook) -> None:
        barrier.wait()
        try:
            h.refresh()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(h,)) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(calls) == 1
    assert hooks[0].credentials.access_token == hooks[1].credentials.access_token


def test_polling_through_the_engine_client(account: dict) -> None:
    hook = hook_for(account)
    hook.publish(request("First #one"))
    hook.publish(request("Second #two"))

    async def fetch() -> list:
        async with LimitedClient() as http:
            return await hook.fetch_posts(http)

    items = asyncio.run(fetch())
    assert [i.caption for i in items] == ["First #one", "Second #two"]  # oldest first
    assert all(i.published_at is not None and i.platform == "bluesky" for i in items)


def test_kipu_connect_bluesky_stores_an_encrypted_session(pds: str, pg_demo_team: dict) -> None:
    import sys

    handle = f"c{uuid.uuid4().hex[:10]}.test"
    httpx.post(
        f"{pds}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": f"{handle}@example.test", "password": PASSWORD},
        timeout=20,
    ).raise_for_status()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kipu.cli",
            "connect",
            "bluesky",
            "--team",
            "demo",
            "--handle",
            handle,
            "--service",
            pds,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BLUESKY_APP_PASSWORD": PASSWORD},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    with session_scope() as s:
        conn = s.get(Connection, uuid.UUID(out.stdout.strip()))
        assert (
            conn.platform == "bluesky" and conn.platform_username == handle and conn.platform_user_id.startswith("did:")
        )
        assert conn.refresh_token and "eyJ" not in conn.access_token  # ciphertext, not a JWT
