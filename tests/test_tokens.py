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
