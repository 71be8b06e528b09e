"""How the CLI reaches Kipu: the /kipu API of a remote Kipu (--url or KIPU_URL, with KIPU_TOKEN), or the same API
in process on the store, acting as the local operator. Either way a command makes the same API calls."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx

ENV_URL, ENV_TOKEN = "KIPU_URL", "KIPU_TOKEN"


class ApiError(Exception):
    """The API refused the request (4xx): its detail, each error on its own line with where it applies."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status, self.detail = status, detail
        super().__init__(_describe(status, detail))


class Unavailable(Exception):
    """Kipu cannot be reached or refuses the token."""


def _describe(status: int, detail: Any) -> str:
    """``status`` 0: a problem found before any request (a file, an argument), said without "refused"."""
    prefix = f"refused ({status})" if status else "cannot continue"
    if isinstance(detail, list):
        lines = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p not in ("body",))
                msg = str(err.get("msg")).removeprefix("Value error, ")
                lines.append(f"{loc}: {msg}" if loc else msg)
            else:
                lines.append(str(err))
        return f"{prefix}:\n  " + "\n  ".join(lines)
    return f"{prefix}: {detail}" if status else str(detail)


class KipuClient:
    """``call`` returns the response's JSON (None for 204) or raises ``ApiError`` / ``Unavailable``."""

    def __init__(self, http: Any, where: str) -> None:
        import logging

        self.http = http
        self.where = where
        for name in ("httpx", "httpx2"):  # a line per request is noise on a terminal
            logging.getLogger(name).setLevel(logging.WARNING)

    @classmethod
    def connect(cls, url: str | None = None) -> KipuClient:
        url = url or os.environ.get(ENV_URL)
        if url:
            return cls.remote(url, os.environ.get(ENV_TOKEN))
        return cls.local()

    @classmethod
    def remote(cls, url: str, token: str | None) -> KipuClient:
        if not token:
            raise Unavailable(f"set {ENV_TOKEN} to a Kipu API token (kipu tokens create --user EMAIL) to use {url}")
        base = url.rstrip("/")
        if not base.endswith("/kipu"):
            base += "/kipu"
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        return cls(http, url)

    @classmethod
    def local(cls) -> KipuClient:
        from starlette.testclient import TestClient

        from kipu.api.app import create_app

        return cls(TestClient(_AsOperator(create_app()), base_url="http://kipu.local"), "the local store")

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, f"/api{path}", json=json, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach Kipu at {self.where}: {exc}") from None
        if response.status_code == 401:
            raise Unavailable(f"Kipu at {self.where} refused the token: {_detail(response)}")
        if response.status_code >= 500:
            raise Unavailable(f"Kipu at {self.where} failed ({response.status_code}): {response.text[:300]}")
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return None if response.status_code == 204 or not response.content else response.json()


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text[:300]


class _AsOperator:
    """The /kipu app with every request made as the local operator: whoever runs ``kipu`` on the store already
    holds its credentials, so they act as owner of every team."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["kipu_caller"] = _operator()
        await self.app(scope, receive, send)


def _operator() -> Any:
    from sqlalchemy import select

    from kipu.api.auth import Caller
    from kipu.store.engine import session_scope
    from kipu.store.models import Team

    with session_scope() as s:
        teams = list(s.scalars(select(Team.id)))
    return Caller(uuid.UUID(int=0), "local operator", dict.fromkeys(teams, "owner"))
