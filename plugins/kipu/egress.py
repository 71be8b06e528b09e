"""The one egress guard: every request Kipu sends to a URL a user could have chosen goes through these clients.

Only ``http`` and ``https``. The address actually connected to is checked, after DNS, at connect time (so DNS
rebinding fails) and again for every redirect hop: loopback, private, link-local (169.254.0.0/16 included), CGNAT,
multicast, reserved and unspecified addresses are refused, for IPv4, IPv6 and IPv4 embedded in IPv6. The demo and
the tests allow private networks with ``KIPU_EGRESS_ALLOW_PRIVATE=1``; ``KIPU_EGRESS_ALLOW_CIDRS`` allows chosen
networks only (docs/security.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import httpcore
import httpx

from kipu import tls
from kipu.hooks.errors import Rejected

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_PRIVATE_ENV = "KIPU_EGRESS_ALLOW_PRIVATE"
ALLOW_CIDRS_ENV = "KIPU_EGRESS_ALLOW_CIDRS"
SCHEMES = ("http", "https")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Python 3.11 calls both global: site-local (deprecated, still routed inside older networks), documentation (RFC 9637).
_IPV6_NOT_PUBLIC = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("3fff::/20"))
_TRUE = ("1", "true", "yes", "on")
SMALL_ANSWER_SECONDS = 30.0  # the whole of a request whose answer is small (a login, a token, a registration)


class EgressRefused(Rejected):
    """A URL or address the guard refuses; the message names the rule, never what the remote said."""

    def __init__(self, target: str, rule: str) -> None:
        super().__init__(f"{target} is refused: {rule}")
        self.rule = rule


def allow_private() -> bool:
    """Whether private networks and local files are allowed (the demo and the tests only; off by default)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in _TRUE


@lru_cache(maxsize=8)
def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{ALLOW_CIDRS_ENV}={raw!r} is not a list of networks: {exc}") from None


def blocked_rule(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached, or None when it may."""
    if allow_private() or any(ip in net for net in _networks(os.environ.get(ALLOW_CIDRS_ENV, ""))):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:  # the IPv4 address inside decides where the packets go
            inner = blocked_rule(embedded)
            return None if inner is None else f"{inner} (IPv4 {embedded} inside IPv6)"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "a carrier-grade NAT address"),
        (
            isinstance(ip, ipaddress.IPv6Address) and any(ip in n for n in _IPV6_NOT_PUBLIC),
            "a site-local or documentation address",
        ),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private network address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public internet address"),
    )
    return next((f"{ip} is {why}" for hit, why in checks if hit), None)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str | httpx.URL) -> httpx.URL:
    """The URL if its scheme and (literal) host may be reached; EgressRefused naming the rule otherwise.
    A hostname is checked again at connect time, on the address it resolves to."""
    shown = shown_url(str(url))
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise EgressRefused(shown, "it is not a valid URL") from None
    if parsed.scheme not in SCHEMES:
        raise EgressRefused(shown, f"the scheme '{parsed.scheme or 'none'}' is not allowed; use http or https")
    if not parsed.host:
        raise EgressRefused(shown, "it has no host")
    ip = _literal(parsed.host)
    rule = blocked_rule(ip) if ip is not None else None
    if rule:
        raise EgressRefused(shown, rule)
    return parsed


def shown_url(url: str) -> str:
    """A URL fit for messages: no query, fragment or credentials (a presigned signature never reaches a log)."""
    parsed = urlparse(url[:2048])
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()[:300]


def _getaddrinfo(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this to play a rebinding DNS server)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def pick_address(host: str, port: int, addresses: list[str] | None = None) -> str:
    """The address to connect to for ``host``: resolved once, every answer checked, so the address connected to is
    one that was checked. Any refused answer refuses the host."""
    literal = _literal(host)
    if literal is not None:
        answers = [str(literal)]
    else:
        try:
            answers = addresses if addresses is not None else _getaddrinfo(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} cannot be resolved ({type(exc).__name__})") from None
    if not answers:
        raise httpcore.ConnectError(f"{host} has no address")
    for answer in answers:
        ip = _literal(answer)
        rule = blocked_rule(ip) if ip is not None else f"{answer} is not an IP address"
        if rule:
            raise EgressRefused(host, rule)
    return answers[0]


# When the request being sent (or its body being read) must be over: each read and write of its connection waits at
# most until then. A per-read timeout alone lets a server that sends a byte at a time hold the caller for ever.
_DEADLINE: ContextVar[float | None] = ContextVar("kipu_egress_deadline", default=None)


def _left(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the exchange took longer than its deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write also waits no longer than the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBody(httpx.SyncByteStream):
    """A response body read under its request's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            token = _DEADLINE.set(self._deadline)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _DEADLINE.reset(token)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _SyncBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(pick_address(host, port), port, _left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise EgressRefused("a unix socket", "only TCP to public addresses is allowed")


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        answers = None if _literal(host) else await asyncio.to_thread(_resolve_or_none, host, port)
        address = pick_address(host, port, answers)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("a unix socket", "only TCP to public addresses is allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _resolve_or_none(host: str, port: int) -> list[str]:
    try:
        return _getaddrinfo(host, port)
    except OSError:
        return []


def _check_request(request: httpx.Request) -> None:
    check_url(request.url)


async def _acheck_request(request: httpx.Request) -> None:
    check_url(request.url)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with a connect step that resolves, checks and pins the address; with ``deadline``, each
    request (its body read included) is over within that many seconds, wall clock."""

    def __init__(self, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(trust_env=False, **kwargs)
        # httpcore takes a network backend per pool; httpx has no argument for it, so it is set on the pool.
        self._pool._network_backend = _SyncBackend()
        self.deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.deadline is None:
            return super().handle_request(request)
        deadline = time.monotonic() + self.deadline
        token = _DEADLINE.set(deadline)
        try:
            response = super().handle_request(request)
        finally:
            _DEADLINE.reset(token)
        response.stream = _DeadlineBody(response.stream, deadline)  # type: ignore[arg-type]
        return response


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("verify", tls.context())
        super().__init__(trust_env=False, **kwargs)
        self._pool._network_backend = _AsyncBackend()


def client(
    timeout: float | httpx.Timeout = 20.0, follow_redirects: bool = True, deadline: float | None = None, **kwargs: Any
) -> httpx.Client:
    """A guarded ``httpx.Client``: every request and every redirect hop is checked (scheme, literal host), and
    every connection's address is checked after DNS. No proxy from the environment (it would resolve for us).
    ``deadline`` bounds each request, its body included, wall clock: for a server the user chose, whose answer
    is small."""
    return httpx.Client(
        timeout=timeout,
        follow_redirects=follow_redirects,
        transport=GuardedTransport(deadline=deadline),
        trust_env=False,
        event_hooks={"request": [_check_request]},
        **kwargs,
    )


def async_client(
    timeout: float | httpx.Timeout = 20.0, follow_redirects: bool = True, **kwargs: Any
) -> httpx.AsyncClient:
    """The async twin of ``client``."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=follow_redirects,
        transport=kwargs.pop("transport", None) or AsyncGuardedTransport(),
        trust_env=False,
        event_hooks={"request": [_acheck_request]},
        **kwargs,
    )


class GuardedResolver:
    """An aiohttp resolver that refuses hosts resolving to a refused address (aiohttp connects only to what its
    resolver returns; literal IPs skip resolvers, and ``async_client``'s request hook checks those)."""

    def __init__(self) -> None:
        import aiohttp

        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        try:
            answers = await self._inner.resolve(host, port, family)
        except OSError:
            answers = []
        pick_address(host, port, [str(a["host"]) for a in answers])
        return answers

    async def close(self) -> None:
        await self._inner.close()


def aiohttp_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """aiohttp's connection pool (the poll engine's transport) behind the guarded resolver; pair it with
    ``async_client`` so literal addresses and redirect hops are checked too."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=tls.context(),
            resolver=GuardedResolver(),  # type: ignore[arg-type]
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    return AiohttpTransport(limits=limits, client=session)
