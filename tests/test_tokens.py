"""Stored tokens: an empty refresh token never replaces a good one, and a refused refresh flags the connection."""

from __future__ import annotations

import pytest
from kipu.auth.tokens import credentials_of, refresh_connection, store_tokens
from kipu.hooks.base import NeedsReconnect
from kipu.hooks.platform import TokenSet
from kipu.store.accounts import connection_tokens, find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection
from pydantic import SecretStr


def _connection() -> Connection:
    with session_scope() as s:
        return upsert_connection(
            s, find_team(s, "demo"), "x", "42", access_token="old-access", refresh_token="good-refresh"
        )


def test_an_empty_refresh_token_never_overwrites_a_good_one(demo_team: dict) -> None:
    conn_id = _connection().id
    with session_scope() as s:
        conn = s.get(Connection, conn_id)
        store_tokens(conn, TokenSet(access_token=SecretStr("new-access"), refresh_token=SecretStr("")))
    with session_scope() as s:
        access, refresh = connection_tokens(s.get(Connection, conn_id))
    assert access.get_secret_value() == "new-access" and refresh.get_secret_value() == "good-refresh"
    with session_scope() as s:  # a reconnect without a refresh token keeps it too
        upsert_connection(s, find_team(s, "demo"), "x", "42", access_token="reconnected", refresh_token=None)
    with session_scope() as s:
        assert connection_tokens(s.get(Connection, conn_id))[1].get_secret_value() == "good-refresh"


def test_a_refused_refresh_flags_the_connection(demo_team: dict) -> None:
    conn_id = _connection().id
    with session_scope() as s:
        creds = credentials_of(s.get(Connection, conn_id))

    def refused(_: object) -> TokenSet:
        raise NeedsReconnect("x: the refresh token was refused; reconnect the account")

    with pytest.raises(NeedsReconnect):
        refresh_connection(creds, refused)
    with session_scope() as s:
        conn = s.get(Connection, conn_id)
        assert conn.status == "needs_reconnect" and "refused" in conn.last_error
    assert "good-refresh" not in repr(creds) and "old-access" not in repr(creds)


def test_a_token_endpoint_echoing_the_refresh_token_never_leaks_part_of_it() -> None:
    """The platform's refusal is cut short for messages; the refresh token it echoes across the cut must be masked
    whole, not left half in clear (the message reaches ``last_error``, XCom and logs)."""
    import httpx
    from kipu.auth import oauth
    from kipu.auth.apps import OAuthApp
    from kipu.hooks.base import PlatformError

    secret = "rt_" + "Q" * 60

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "temporarily_unavailable", "error_description": "y" * 180 + secret})

    app = OAuthApp(
        platform="x",
        authorize_url="https://x.example/auth",
        token_url="https://x.example/token",
        scopes=("a",),
        client_id="cid",
        client_secret=SecretStr("csecret"),
        redirect_uri="https://kipu.example/cb",
    )
    with pytest.raises(PlatformError) as info:
        oauth.refresh(app, SecretStr(secret), httpx.Client(transport=httpx.MockTransport(answer)))
    assert "rt_QQ" not in str(info.value) and "***" in str(info.value), str(info.value)
