"""Audit: a hostile feed must cost the poll engine (the triggerer, shared by every team) bounded memory and
must not block its event loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kipu.hooks.http import LimitedClient
from kipu.platforms.feed.hook import MAX_FEED_BYTES, FeedHook


class _Server:
    """Serves one body; counts the bytes the client actually took."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None, chunk: int = 1 << 20) -> None:
        self.sent = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                for k, v in (headers or {"Content-Type": "application/feed+json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(0, len(body), chunk):
                        self.wfile.write(body[i : i + chunk])
                        outer.sent += len(body[i : i + chunk])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def _fetch(url: str) -> object:
    async with LimitedClient(request_timeout=60) as http:
        try:
            return await FeedHook(url).fetch_posts(http, None, 200)
        except Exception as exc:
            return exc


def test_a_feed_over_the_limit_is_not_read_past_the_limit() -> None:
    """MAX_FEED_BYTES was checked in map_error, after the whole body was buffered (160 MiB here)."""
    srv = _Server(b"x" * (8 * MAX_FEED_BYTES))  # 160 MiB
    try:
        result = asyncio.run(_fetch(srv.url))
    finally:
        srv.close()
    assert isinstance(result, Exception)
    assert srv.sent <= 2 * MAX_FEED_BYTES, f"the engine read {srv.sent >> 20} MiB of a feed limited to 20 MiB"


def test_a_gzip_bomb_feed_costs_bounded_memory() -> None:
    """200 KiB on the wire that httpx inflated to 200 MiB inside the triggerer: now decoded in bounded steps."""
    bomb = gzip.compress(b" " * (200 << 20), 9)
    srv = _Server(bomb, {"Content-Type": "application/feed+json", "Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        result = asyncio.run(_fetch(srv.url))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        srv.close()
    assert isinstance(result, Exception)
    assert peak < 4 * MAX_FEED_BYTES, f"peak {peak >> 20} MiB for a {len(bomb) >> 10} KiB feed"


def test_parsing_a_large_feed_does_not_block_the_triggerer_event_loop() -> None:
    """A feed under the limit with tens of thousands of entries was parsed on the event loop; now in a thread."""
    items = [
        {"id": str(i), "content_text": f"post {i} #tag", "date_published": "2026-11-20T09:00:00Z"}
        for i in range(60_000)
    ]
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": items}).encode()
    assert len(body) < MAX_FEED_BYTES
    srv = _Server(body)

    async def main() -> tuple[float, object]:
        gaps: list[float] = []
        stop = False

        async def heartbeat() -> None:
            last = time.monotonic()
            while not stop:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        result = await _fetch(srv.url)
        stop = True
        await beat
        return max(gaps), result

    try:
        worst, result = asyncio.run(main())
    finally:
        srv.close()
    assert isinstance(result, list) and len(result) == 200
    assert worst < 0.5, f"the event loop (every trigger of every team) was blocked for {worst:.1f}s by one feed"
