"""An internal service an attacker would like Kipu to reach: it records every request it gets and answers with a
canary body (or a redirect), so a test can prove that nothing reached it and nothing of it came back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANARY = b"CANARY-INTERNAL-SECRET-7f3a"


@dataclass
class CanaryServer:
    host: str = "127.0.0.1"
    redirect_to: str | None = None  # answer every request with a 302 here instead
    status: int = 200
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append((self.command, self.path, self.rfile.read(length) if length else b""))
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b'{"error": "InternalError", "message": "' + CANARY + b'"}'
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
