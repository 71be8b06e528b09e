"""Class 11: a Kipu API token sent in a query string is refused and never reaches an access log, through a real
``airflow api-server`` and through ``kipu api serve``."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.tenant.conftest import Server

pytestmark = pytest.mark.slow


def _token(server: Server) -> str:
    return server.tokens["member"]["Authorization"].removeprefix("Bearer ")


@pytest.mark.parametrize("which", ["airflow_server", "kipu_serve"])
def test_a_token_in_a_query_string_is_refused_and_not_logged(which: str, request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue(which)
    token = _token(server)
    for params in ({"token": token}, {"access": token}, {"q": f"x {token} y"}, {"api_key": token}):
        out = httpx.get(f"{server.url}/kipu/api/teams", params=params, timeout=10)
        assert out.status_code == 401
    # The same request with the token where it belongs is served, and logged (the log works).
    ok = httpx.get(f"{server.url}/kipu/api/teams", params={"marker": "log-is-on"}, headers=server.tokens["member"])
    assert ok.status_code == 200
    deadline = time.monotonic() + 10
    while "log-is-on" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = server.log_text()
    assert "log-is-on" in text, text[-2000:]
    assert token not in text and token[:20] not in text


@pytest.mark.parametrize("which", ["airflow_server", "kipu_serve"])
def test_an_oauth_code_and_state_are_not_logged(which: str, request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue(which)
    code, state = "CODE-single-use-5f1e2d", "STATE-single-use-9a8b7c"
    out = httpx.get(f"{server.url}/kipu/api/auth/callback/x", params={"code": code, "state": state}, timeout=10)
    assert out.status_code == 400  # an unknown state
    deadline = time.monotonic() + 10
    while "/kipu/api/auth/callback/x" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = server.log_text()
    assert "/kipu/api/auth/callback/x" in text
    assert code not in text and state not in text
