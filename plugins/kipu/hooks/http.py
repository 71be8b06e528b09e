"""The poll engine's shared async client: concurrency bounds (global, per platform, per token) around the one client
layer (``hooks.client``), which owns rates, retries and refresh for sync and async calls alike."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from kipu.hooks.client import DEFAULT_TIMEOUT, Call, Caller, HttpHook, Pace, asend


@dataclass
class Limits:
    """Concurrency bounds (global, per platform, per token) and per-platform overrides of the hooks' token rates."""

    global_concurrency: int = 200
    per_platform: dict[str, int] = field(default_factory=dict)
    default_per_platform: int = 100
    per_token: int = 2
    # Requests per second per token, by platform; a hook's own ``token_rate`` applies where none is set here.
    token_rates: dict[str, float] = field(default_factory=dict)


class _AdHoc(HttpHook):
    """A caller for a bare URL (a feed, a test): no auth, the status mapping or the one given."""

    def __init__(self, platform: str, token_key: str, map_error: Callable[[httpx.Response], Any] | None) -> None:
        self.platform, self._key, self._map = platform, token_key, map_error

    @property
    def token_key(self) -> str:
        return self._key

    def map_error(self, response: httpx.Response) -> Any:
        return self._map(response) if self._map is not None else super().map_error(response)


class LimitedClient:
    """An ``httpx.AsyncClient`` behind Kipu's concurrency limits; one per poll cycle, shared by every source.

    Its transport is aiohttp's connection pool (httpx-aiohttp, by an httpx maintainer) behind the egress guard:
    httpcore's pool rescans every connection per request, which cost ~4x the CPU per request at poll-engine
    concurrency (bench/poll.py).
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

    async def send(self, caller: Caller, call: Call) -> httpx.Response:
        """``call`` for ``caller`` once it holds a slot of its token, its platform and the cycle."""
        assert self._client is not None, "use LimitedClient as an async context manager"
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._token[f"{caller.platform}:{caller.token_key}"])
            await stack.enter_async_context(self._platform_sem(caller.platform))
            await stack.enter_async_context(self._global)
            rate = self.limits.token_rates.get(caller.platform)
            pace = Pace(rate, rate) if rate else None  # the cycle's override of the platform's rate
            return await asend(caller, call, self._client, pace=pace, timeout=self.request_timeout)

    async def request(
        self,
        method: str,
        url: str,
        *,
        platform: str,
        token_key: str,
        retries: int = 1,
        map_error: Callable[[httpx.Response], Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """A bare URL through the same limits and policy (``send`` with an ad-hoc caller)."""
        caller = _AdHoc(platform, token_key, map_error)
        return await self.send(caller, Call(method, url, auth=False, retries=retries, kwargs=kwargs))
