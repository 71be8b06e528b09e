"""Profiles, teams, members and connections; connection tokens are encrypted on the way in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.billing.plans import check
from kipu.naming import team_slug, valid_team_slug
from kipu.store.crypto import get_cipher
from kipu.store.models import Connection, NotificationChannel, Profile, Team, TeamMember, Workflow

ROLES = ("owner", "admin", "member", "viewer")
ROLE_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}


def get_or_create_profile(
    session: Session, email: str, name: str | None = None, airflow_username: str | None = None
) -> Profile:
    profile = session.scalar(select(Profile).where(Profile.email == email))
    if profile is None:
        profile = Profile(
            id=uuid.uuid4(), email=email, name=name or email.split("@")[0], airflow_username=airflow_username
        )
        session.add(profile)
        session.flush()
    return profile


def get_or_create_team(session: Session, name: str, owner: Profile, slug: str | None = None) -> Team:
    slug = slug or team_slug(name)
    if not valid_team_slug(slug):
        raise ValueError(f"team slug {slug!r} must be 1-63 lowercase letters, digits or '-', starting with one")
    team = session.scalar(select(Team).where(Team.slug == slug))
    if team is None:
        team = Team(id=uuid.uuid4(), name=name, slug=slug, owner_id=owner.id)
        session.add(team)
        session.flush()
        add_member(session, team, owner, "owner")
    return team


def lock_team(session: Session, team_id: uuid.UUID) -> None:
    """Take the team's row lock until the transaction ends: a count against a team limit (members, channels,
    invitations, the AI budget) and the write that follows cannot interleave with another request's."""
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update())


def add_member(session: Session, team: Team, profile: Profile, role: str = "member") -> TeamMember:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)} (a member creates and runs workflows)")
    member = session.get(TeamMember, (team.id, profile.id))
    if member is None:
        check(session, team.id, "members")
        member = TeamMember(team_id=team.id, user_id=profile.id, role=role)
        session.add(member)
    else:
        member.role = role
    session.flush()
    return member


def find_team(session: Session, ref: str) -> Team | None:
    """A team by slug or id."""
    team = session.scalar(select(Team).where(Team.slug == ref))
    if team is None:
        try:
            team = session.get(Team, uuid.UUID(ref))
        except ValueError:
            return None
    return team


def upsert_connection(
    session: Session,
    team: Team,
    platform: str,
    platform_user_id: str,
    *,
    username: str | None = None,
    access_token: str | SecretStr | None = None,
    refresh_token: str | SecretStr | None = None,
    expires_at: datetime | None = None,
    scopes: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Connection:
    """Create or update a connection; an empty refresh token never overwrites a stored one."""
    cipher = get_cipher()
    conn = session.scalar(
        select(Connection).where(
            Connection.team_id == team.id,
            Connection.platform == platform,
            Connection.platform_user_id == platform_user_id,
        )
    )
    if conn is None:
        check(session, team.id, "connections")
        conn = Connection(id=uuid.uuid4(), team_id=team.id, platform=platform, platform_user_id=platform_user_id)
        session.add(conn)
    conn.platform_username = username or conn.platform_username
    if access_token:
        conn.access_token = cipher.encrypt(access_token)
    if refresh_token:
        conn.refresh_token = cipher.encrypt(refresh_token)
    if expires_at:
        conn.token_expires_at = expires_at
    if scopes is not None:
        conn.scopes = scopes
    if metadata is not None:
        conn.metadata_ = {**(conn.metadata_ or {}), **metadata}
    conn.status = "healthy"
    session.flush()
    return conn


def connection_tokens(conn: Connection) -> tuple[SecretStr | None, SecretStr | None]:
    """Decrypted ``(access, refresh)`` tokens, wrapped so that they never print."""
    cipher = get_cipher()
    return cipher.decrypt(conn.access_token), cipher.decrypt(conn.refresh_token)


def rotate_tokens(session: Session) -> int:
    """Re-encrypt every stored token, webhook secret and notification channel under the primary key; returns how
    many rows changed.

    Rows are locked as a refresh locks them, so a token refreshed during the rotation is never overwritten."""
    cipher = get_cipher()
    n = 0
    for conn in session.scalars(select(Connection).with_for_update()):
        if conn.access_token or conn.refresh_token:
            conn.access_token = cipher.rotate(conn.access_token)
            conn.refresh_token = cipher.rotate(conn.refresh_token)
            n += 1
    for wf in session.scalars(select(Workflow).with_for_update()):
        sealed = (wf.trigger_config or {}).get("webhook_secret")
        if sealed:
            wf.trigger_config = {**wf.trigger_config, "webhook_secret": cipher.rotate(sealed)}
            n += 1
    for ch in session.scalars(select(NotificationChannel).with_for_update()):  # receiver URLs and signing secrets
        if ch.url or ch.secret or ch.previous_secret:
            ch.url, ch.secret = cipher.rotate(ch.url), cipher.rotate(ch.secret)
            ch.previous_secret = cipher.rotate(ch.previous_secret)
            n += 1
    session.flush()
    return n


def resolve_connection(session: Session, team_id: uuid.UUID | None, ref: str) -> Connection | None:
    """A connection by id, or by ``platform:platform_user_id``, within the team."""
    try:
        conn = session.get(Connection, uuid.UUID(ref))
    except ValueError:
        platform, _, user = ref.partition(":")
        conn = session.scalar(
            select(Connection).where(
                Connection.team_id == team_id,
                Connection.platform == platform,
                Connection.platform_user_id == user,
            )
        )
    if conn is not None and conn.team_id != team_id:
        return None
    return conn


def flag_reconnect(session: Session, conn: Connection, reason: str) -> None:
    """Mark the connection as needing its owner (the one place this is set) and tell the team, once a day."""
    conn.status, conn.last_error = "needs_reconnect", reason[:500]
    tell_reconnect(session, conn)


def tell_reconnect(session: Session, conn: Connection, reason: str | None = None) -> None:
    from datetime import UTC

    from kipu.notify.events import emit

    day = datetime.now(UTC).date().isoformat()
    data = {
        "connection_id": str(conn.id),
        "platform": conn.platform,
        "account": conn.platform_username or conn.platform_user_id,
        "reason": (reason or conn.last_error or "")[:500],
    }
    emit(session, conn.team_id, "connection.needs_reconnect", data, f"connection.needs_reconnect:{conn.id}:{day}")
