"""The one client layer for every platform call, sync (publishing) and async (polling in the triggerer).

One rate-limit policy: a bucket per token at the hook's ``token_rate``, the platform's window headers, and
``Retry-After``. One retry policy (tenacity): transient failures and short rate-limit waits are retried with
jittered backoff. One refresh: an expired token is refreshed once per call, then the call is sent again. Hooks
declare requests (``Call``) and parse answers; how calls are sent, limited and retried lives only here.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from kipu.hooks.errors import AuthExpired, NeedsReconnect, PlatformError, RateLimited, Rejected, Transient
from kipu.hooks.times import utc_time

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A rate-limit wait longer than this is raised (a task retries later, a poll source backs off), not slept through.
MAX_INLINE_WAIT = 60.0


@dataclass(frozen=True)
class Call:
    """One request as a hook declares it: a path on the hook's base URL (or an absolute URL) and httpx's arguments.
    ``auth=False`` for calls that are not the platform's API (pre-signed upload URLs): no token, no rate spent."""

    method: str
    url: str
    auth: bool = True
    retries: int = 2
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pace:
    """A bucket a call spends from: the token's own (``name`` ""), or one endpoint's where a platform limits each
    endpoint separately (TikTok)."""

    rate: float  # requests per second
    burst: float = 1.0
    name: str = ""


class Caller(Protocol):
    """What the layer needs from a hook (``HttpHook`` provides every default)."""

    platform: str
    token_rate: float | None
    token_burst: float
    limit_headers: tuple[str, str] | None

    @property
    def token_key(self) -> str: ...

    def url_of(self, call: Call) -> str: ...

    def pace(self, call: Call) -> Pace | None: ...

    def auth_headers(self) -> dict[str, str]: ...

    def map_error(self, response: httpx.Response) -> PlatformError | None: ...

    def refresh(self) -> Any: ...


# -- rate limits ---------------------------------------------------------------------------------------------------
class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, max(burst, 1.0), max(burst, 1.0), time.monotonic()

    def reserve(self) -> float:
        """Take a slot now and say how long to wait for it: reserving first keeps waiters in order."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Throttle:
    """Every token's bucket and rate-limit window, for threads and event loops alike (process-wide)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._windows: dict[str, tuple[int, float]] = {}

    def wait_before(self, caller: Caller, pace: Pace | None, max_wait: float) -> float:
        """Seconds to wait before the next call of ``caller``'s token (its bucket, its window); RateLimited when the
        platform's window stays spent for longer than ``max_wait``."""
        key = f"{caller.platform}:{caller.token_key}"
        with self._lock:
            window = self._windows.get(key)
            spent_for = window[1] - time.time() if window is not None and window[0] <= 0 else 0.0
            if spent_for > max_wait:
                raise RateLimited(
                    f"{caller.platform}: no requests left for this account until the window resets", spent_for
                )
            wait = max(spent_for, 0.0)
            if pace is not None:
                name = f"{key}:{pace.name}"
                bucket = self._buckets.get(name)
                if bucket is None or bucket.rate != pace.rate:
                    bucket = self._buckets[name] = _Bucket(pace.rate, pace.burst)
                wait = max(wait, bucket.reserve())
        return wait

    def note(self, caller: Caller, response: httpx.Response) -> None:
        if caller.limit_headers is None:
            return
        left, reset = (response.headers.get(h) for h in caller.limit_headers)
        when = reset_time(reset)
        if left is not None and left.strip().isdigit() and when is not None:
            with self._lock:
                self._windows[f"{caller.platform}:{caller.token_key}"] = (int(left), when)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._windows.clear()


THROTTLE = Throttle()


# -- errors and retries --------------------------------------------------------------------------------------------
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


def reset_time(value: str | None) -> float | None:
    """When a rate-limit window resets, as epoch seconds, from the forms platforms send: epoch seconds (X,
    Bluesky), seconds from now (small numbers), or an ISO 8601 or HTTP date (Mastodon)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        number = float(value)
        return number if number > 1e9 else time.time() + number
    when = utc_time(value)
    if when is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# Query parameters that carry a secret: Meta's long-lived token exchanges are GETs with the app secret and the token
# in the query string (as documented), and httpx logs every request's URL at INFO.
SECRET_PARAMS = frozenset({"client_secret", "access_token", "fb_exchange_token", "refresh_token", "code"})


def scrub(text: str, *secrets: SecretStr | str | None) -> str:
    """``text`` with every secret value in it masked: a platform echoing a parameter back must not leak it."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def sent_secrets(response: httpx.Response) -> list[str]:
    """The credentials the request carried: its ``Authorization`` value and its secret query parameters."""
    try:
        request = response.request
    except RuntimeError:  # a response built by hand has no request
        return []
    auth = request.headers.get("authorization", "").partition(" ")[2]
    params = [v for k, v in request.url.params.multi_items() if k in SECRET_PARAMS]
    return [v for v in (auth, *params) if v]


def classify(response: httpx.Response, platform: str) -> PlatformError | None:
    """None for a success; otherwise the taxonomy error for this status, keeping the platform's words short and
    without any credential the request carried (a platform may echo its token back)."""
    code = response.status_code
    if code < 400:
        return None
    secrets = sent_secrets(response)
    # Masked before it is cut: every secret that starts within the kept 200 characters is whole in the window.
    window = response.text[: 200 + max((len(v) for v in secrets), default=0)] if response.content else ""
    detail = scrub(window, *secrets)[:200].strip()
    where = f"{platform}: HTTP {code}" + (f": {detail}" if detail else "")
    if code == 429:
        return RateLimited(where, parse_retry_after(response.headers.get("Retry-After")))
    if code == 401:
        return AuthExpired(where)
    if code >= 500 or code == 408:
        return Transient(where)
    return Rejected(where)


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog), in seconds."""
    return random.uniform(0, min(cap, base * 2**attempt))


class _Refreshed(Exception):
    """The token was refreshed: send the call again at once (not counted as a retry)."""


@dataclass
class _State:
    refreshes: int = 0


def _retry_policy(call: Call, state: _State, max_wait: float) -> dict[str, Any]:
    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, _Refreshed | Transient):
            return True
        return isinstance(exc, RateLimited) and (exc.retry_after is None or exc.retry_after <= max_wait)

    def wait(rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if isinstance(exc, _Refreshed):
            return 0.0
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        return backoff(rs.attempt_number - state.refreshes)

    return {
        "retry": retry_if_exception(retryable),
        "stop": lambda rs: rs.attempt_number >= call.retries + 1 + state.refreshes,
        "wait": wait,
        "reraise": True,
    }


def _outcome(caller: Caller, call: Call, response: httpx.Response, state: _State) -> httpx.Response:
    THROTTLE.note(caller, response)
    error = caller.map_error(response)
    if error is None:
        return response
    raise _auth_outcome(caller, call, error, state)


def _auth_outcome(caller: Caller, call: Call, error: PlatformError, state: _State) -> Exception:
    if isinstance(error, AuthExpired) and call.auth:
        if state.refreshes == 0:
            return _Refreshed()
        return NeedsReconnect(f"{error}; the refreshed token was refused too: reconnect the account")
    return error


def _request_args(caller: Caller, call: Call) -> tuple[str, dict[str, Any]]:
    kwargs = dict(call.kwargs)
    headers = {**kwargs.pop("headers", {}), **(caller.auth_headers() if call.auth else {})}
    return caller.url_of(call), {**kwargs, "headers": headers}


def send(caller: Caller, call: Call, client: httpx.Client, max_wait: float = MAX_INLINE_WAIT) -> httpx.Response:
    """Send ``call`` now, from a worker thread (publishing): waits for its rate, retries, refreshes once."""
    state = _State()
    for attempt in Retrying(sleep=time.sleep, **_retry_policy(call, state, max_wait)):
        with attempt:
            wait = THROTTLE.wait_before(caller, caller.pace(call), MAX_INLINE_WAIT)
            if wait:
                time.sleep(wait)
            url, kwargs = _request_args(caller, call)
            try:
                response = client.request(call.method, url, **kwargs)
            except httpx.TimeoutException:
                raise Transient(f"{caller.platform}: request timed out") from None
            except httpx.HTTPError as exc:
                raise Transient(f"{caller.platform}: {type(exc).__name__}") from None
            try:
                return _outcome(caller, call, response, state)
            except _Refreshed:
                state.refreshes += 1
                caller.refresh()
                raise
    raise AssertionError("tenacity re-raises the last error")  # pragma: no cover


MAX_POLL_RESPONSE = 20 * 1024 * 1024  # bytes of a poll's answer, decoded: the triggerer is every team's
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def _bounded_body(response: httpx.Response, platform: str, limit: int = MAX_POLL_RESPONSE) -> bytes:
    """The answer's body, decoded, refused past ``limit`` bytes before they are held: a 200 KiB gzip of zeros is
    400 MiB once decoded. Only gzip and deflate are asked for (``Accept-Encoding``), so every answer is bounded."""
    too_big = Rejected(f"{platform}: the answer is over {limit} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_big
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *_DECODERS):
        raise Rejected(f"{platform}: the answer is encoded as {encoding[:40]!r}, which Kipu did not ask for")
    inflate = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None
    out = bytearray()
    try:
        async for raw in response.aiter_raw():
            data = raw
            while data:
                piece = inflate.decompress(data, limit + 1 - len(out)) if inflate else data
                data = inflate.unconsumed_tail if inflate else b""
                out += piece
                if len(out) > limit:
                    raise too_big
                if inflate and not piece and data:  # no room left though input remains
                    raise too_big
        if inflate:
            out += inflate.flush()  # what the decoder still holds (at most its window)
            if len(out) > limit:
                raise too_big
    except zlib.error:
        raise Transient(f"{platform}: the answer's {encoding} encoding is broken") from None
    return bytes(out)


async def asend(
    caller: Caller,
    call: Call,
    client: httpx.AsyncClient,
    *,
    pace: Pace | None = None,
    timeout: float | None = None,
    max_wait: float = 0.0,
) -> httpx.Response:
    """Send ``call`` on the event loop (polling), with the same policy. Its own rate is waited for; a 429 is not
    slept through here (``max_wait`` 0): the source backs off and frees its slot for the others."""
    state = _State()
    async for attempt in AsyncRetrying(sleep=asyncio.sleep, **_retry_policy(call, state, max_wait)):
        with attempt:
            wait = THROTTLE.wait_before(caller, pace or caller.pace(call), MAX_INLINE_WAIT)
            if wait:
                await asyncio.sleep(wait)
            url, kwargs = _request_args(caller, call)
            kwargs["headers"] = {"Accept-Encoding": "gzip, deflate", **kwargs["headers"]}
            try:
                async with asyncio.timeout(timeout):
                    request = client.build_request(call.method, url, **kwargs)
                    streamed = await client.send(request, stream=True)
                    try:
                        body = await _bounded_body(streamed, caller.platform)
                    finally:
                        await streamed.aclose()
                    dropped = ("content-encoding", "content-length")  # the body is decoded now
                    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in dropped]
                    response = httpx.Response(streamed.status_code, headers=headers, content=body, request=request)
            except (httpx.TimeoutException, TimeoutError):
                raise Transient(f"{caller.platform}: no answer within {timeout or DEFAULT_TIMEOUT.read:g}s") from None
            except httpx.HTTPError as exc:
                raise Transient(f"{caller.platform}: {type(exc).__name__}") from None
            try:
                return _outcome(caller, call, response, state)
            except _Refreshed:
                state.refreshes += 1
                await asyncio.to_thread(caller.refresh)
                raise
    raise AssertionError("tenacity re-raises the last error")  # pragma: no cover


# -- declaring a flow once -----------------------------------------------------------------------------------------
# A poll is written once as a generator: it yields each Call, receives the response, and returns the items. The sync
# driver (``list_posts``) and the async one (``fetch_posts``, the poll engine) both run it.
Flow = Generator[Call, httpx.Response, Any]


def run(flow: Flow, sender: Callable[[Call], httpx.Response]) -> Any:
    """Drive ``flow`` from a thread; a failed call is raised inside the flow, which may handle it (a fallback)."""
    try:
        call = next(flow)
        while True:
            try:
                response = sender(call)
            except PlatformError as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(response)
    except StopIteration as done:
        return done.value


OFFLOAD_BYTES = 256 * 1024  # an answer this large is parsed in a thread: the event loop is every team's triggers


@dataclass
class _Done:
    value: Any


def _advance(flow: Flow, response: httpx.Response) -> Call | _Done:
    try:
        return flow.send(response)
    except StopIteration as done:  # a Future cannot carry StopIteration
        return _Done(done.value)


async def arun(flow: Flow, sender: Callable[[Call], Awaitable[httpx.Response]]) -> Any:
    """Drive ``flow`` on the event loop, like ``run``; a large answer (a feed of thousands of entries) is parsed in a
    thread, so no other trigger waits for it."""
    try:
        call = next(flow)
        while True:
            try:
                response = await sender(call)
            except PlatformError as exc:
                call = flow.throw(exc)
                continue
            nxt = (
                await asyncio.to_thread(_advance, flow, response)
                if len(response.content) > OFFLOAD_BYTES
                else _advance(flow, response)
            )
            if isinstance(nxt, _Done):
                return nxt.value
            call = nxt
    except StopIteration as done:
        return done.value


class HttpHook:
    """What a hook gets from the client layer: ``call``/``send`` (sync), and ``list_posts``/``fetch_posts`` driven
    from one ``poll`` flow. A hook sets ``platform``, ``base``, its ``token_rate`` and ``limit_headers``, and may
    override ``auth_headers``, ``map_error`` and ``refresh``."""

    platform: str
    base: str = ""
    token_rate: float | None = None
    token_burst: float = 5.0
    limit_headers: tuple[str, str] | None = None
    # The longest rate-limit wait a sync call sleeps through before raising RateLimited.
    inline_wait: float = MAX_INLINE_WAIT
    _sync_client: httpx.Client | None = None

    @property
    def token_key(self) -> str:
        return self.base or self.platform

    @property
    def client(self) -> httpx.Client:
        """A guarded httpx client (``kipu.egress``): every platform call goes through the egress guard."""
        if self._sync_client is None:
            from kipu import egress

            self._sync_client = egress.client(timeout=DEFAULT_TIMEOUT)
        return self._sync_client

    @client.setter
    def client(self, value: httpx.Client) -> None:
        self._sync_client = value

    def url_of(self, call: Call) -> str:
        return call.url if call.url.startswith(("http://", "https://")) else f"{self.base}{call.url}"

    # Where the platform limits endpoints one by one: path -> requests per minute per token (TikTok's unit).
    endpoint_rates: Mapping[str, float] = {}

    def pace(self, call: Call) -> Pace | None:
        """The bucket a call spends from: its endpoint's, else the token's; none for calls that are not the API."""
        if not call.auth:
            return None
        per_minute = self.endpoint_rates.get(call.url)
        if per_minute:
            return Pace(per_minute / 60, 1.0, call.url)
        return Pace(self.token_rate, self.token_burst or self.token_rate) if self.token_rate else None

    def auth_headers(self) -> dict[str, str]:
        return {}

    def map_error(self, response: httpx.Response) -> PlatformError | None:
        return classify(response, self.platform)

    def refresh(self) -> Any:
        raise NeedsReconnect(f"{self.platform}: the token cannot be refreshed; reconnect the account")

    def send(self, call: Call) -> httpx.Response:
        return send(self, call, self.client, self.inline_wait)

    def call(self, method: str, path: str, *, auth: bool = True, retries: int = 2, **kwargs: Any) -> httpx.Response:
        """Send one request through the layer: its rate, retries with backoff, short Retry-After waits, one refresh."""
        return self.send(Call(method, path, auth=auth, retries=retries, kwargs=kwargs))

    # -- polling, declared once ----------------------------------------------------------------------------------
    def poll(self, since_id: str | None, limit: int, pages: int | None = None) -> Flow:
        """The newest posts (oldest first) as a flow of calls: each call is yielded and its response comes back.
        ``pages`` bounds how many pages a paged API is read for (the poll engine reads one per cycle)."""
        raise NotImplementedError(f"{self.platform} cannot be watched for new posts")

    def list_posts(self, since_id: str | None = None, limit: int = 50) -> Any:
        return run(self.poll(since_id, limit), self.send)

    async def fetch_posts(self, http: Any, since_id: str | None = None, limit: int = 50) -> Any:
        """``poll`` through the poll engine's shared client (``LimitedClient``): its concurrency bounds, this rate;
        one page per source and cycle (what arrived since the last poll)."""
        return await arun(self.poll(since_id, limit, pages=1), lambda call: http.send(self, call))
