"""The one HTTP client base: Retry-After parsing, per-token rates, response classification."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from kipu.hooks.base import AuthExpired, RateLimited, Rejected, Transient
from kipu.hooks.client import classify, parse_retry_after
from kipu.hooks.http import LimitedClient, Limits

from tests.fakes.platform_server import PlatformServer


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize(
    "status,error",
    [
        (200, None),
        (301, None),
        (400, Rejected),
        (401, AuthExpired),
        (403, Rejected),
        (429, RateLimited),
        (503, Transient),
    ],
)
def test_classify_maps_status_codes_onto_the_taxonomy(status: int, error: type | None) -> None:
    response = httpx.Response(status, headers={"Retry-After": "7"}, text="platform says no")
    got = classify(response, "x")
    assert (type(got) if got else None) is error
    if got is not None:
        assert f"x: HTTP {status}: platform says no" == str(got)
    if isinstance(got, RateLimited):
        assert got.retry_after == 7


def test_per_token_rate_limit_spaces_requests_and_other_tokens_are_not_slowed() -> None:
    async def main(url: str) -> tuple[float, float]:
        async with LimitedClient(Limits(token_rates={"feed": 4})) as http:
            t0 = time.monotonic()
            await asyncio.gather(*(http.request("GET", url, platform="feed", token_key="a") for _ in range(8)))
            limited = time.monotonic() - t0
            t0 = time.monotonic()
            await asyncio.gather(*(http.request("GET", url, platform="feed", token_key=f"t{i}") for i in range(8)))
            return limited, time.monotonic() - t0

    with PlatformServer() as host:
        host.source("r").add("p")
        limited, spread = asyncio.run(main(host.feed_url("r")))
    # 4 per second with a burst of 4: the last of 8 waits about a second.
    assert limited >= 0.9
    assert spread < limited


def test_transient_errors_are_retried_once_then_raised() -> None:
    async def main(url: str) -> None:
        async with LimitedClient() as http:
            await http.request("GET", url, platform="feed", token_key="b", retries=1)

    with PlatformServer() as host:
        host.source("down").mode = "500"
        with pytest.raises(Transient, match="HTTP 500"):
            asyncio.run(main(host.feed_url("down")))
        assert host.source("down").hits == 2


def test_a_platform_echoing_the_requests_credentials_never_leaks_them() -> None:
    """The refusal's words are kept short for messages (``last_error``, XCom, logs); a bearer token or a secret query
    parameter the platform echoes back is masked whole, even across the cut."""
    bearer, query = "tok_" + "B" * 60, "qtok_" + "Q" * 60
    request = httpx.Request(
        "GET", f"https://api.example/me?access_token={query}", headers={"Authorization": f"Bearer {bearer}"}
    )
    for body in ("x" * 190 + bearer, f"bad token {bearer} and {query}", "y" * 195 + query):
        error = classify(httpx.Response(400, text=body, request=request), "example")
        assert error is not None and "tok_BB" not in str(error) and "qtok_QQ" not in str(error), str(error)
        assert "***" in str(error)
    assert "plain words" in str(classify(httpx.Response(403, text="plain words"), "example"))  # no request: as before
