"""An upload is checked before its body is read: the role, the team and the folder first, then one file part and
nothing else (each part is held in memory up to 1 MiB); the page's upload never falls back to another team."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from kipu.store.accounts import add_member, find_team, get_or_create_profile
from kipu.store.engine import session_scope
from kipu.store.models import Media
from sqlalchemy import func, select

from tests.api_helpers import session_cookie
from tests.conftest import REPO

API = "/kipu/api"
PNG = (REPO / "include/demo/media/sunrise.png").read_bytes()


def _raw_upload(headers: dict[str, str], parts: int, part_bytes: int, team: str = "demo") -> tuple[int, int]:
    """POST /api/media/upload to the /kipu app as raw ASGI: ``parts`` file parts of ``part_bytes`` each (the first
    a real PNG), fed in 64 KiB messages. Returns (status, bytes of the body the app consumed)."""
    from kipu.api.app import create_app

    app = create_app()
    boundary = "kipuupload"

    def pieces() -> Iterator[bytes]:  # made as they are sent: the test itself holds 64 KiB at most
        for i in range(parts):
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f{i}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode() + PNG[:part_bytes]
            left = part_bytes - min(len(PNG), part_bytes)
            while left > 0:
                yield b"\0" * min(65536, left)
                left -= 65536
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    length = sum(len(p) for p in pieces())
    chunks = pieces()
    consumed = 0
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        chunk = next(chunks, None)
        if chunk is not None:
            consumed += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": consumed < length}
        await anyio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/media/upload",
        "raw_path": b"/api/media/upload",
        "root_path": "",
        "query_string": f"team={team}".encode(),
        "headers": [
            (b"host", b"kipu.test"),
            (b"authorization", headers["Authorization"].encode()),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", str(length).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("kipu.test", 80),
    }

    async def main() -> None:
        with anyio.fail_after(60):
            await app(scope, receive, send)

    anyio.run(main)
    return status[0], consumed


@pytest.mark.parametrize("who", ["viewer", "outsider"])
def test_an_upload_the_caller_may_not_make_is_refused_before_its_body_is_read(api: Any, roles: dict, who: str) -> None:
    """A viewer of demo (403) and a member of another team (404) are refused before the upload is read (it was
    parsed and spooled whole first: up to KIPU_MEDIA_MAX_BYTES, 512 MiB by default)."""
    size = 8 << 20
    code, consumed = _raw_upload(roles[who], parts=1, part_bytes=size)
    assert code == {"viewer": 403, "outsider": 404}[who]
    assert consumed < 1 << 20, f"{consumed} bytes of a refused upload were read and spooled before the role check"


def test_a_multipart_body_of_many_file_parts_is_not_held_in_memory(api: Any, roles: dict) -> None:
    """Every file part is a SpooledTemporaryFile kept in RAM up to 1 MiB (Starlette allows 1,000): a body of many
    parts just under 1 MiB sat in memory whole (48 parts x 1000 KiB here)."""
    tracemalloc.start()
    try:
        code, _ = _raw_upload(roles["outsider"], parts=48, part_bytes=1000 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 404
    assert peak < 16 << 20, f"peak traced memory {peak >> 20} MiB for a refused upload"


def test_the_pages_upload_never_falls_back_to_another_team(api: Any) -> None:
    """docs/ui.md: "An action names its team and never falls back to another one (404 when you are not in it)"."""
    from kipu.ui.session import csrf_token

    with session_scope() as s:
        get_or_create_profile(s, "boss@other.test").airflow_username = "boss"
        add_member(s, find_team(s, "demo"), get_or_create_profile(s, "boss@other.test"), "member")
        demo_id = find_team(s, "demo").id
    cookie = session_cookie("boss")
    api.cookies.clear()
    api.cookies.set("_token", cookie)
    # boss meant team "zeta" (say: he was just removed from it); "demo" sorts first among his teams
    out = api.post(
        "/kipu/ui/media/upload?team=zeta",
        files={"file": ("secret-plan.png", PNG, "image/png")},
        headers={"X-Kipu-CSRF": csrf_token(cookie)},
    )
    with session_scope() as s:
        landed = s.scalar(select(func.count()).select_from(Media).where(Media.team_id == demo_id))
    assert out.status_code == 404, out.text
    assert landed == 0


def test_one_file_and_nothing_else_is_a_clear_422(api: Any, roles: dict) -> None:
    two = api.post(
        f"{API}/media/upload",
        params={"team": "demo"},
        files=[("file", ("a.png", PNG, "image/png")), ("file", ("b.png", PNG, "image/png"))],
        headers=roles["member"],
    )
    assert two.status_code == 422 and two.json()["detail"][0]["loc"] == ["body", "file"], two.text
    none = api.post(f"{API}/media/upload", params={"team": "demo"}, data={"x": "1"}, headers=roles["member"])
    assert none.status_code == 422 and none.json()["detail"][0]["loc"] == ["body", "file"], none.text
    one = api.post(
        f"{API}/media/upload",
        params={"team": "demo"},
        files={"file": ("a.png", PNG, "image/png")},
        headers=roles["member"],
    )
    assert one.status_code == 201 and one.json()["filename"] == "a.png", one.text


def test_the_library_lists_a_page_at_a_time(api: Any, roles: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library grows without bound; a list answers at most ``limit`` (≤ 500) and names the next page."""
    import uuid as _uuid

    from kipu.store.models import Media as MediaRow

    with session_scope() as s:
        team_id = find_team(s, "demo").id
        for n in range(7):
            s.add(
                MediaRow(
                    id=_uuid.uuid4(),
                    team_id=team_id,
                    filename=f"f{n}.png",
                    mime_type="image/png",
                    size_bytes=1,
                    storage_path=f"/nowhere/f{n}.png",
                )
            )
    first = api.get(f"{API}/media", params={"team": "demo", "limit": 5}, headers=roles["viewer"])
    assert first.status_code == 200 and len(first.json()) == 5
    assert first.headers["X-Kipu-Next-Offset"] == "5"
    rest = api.get(f"{API}/media", params={"team": "demo", "limit": 5, "offset": 5}, headers=roles["viewer"])
    assert len(rest.json()) == 2 and "X-Kipu-Next-Offset" not in rest.headers
    assert {m["id"] for m in first.json()}.isdisjoint(m["id"] for m in rest.json())
    too_many = api.get(f"{API}/media", params={"team": "demo", "limit": 501}, headers=roles["viewer"])
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["query", "limit"]
