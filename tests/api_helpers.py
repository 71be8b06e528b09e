"""Shared by the API tests: Kipu API tokens for the seeded profiles (the fixtures are in conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SECRETS: list[str] = []  # every token handed out; no response may contain one


def token_for(email: str, name: str = "test") -> dict[str, str]:
    from kipu.store.engine import session_scope
    from kipu.store.models import Profile
    from kipu.store.tokens import create_token
    from sqlalchemy import select

    with session_scope() as s:
        _, plain = create_token(s, s.scalar(select(Profile).where(Profile.email == email)), name)
    SECRETS.append(plain)
    return {"Authorization": f"Bearer {plain}"}


def oauth_app_env(platform: str, base: str, client_id: str, secret: str, authorize: str, token: str) -> tuple[str, str]:
    """The ``AIRFLOW_CONN_KIPU_<PLATFORM>_APP`` variable of an OAuth app whose endpoints are a fake at ``base``."""
    import json

    app = {
        "conn_type": f"kipu_{platform}_app",
        "login": client_id,
        "password": secret,
        "extra": {
            "redirect_uri": f"https://kipu.example/kipu/api/auth/callback/{platform}",
            "authorize_url": base + authorize,
            "token_url": base + token,
            "api_base_url": base,
        },
    }
    return f"AIRFLOW_CONN_KIPU_{platform.upper()}_APP", json.dumps(app)


@contextmanager
def recorded_bodies(api: Any) -> Iterator[list[str]]:
    """Every response body the test client receives inside the block, to check that no secret is in any."""
    seen: list[str] = []
    original = api.request

    def request(*args: Any, **kwargs: Any) -> Any:
        resp = original(*args, **kwargs)
        seen.append(resp.text)
        return resp

    api.request = request
    try:
        yield seen
    finally:
        api.request = original


def assert_no_secret(bodies: list[str], secrets: list[str]) -> None:
    for body in bodies:
        for secret in secrets:
            assert secret not in body


def session_cookie(username: str) -> str:
    """An Airflow UI session (its JWT cookie's value) for ``username``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role="admin"))


def signed_in(client: Any, username: str = "admin") -> Any:
    """``client`` as a browser signed in to Airflow as ``username`` (the seeded demo owner is ``admin``): an OAuth
    authorization completes only in the signed-in session of the person who started it."""
    from kipu.ui.session import COOKIE

    client.cookies.set(COOKIE, session_cookie(username))
    return client
