"""A hostile server that answers a byte at a time (its headers, or its body), so no single read ever waits long
enough for a read timeout: what a wall-clock deadline must cut off."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


class Dribbler:
    """``where="body"``: 200 with a chunked body of one byte every ``every`` seconds; ``where="headers"``: the status
    line, then one header byte at a time. It hangs up after ``seconds``, so code without a deadline fails, not
    hangs."""

    def __init__(self, where: Literal["headers", "body"] = "body", seconds: float = 8, every: float = 0.2) -> None:
        self.stop_event = stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _dribble(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if where == "headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                ends = time.monotonic() + seconds
                try:
                    while not stop.is_set() and time.monotonic() < ends:
                        self.wfile.write(b"x" if where == "headers" else b"1\r\nx\r\n")
                        self.wfile.flush()
                        stop.wait(every)
                except OSError:
                    pass

            do_GET = do_POST = _dribble

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Dribbler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
