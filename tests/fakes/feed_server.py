"""A fake feed host: serves RSS/Atom/JSON Feed bodies and can fail like real hosts do.

Modes per path: ``ok`` (serve the body), ``500``, ``429`` (with ``Retry-After``), ``slow`` (sleep, then serve),
``malformed`` (a body that is not a feed).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml"
    mode: str = "ok"
    delay: float = 0.0
    hits: int = 0


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route.hits += 1
                if route.mode == "500":
                    self.send_error(500, "upstream broke")
                    return
                if route.mode == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "7")
                    self.end_headers()
                    return
                if route.mode == "slow":
                    time.sleep(route.delay)
                body = b"<html><body>not a feed" if route.mode == "malformed" else route.body
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
