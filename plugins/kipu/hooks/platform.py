"""The base of every social platform hook: credentials, tokens, and the one client layer (``hooks.client``) for its
calls, sync when publishing and async when polling. Platforms add endpoints and parsing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from kipu.hooks.base import NeedsReconnect, SourceHook, TargetHook
from kipu.hooks.client import HttpHook


@dataclass(frozen=True)
class TokenSet:
    """What a login, code exchange or refresh returns; empty fields mean "unchanged"."""

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    scopes: list[str] | None = None
    platform_user_id: str | None = None
    username: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TokenSet(user={self.platform_user_id!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class Credentials:
    """A connection's decrypted tokens and identity, as a hook needs them; never printed."""

    connection_id: uuid.UUID | None
    platform_user_id: str
    access_token: SecretStr | None
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    username: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Credentials(connection={self.connection_id}, user={self.platform_user_id!r})"

    def bearer(self) -> dict[str, str]:
        if self.access_token is None:
            raise NeedsReconnect("the connection has no access token; reconnect the account")
        return {"Authorization": f"Bearer {self.access_token.get_secret_value()}"}


class PlatformHook(HttpHook, SourceHook, TargetHook):
    """A social platform: capabilities and limits (``TargetHook``), polling (``SourceHook``), and HTTP through the one
    client layer (``HttpHook``: rates, retries, refresh-once).

    Subclasses set ``base_url``, ``token_rate`` (requests per second per token, from PLATFORMS.md) and
    ``limit_headers``, implement the platform calls, ``poll`` (one flow for sync and async polling), ``map_error`` for
    platform-specific error bodies, and ``refresh_tokens``.
    """

    base_url: ClassVar[str] = ""

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        client: httpx.Client | None = None,
        on_refresh: Callable[[Credentials, Callable[[Credentials], TokenSet]], Credentials] | None = None,
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.base = (base_url or credentials.metadata.get("base_url") or self.base_url).rstrip("/")
        if client is not None:
            self.client = client
        # How a refresh is made single-flight and stored (kipu.auth.tokens.refresh_connection by default).
        self._on_refresh = on_refresh

    @classmethod
    def from_connection(cls, conn: Any) -> PlatformHook:
        """The hook of a stored connection, its tokens decrypted in memory only."""
        from kipu.auth.tokens import credentials_of

        return cls(credentials_of(conn))

    # -- what each platform provides -----------------------------------------------------------------------------
    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        """New tokens from the refresh token; raise ``NeedsReconnect`` if the platform cannot refresh."""
        raise NeedsReconnect(f"{self.platform} tokens cannot be refreshed; reconnect the account")

    def auth_headers(self) -> dict[str, str]:
        return self.credentials.bearer()

    @property
    def token_key(self) -> str:
        return str(self.credentials.connection_id or self.credentials.platform_user_id)

    def refresh(self) -> Credentials:
        """Refresh the tokens once, single-flight across tasks when the connection is stored."""
        if self._on_refresh is None:
            from kipu.auth.tokens import refresh_connection

            self.credentials = refresh_connection(self.credentials, self.refresh_tokens)
        else:
            self.credentials = self._on_refresh(self.credentials, self.refresh_tokens)
        return self.credentials


def with_tokens(credentials: Credentials, tokens: TokenSet) -> Credentials:
    """Credentials after a refresh; an empty refresh token never replaces a good one."""
    return replace(
        credentials,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token or credentials.refresh_token,
        expires_at=tokens.expires_at or credentials.expires_at,
    )
