"""Stored credentials: decrypt for a hook, and refresh them single-flight under a row lock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kipu.hooks.base import NeedsReconnect, PlatformError
from kipu.hooks.platform import Credentials, TokenSet, with_tokens
from kipu.store.accounts import connection_tokens, flag_reconnect
from kipu.store.crypto import get_cipher
from kipu.store.engine import session_scope
from kipu.store.models import Connection

# SQLite has no row locks; one process-wide lock per connection keeps its refresh single-flight there.
_LOCAL: dict[uuid.UUID, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


def credentials_of(conn: Connection) -> Credentials:
    access, refresh = connection_tokens(conn)
    return Credentials(
        connection_id=conn.id,
        platform_user_id=conn.platform_user_id,
        access_token=access,
        refresh_token=refresh,
        expires_at=conn.token_expires_at,
        username=conn.platform_username,
        metadata=dict(conn.metadata_ or {}),
    )


def store_tokens(conn: Connection, tokens: TokenSet) -> None:
    """Write new tokens: an empty refresh token never overwrites a stored one (PLATFORMS.md, complaint 1)."""
    cipher = get_cipher()
    conn.access_token = cipher.encrypt(tokens.access_token)
    if tokens.refresh_token and tokens.refresh_token.get_secret_value():
        conn.refresh_token = cipher.encrypt(tokens.refresh_token)
    if tokens.expires_at:
        conn.token_expires_at = tokens.expires_at
    if tokens.scopes is not None:
        conn.scopes = tokens.scopes
    conn.status, conn.last_error = "healthy", None


def refresh_connection(stale: Credentials, do_refresh: Callable[[Credentials], TokenSet]) -> Credentials:
    """Refresh once for everyone: under a row lock, a task that finds the token already replaced (another task
    refreshed while it waited) uses the new one and makes no call. A refusal flags the connection."""
    if stale.connection_id is None:  # not stored (tests, one-off use): refresh in memory
        return with_tokens(stale, do_refresh(stale))
    with _LOCAL_GUARD:
        local = _LOCAL.setdefault(stale.connection_id, threading.Lock())
    with local, session_scope() as session:
        conn = session.get(Connection, stale.connection_id, with_for_update=True)
        if conn is None:
            raise NeedsReconnect("the connection was deleted")
        current = credentials_of(conn)
        used = stale.access_token.get_secret_value() if stale.access_token else None
        fresh = current.access_token.get_secret_value() if current.access_token else None
        if fresh and fresh != used:
            return current  # someone else refreshed while we waited for the lock
        try:
            tokens = do_refresh(current)
        except NeedsReconnect as exc:
            flag_reconnect(session, conn, str(exc))
            session.commit()
            raise
        except PlatformError:
            raise
        store_tokens(conn, tokens)
        conn.updated_at = datetime.now(UTC)
        session.flush()
        return credentials_of(conn)


def self_refreshing() -> tuple[str, ...]:
    """Platforms whose long-lived access token renews itself, with no refresh token (their packages say so)."""
    from kipu.platforms import names

    return names(self_refreshing=True)


def expiring(now: datetime, within: timedelta = timedelta(hours=48)) -> list[uuid.UUID]:
    """Connections whose access token expires within ``within`` and that hold a refresh token."""
    from sqlalchemy import or_, select

    with session_scope() as s:
        return list(
            s.scalars(
                select(Connection.id).where(
                    Connection.token_expires_at.is_not(None),
                    Connection.token_expires_at < now + within,
                    # Instagram and Threads refresh the long-lived access token itself; the others need one.
                    or_(Connection.refresh_token.is_not(None), Connection.platform.in_(self_refreshing())),
                    Connection.status != "needs_reconnect",
                )
            )
        )
