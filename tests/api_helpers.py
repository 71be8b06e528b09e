"""Shared by the API tests: Kipu API tokens for the seeded profiles (the fixtures are in conftest)."""

from __future__ import annotations

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
