"""The base of every social platform hook: one sync HTTP path with rate limits, retries, and refresh-once on
``AuthExpired``; the async path for polling is ``hooks.http.LimitedClient``. Platforms add endpoints and parsing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from kipu import egress
from kipu.hooks.base import AuthExpired, NeedsReconnect, PlatformError, RateLimited, SourceHook, TargetHook, Transient
from kipu.hooks.http import DEFAULT_TIMEOUT, backoff, classify

# A 429 asking to wait longer than this is raised (the task retries later) rather than slept through.
MAX_INLINE_WAIT = 60.0


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


class Bucket:
    """A thread-safe token bucket: ``rate`` requests per second per token, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


class PlatformHook(SourceHook, TargetHook):
    """A social platform: capabilities and limits (``TargetHook``), polling (``SourceHook``), and HTTP.

    Subclasses set ``base_url``, ``token_rate`` (requests per second per token, from PLATFORMS.md), implement the
    platform calls, ``map_error`` for platform-specific error bodies, and ``refresh_tokens``.
    """

    # Airflow's connection-type registry reads these; app credentials live in kipu_<platform>_app.
    conn_name_attr = "kipu_conn_id"
    default_conn_name = "kipu_platform"
    base_url: ClassVar[str] = ""
    token_rate: ClassVar[float | None] = None
    token_burst: ClassVar[float] = 5.0
    # Response headers with the requests left in the window and its reset (epoch seconds), where the platform
    # sends them: a token with none left waits for the reset instead of earning a 429.
    limit_headers: ClassVar[tuple[str, str] | None] = None
    _buckets: ClassVar[dict[str, Bucket]] = {}
    _windows: ClassVar[dict[str, tuple[int, float]]] = {}
    _buckets_lock: ClassVar[threading.Lock] = threading.Lock()

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
        # Every platform call goes through the egress guard: a connection's base URL (a Bluesky PDS) is the user's.
        self.client = client or egress.client(timeout=DEFAULT_TIMEOUT)
        # How a refresh is made single-flight and stored (kipu.auth.tokens.refresh_connection by default).
        self._on_refresh = on_refresh

    # -- what each platform provides -----------------------------------------------------------------------------
    def refresh_tokens(self, credentials: Credentials) -> TokenSet:
        """New tokens from the refresh token; raise ``NeedsReconnect`` if the platform cannot refresh."""
        raise NeedsReconnect(f"{self.platform} tokens cannot be refreshed; reconnect the account")

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        """Platform-specific error mapping; the default reads the HTTP status."""
        return classify(response, self.platform)

    def auth_headers(self) -> dict[str, str]:
        return self.credentials.bearer()

    # -- the one HTTP path -------------------------------------------------------------------------------------
    @property
    def _token_key(self) -> str:
        return f"{self.platform}:{self.credentials.connection_id or self.credentials.platform_user_id}"

    def _wait_for_window(self) -> None:
        window = self._windows.get(self._token_key)
        if window is None or window[0] > 0:
            return
        wait = window[1] - time.time()
        if wait > MAX_INLINE_WAIT:
            raise RateLimited(f"{self.platform}: no requests left for this account until the window resets", wait)
        if wait > 0:
            time.sleep(wait)

    def _note_window(self, response: httpx.Response) -> None:
        if self.limit_headers is None:
            return
        left, reset = (response.headers.get(h) for h in self.limit_headers)
        if left is not None and reset is not None and left.isdigit() and reset.isdigit():
            self._windows[self._token_key] = (int(left), float(reset))

    def _bucket(self) -> Bucket | None:
        if not self.token_rate:
            return None
        key = self._token_key
        with self._buckets_lock:
            if key not in self._buckets:
                self._buckets[key] = Bucket(self.token_rate, self.token_burst)
            return self._buckets[key]

    def call(self, method: str, path: str, *, auth: bool = True, retries: int = 2, **kwargs: Any) -> httpx.Response:
        """Send a request: per-token rate limit, retries with jittered backoff for ``Transient``, short
        ``Retry-After`` waits for 429, and one refresh-then-retry for ``AuthExpired``."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        refreshed = False
        attempt = 0
        base_headers = kwargs.pop("headers", {})
        while True:
            # Pre-signed upload URLs (auth=False) are not the API and do not spend its rate.
            bucket = self._bucket() if auth else None
            if bucket:
                bucket.take()
            self._wait_for_window()
            headers = {**base_headers, **(self.auth_headers() if auth else {})}
            try:
                response = self.client.request(method, url, headers=headers, **kwargs)
                self._note_window(response)
                error = self.map_error(response)
            except httpx.TimeoutException:
                error = Transient(f"{self.platform}: request timed out")
            except httpx.HTTPError as exc:
                error = Transient(f"{self.platform}: {type(exc).__name__}")
            if error is None:
                return response
            if isinstance(error, AuthExpired) and auth and not refreshed:
                self.refresh()
                refreshed = True
                continue
            if isinstance(error, AuthExpired):
                raise NeedsReconnect(f"{error}; the refreshed token was refused too: reconnect the account")
            if attempt >= retries or not isinstance(error, (Transient, RateLimited)):
                raise error
            wait = error.retry_after if isinstance(error, RateLimited) and error.retry_after is not None else None
            if wait is not None and wait > MAX_INLINE_WAIT:
                raise error
            attempt += 1
            time.sleep(wait if wait is not None else backoff(attempt))

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
