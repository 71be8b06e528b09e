"""The one HTTP client base for every platform: bounded concurrency, per-token rate limits, retries, Retry-After.

Platform hooks build requests and parse bodies; how requests are sent, limited and retried lives only here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from kipu.hooks.base import AuthExpired, RateLimited, Rejected, Transient

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class TokenBucket:
    """``rate`` requests per second with bursts of ``burst``; ``acquire`` waits for a slot."""

    rate: float
    burst: float = 1.0
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class Limits:
    """Concurrency bounds (global, per platform, per token) and per-token request rates."""

    global_concurrency: int = 200
    per_platform: dict[str, int] = field(default_factory=dict)
    default_per_platform: int = 100
    per_token: int = 2
    # Requests per second per token, by platform (PLATFORMS.md); platforms not listed are not rate limited.
    token_rates: dict[str, float] = field(default_factory=dict)


class LimitedClient:
    """An ``httpx.AsyncClient`` behind Kipu's limits; one per poll cycle, shared by every source.

    Its transport is aiohttp's connection pool (httpx-aiohttp, by an httpx maintainer): httpcore's pool rescans
    every connection per request, which cost ~4x the CPU per request at poll-engine concurrency (bench/poll.py).
    """

    def __init__(
        self, limits: Limits | None = None, client: httpx.AsyncClient | None = None, request_timeout: float = 30.0
    ) -> None:
        self.limits = limits or Limits()
        # Counted from when the request holds its slots, so time spent queueing behind others is not its own.
        self.request_timeout = request_timeout
        self._client = client
        self._own_client = client is None
        self._global = asyncio.Semaphore(self.limits.global_concurrency)
        self._platform: dict[str, asyncio.Semaphore] = {}
        self._token: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self.limits.per_token))
        self._buckets: dict[str, TokenBucket] = {}

    async def __aenter__(self) -> LimitedClient:
        if self._client is None:
            size = self.limits.global_concurrency
            from kipu.egress import aiohttp_transport, async_client

            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            self._client = async_client(timeout=DEFAULT_TIMEOUT, transport=aiohttp_transport(limits))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def _platform_sem(self, platform: str) -> asyncio.Semaphore:
        if platform not in self._platform:
            n = self.limits.per_platform.get(platform, self.limits.default_per_platform)
            self._platform[platform] = asyncio.Semaphore(n)
        return self._platform[platform]

    async def request(
        self,
        method: str,
        url: str,
        *,
        platform: str,
        token_key: str,
        retries: int = 1,
        timeout: float | httpx.Timeout | None = None,
        map_error: Callable[[httpx.Response], Exception | None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with limits; map failures onto the error taxonomy (by status, or the platform's ``map_error`` for
        bodies that say more than the status). 5xx and timeouts are retried ``retries`` times."""
        client = self._client
        assert client is not None, "use LimitedClient as an async context manager"
        rate = self.limits.token_rates.get(platform)
        attempt = 0
        while True:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self._token[f"{platform}:{token_key}"])
                await stack.enter_async_context(self._platform_sem(platform))
                await stack.enter_async_context(self._global)
                if rate:
                    bucket = self._buckets.setdefault(f"{platform}:{token_key}", TokenBucket(rate, burst=rate))
                    await bucket.acquire()
                try:
                    async with asyncio.timeout(self.request_timeout):
                        response = await client.request(method, url, timeout=timeout or DEFAULT_TIMEOUT, **kwargs)
                        await response.aread()
                    error: Exception | None = (map_error or (lambda r: classify(r, platform)))(response)
                except (httpx.TimeoutException, TimeoutError):
                    error = Transient(f"{platform}: no answer within {self.request_timeout:g}s")
                except httpx.HTTPError as exc:
                    error = Transient(f"{platform}: {type(exc).__name__}")
            if error is None:
                return response
            if not isinstance(error, Transient) or attempt >= retries:
                raise error
            attempt += 1
            await asyncio.sleep(backoff(attempt))


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog), in seconds."""
    return random.uniform(0, min(cap, base * 2**attempt))


def classify(response: httpx.Response, platform: str) -> Exception | None:
    """None for a success; otherwise the taxonomy error for this status, keeping the platform's words short."""
    code = response.status_code
    if code < 400:
        return None
    detail = response.text[:200].strip() if response.content else ""
    where = f"{platform}: HTTP {code}" + (f": {detail}" if detail else "")
    if code == 429:
        return RateLimited(where, parse_retry_after(response.headers.get("Retry-After")))
    if code == 401:
        return AuthExpired(where)
    if code >= 500 or code == 408:
        return Transient(where)
    return Rejected(where)
