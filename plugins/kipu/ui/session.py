"""One login: the person signed in to Airflow (its ``_token`` cookie, checked by Airflow's auth manager) is the Kipu
profile whose ``airflow_username`` matches, with that profile's team roles. No Kipu token reaches the browser; forms
carry a CSRF token derived from the session."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from sqlalchemy import select

from kipu.api.auth import Caller

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


async def airflow_user(token: str | None) -> str | None:
    """The Airflow user name of a session token, or None (missing, expired, revoked or forged)."""
    if not token:
        return None
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    try:
        return (await resolve_user_from_token(token)).get_name()
    except Exception:  # every refusal means the same here: not signed in
        return None


def caller_for(username: str) -> Caller:
    """The Kipu caller of an Airflow user: its profile's roles, or no team at all."""
    from kipu.store.engine import session_scope
    from kipu.store.models import Profile, TeamMember

    with session_scope() as s:
        profile = s.scalar(select(Profile).where(Profile.airflow_username == username))
        if profile is None:
            return Caller(uuid.UUID(int=0), None, {})
        roles = {
            team_id: role or "member"
            for team_id, role in s.execute(
                select(TeamMember.team_id, TeamMember.role).where(TeamMember.user_id == profile.id)
            )
        }
        return Caller(profile.id, profile.email, roles)


async def ui_caller(scope: dict[str, Any]) -> tuple[str, Caller] | None:
    """``(airflow user, caller)`` of a request to the pages, from its cookie."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    token = Request(scope).cookies.get(COOKIE)
    username = await airflow_user(token)
    if username is None:
        return None
    return username, await run_in_threadpool(caller_for, username)


def csrf_token(session_token: str) -> str:
    """A form token only a page of this session can know (another site cannot read the cookie it derives from)."""
    return hmac.new(b"kipu-ui-csrf", session_token.encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(session_token: str | None, sent: str | None) -> bool:
    return bool(session_token and sent) and hmac.compare_digest(csrf_token(session_token or ""), sent or "")
