"""``/api/connections`` and ``/api/auth``: connected accounts (tokens never returned), OAuth, Bluesky app passwords."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select

from kipu.api.auth import Caller, CallerDep, load_owned
from kipu.api.errors import unprocessable
from kipu.auth.tokens import self_refreshing
from kipu.hooks.base import PlatformError, RateLimited, Rejected, Transient
from kipu.specs.common import OAuthPlatformName
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Team

router = APIRouter(tags=["connections"])
EXPIRING = timedelta(hours=48)


class ConnectionOut(BaseModel):
    id: uuid.UUID
    team: str | None
    platform: str
    platform_user_id: str
    username: str | None
    status: str  # healthy | expiring | needs_reconnect | rate_limited | error
    token_expires_at: datetime | None
    scopes: list[str] | None
    last_error: str | None
    last_checked_at: datetime | None


class OAuthConnectedOut(ConnectionOut):
    """The first connection the authorization made (as before), and every one of them: Facebook connects one per
    Page the user manages."""

    connections: list[ConnectionOut] = Field(
        description="every account this authorization connected, the first one included (one per Facebook Page)"
    )


class BlueskyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str
    handle: str = Field(min_length=3, max_length=253)
    app_password: SecretStr
    service: str = Field(default="https://bsky.social", max_length=2048, description="the PDS; a public https URL")


def _out(conn: Connection, team: str | None) -> ConnectionOut:
    state = conn.status or "healthy"
    # "expiring" asks the user to act: a token Kipu renews by itself (a refresh token, or a platform whose long-lived
    # token refreshes itself) is healthy however short its life.
    renews = bool(conn.refresh_token) or conn.platform in self_refreshing()
    soon = conn.token_expires_at and conn.token_expires_at < datetime.now(UTC) + EXPIRING
    if state == "healthy" and soon and not renews:
        state = "expiring"
    return ConnectionOut(
        id=conn.id,
        team=team,
        platform=conn.platform,
        platform_user_id=conn.platform_user_id,
        username=conn.platform_username,
        status=state,
        token_expires_at=conn.token_expires_at,
        scopes=conn.scopes,
        last_error=conn.last_error,
        last_checked_at=conn.last_checked_at,
    )


def _load(caller: Caller, connection_id: uuid.UUID, role: str) -> Connection:
    return load_owned(caller, Connection, connection_id, role, "connection")


def _one(connection_id: uuid.UUID) -> ConnectionOut:
    with session_scope() as s:
        conn = s.get(Connection, connection_id)
        assert conn is not None
        team = s.get(Team, conn.team_id) if conn.team_id else None
        return _out(conn, team.slug if team else None)


@router.get("/connections", response_model=list[ConnectionOut])
def list_connections(caller: CallerDep, team: str | None = None) -> list[ConnectionOut]:
    teams = [caller.team(team, "viewer")] if team else caller.team_ids
    with session_scope() as s:
        rows = s.execute(
            select(Connection, Team.slug)
            .join(Team, Team.id == Connection.team_id)
            .where(Connection.team_id.in_(teams))
            .order_by(Team.slug, Connection.platform, Connection.platform_user_id)
        )
        return [_out(c, slug) for c, slug in rows]


@router.get("/connections/{connection_id}", response_model=ConnectionOut)
def get_connection(connection_id: uuid.UUID, caller: CallerDep) -> ConnectionOut:
    _load(caller, connection_id, "viewer")
    return _one(connection_id)


@router.delete("/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_connection(connection_id: uuid.UUID, caller: CallerDep) -> None:
    """Forgets the tokens and marks it revoked; posts and workflows keep referring to it."""
    _load(caller, connection_id, "admin")
    with session_scope() as s:
        conn = s.get(Connection, connection_id)
        assert conn is not None
        conn.access_token = conn.refresh_token = None
        conn.status, conn.last_error = "revoked", "disconnected by a team admin"


@router.post("/connections/{connection_id}/refresh", response_model=ConnectionOut)
def refresh_connection(connection_id: uuid.UUID, caller: CallerDep) -> ConnectionOut:
    from kipu.platforms import account_hook, has_tokens

    conn = _load(caller, connection_id, "admin")
    if not has_tokens(conn.platform):
        raise unprocessable(f"{conn.platform} connections have no tokens to refresh", ("path", "connection_id"))
    with session_scope() as s:
        hook = account_hook(s.get(Connection, connection_id))  # type: ignore[arg-type]
    try:
        hook.refresh()
    except PlatformError as exc:  # the status now says what the user must do
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _one(connection_id)


@router.post("/connections/bluesky", response_model=ConnectionOut, status_code=status.HTTP_201_CREATED)
def connect_bluesky(body: BlueskyBody, caller: CallerDep) -> ConnectionOut:
    from kipu.egress import EgressRefused
    from kipu.platforms.bluesky.hook import ServiceUnusable, connect_with_app_password

    team_id = caller.team(body.team, "admin")
    try:
        with session_scope() as s:
            team = s.get(Team, team_id)
            conn_id = connect_with_app_password(s, team, body.service, body.handle, body.app_password).id
    except (EgressRefused, ServiceUnusable) as exc:
        raise unprocessable(str(exc), ("body", "service")) from None
    except Rejected as exc:
        raise unprocessable(str(exc), ("body", "app_password")) from None
    return _one(conn_id)


@router.post("/connections/oauth/{platform}")
def start_oauth(
    platform: OAuthPlatformName,
    team: str,
    caller: CallerDep,
    instance: str | None = Query(None, max_length=253, description="a federated platform's instance (Mastodon)"),
) -> dict[str, str]:
    """The URL to send the user to; the platform redirects back to ``/kipu/api/auth/callback/{platform}``. A federated
    platform needs ``instance``: Kipu registers itself there the first time (through the egress guard).

    The authorization completes only in the caller's own signed-in Airflow session: otherwise an admin could send
    the link to someone else and land that person's account in their team."""
    from kipu.auth import oauth
    from kipu.egress import EgressRefused
    from kipu.store.models import Profile

    team_id = caller.team(team, "admin")
    with session_scope() as s:
        profile = s.get(Profile, caller.profile_id)
        airflow_user = profile.airflow_username if profile else None
    if not airflow_user:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "connecting an account completes in your own signed-in Airflow session, and your Kipu profile has no "
            "Airflow user: ask an operator to link one, or connect from Kipu's Connections page",
        )
    try:
        with session_scope() as s:
            app = oauth.app_for(platform, instance, s)
            url = oauth.begin(s, app, s.get(Team, team_id), caller.profile_id, session_user=airflow_user)  # type: ignore[arg-type]
            return {"authorization_url": url}
    except EgressRefused as exc:
        raise unprocessable(str(exc), ("query", "instance")) from None
    except (Transient, RateLimited) as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
    except Rejected as exc:
        where = ("query", "instance") if "instance" in str(exc) else ("path", "platform")
        raise unprocessable(str(exc), where) from None


@router.get(
    "/auth/callback/{platform}",
    response_model=OAuthConnectedOut,
    responses={
        303: {"description": "started on Kipu's pages: back to the connections page, with the outcome"},
        400: {"description": "refused: unknown or used state, another person's session, the platform's refusal"},
        502: {"description": "the platform could not be reached or asked to wait; start connecting again later"},
    },
)
async def oauth_callback(
    request: Request, platform: OAuthPlatformName, state: str, code: str | None = None, error: str | None = None
) -> Any:
    """The OAuth redirect target. The single-use ``state`` (and PKCE verifier) authenticates it, not a token.
    Every account the authorization connects is stored (Facebook: one connection per Page). It completes only in
    the signed-in Airflow session of the person who started it (a link crafted by one team cannot land a victim's
    account in it); one started on Kipu's pages returns to the page."""
    from starlette.concurrency import run_in_threadpool

    from kipu.auth import oauth
    from kipu.ui.session import COOKIE, airflow_user

    def bound() -> tuple[bool, str | None, str | None]:
        with session_scope() as s:
            return oauth.binding(s, state)

    pending, session_user, return_to = await run_in_threadpool(bound)
    if pending and session_user is None:  # the operator's `kipu connect start`, on the server itself
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "this authorization was started with `kipu connect start`: finish it with `kipu connect finish` and "
            "the state and code of this address",
        )
    if pending and await airflow_user(request.cookies.get(COOKIE)) != session_user:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "this authorization was started in another person's signed-in session; start connecting again from yours",
        )

    def finish() -> list[uuid.UUID]:
        if error or not code:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{platform} did not authorize: {error or 'no code'}")
        try:
            with session_scope() as s:
                return [c.id for c in oauth.finish(s, platform, state, code)]
        except (Transient, RateLimited) as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        except PlatformError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None

    try:
        ids = await run_in_threadpool(finish)
    except HTTPException as exc:
        if return_to is None:
            raise
        return RedirectResponse(f"{return_to}&{urlencode({'err': exc.detail})}", status_code=303)
    connected = [await run_in_threadpool(_one, i) for i in ids]
    if return_to is not None:
        names = ", ".join(f"{c.platform} {c.username or c.platform_user_id}" for c in connected)
        return RedirectResponse(f"{return_to}&{urlencode({'msg': f'Connected: {names}.'})}", status_code=303)
    return OAuthConnectedOut(**connected[0].model_dump(), connections=connected)
