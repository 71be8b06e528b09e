"""A fake content host for the poll engine: thousands of JSON Feed sources on one asyncio server (uvicorn).

Each source can gain posts, repeat them, edit them, answer slowly, 429 with ``Retry-After``, 500, or a malformed
body, as real hosts do. It runs in a background thread, so tests and ``bench/poll.py`` share it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tests.fakes.serve import ThreadedServer


@dataclass
class FakeSource:
    posts: list[dict] = field(default_factory=list)
    mode: str = "ok"  # ok | slow | 429 | 500 | malformed
    delay: float = 0.0
    retry_after: str = "120"
    hits: int = 0

    def add(self, post_id: str, text: str = "", *, minutes_ago: float = 0, **extra: object) -> dict:
        """A new post, published ``minutes_ago`` (0: now)."""
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        post = {"id": post_id, "content_text": text or f"post {post_id}", "date_published": when.isoformat(), **extra}
        self.posts.append(post)
        return post

    def body(self) -> bytes:
        items = sorted(self.posts, key=lambda p: p["date_published"], reverse=True)  # newest first, as feeds do
        return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "fake", "items": items}).encode()


class PlatformServer:
    """``GET /feeds/{name}`` serves source ``name``; unknown names answer 404."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sources: dict[str, FakeSource] = {}
        self.default_delay = delay
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._served = ThreadedServer(self.app, backlog=8192)
        self.port = self._served.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def source(self, name: str) -> FakeSource:
        return self.sources.setdefault(name, FakeSource(delay=self.default_delay))

    def feed_url(self, name: str) -> str:
        self.source(name)
        return f"{self.url}/feeds/{name}"

    async def app(self, scope: dict, receive: object, send: object) -> None:  # a bare ASGI app: fast and small
        path: str = scope["path"]
        if path == "/control/add-everywhere":  # one new post on every source (bench/poll.py)
            stamp = f"{time.time_ns()}"
            for name, source in self.sources.items():
                source.add(f"{name}-{stamp}")
            await self._send(send, 200, str(len(self.sources)).encode())
            return
        src = self.sources.get(path.removeprefix("/feeds/")) if path.startswith("/feeds/") else None
        self.requests += 1
        if src is None:
            await self._send(send, 404, b"no such feed")
            return
        src.hits += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if src.delay:
                await asyncio.sleep(src.delay)
            if src.mode == "slow":
                await asyncio.sleep(3600)
            elif src.mode == "429":
                await self._send(send, 429, b"slow down", [(b"retry-after", src.retry_after.encode())])
            elif src.mode == "500":
                await self._send(send, 500, b"upstream broke")
            elif src.mode == "malformed":
                await self._send(send, 200, b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id"')
            else:
                await self._send(send, 200, src.body(), [(b"content-type", b"application/feed+json")])
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _send(send: object, status: int, body: bytes, headers: list | None = None) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    def __enter__(self) -> PlatformServer:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()


def main() -> None:
    """Serve ``--sources`` feeds named s0..sN-1 until killed; prints the port."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    server = PlatformServer(delay=args.delay)
    for i in range(args.sources):
        server.source(f"s{i}")
    with server:
        print(server.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
