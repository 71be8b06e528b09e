"""Run an ASGI app under uvicorn on a free loopback port in a background thread (every fake uses this)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class ThreadedServer:
    def __init__(self, app: Any, *, backlog: int = 2048) -> None:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off", backlog=backlog, interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("a fake server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)


class FakeService:
    """A fake platform: ``state`` plus an app built for this server's own URL (for upload URLs it hands out)."""

    def __init__(self, state: Any, build: Any) -> None:
        self.state = state
        self._app: Any = None
        self._served = ThreadedServer(self._asgi)
        self._app = build(state, self._served.url)

    async def _asgi(self, scope: dict, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    @property
    def url(self) -> str:
        return self._served.url

    def __enter__(self) -> Any:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()
