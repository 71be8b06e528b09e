"""Team invitations: an admin offers a role to an e-mail, and only the person with that e-mail makes it a
membership. Inviting answers the same whether or not the e-mail has a profile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kipu.billing.plans import check
from kipu.config import env_number
from kipu.store.accounts import ROLE_RANK, ROLES, add_member, lock_team
from kipu.store.models import Profile, Team, TeamInvitation, TeamMember

MAX_PENDING = 50  # per team: a team cannot fill strangers' invitation lists


def valid_days() -> float:
    return env_number("KIPU_INVITATION_DAYS", 14.0, minimum=0.01)


class InvitationRefused(Exception):
    """The invitation cannot be made; the message names the limit."""


def normal_email(email: str) -> str:
    return email.strip().lower()


def member_by_email(session: Session, team_id: uuid.UUID, email: str) -> TeamMember | None:
    """The team's member with this e-mail, compared in Python as invitations are (a database's ``lower`` is not
    Python's, and SQLite's knows ASCII only); a team's members are few."""
    wanted = normal_email(email)
    rows = session.execute(
        select(TeamMember, Profile.email)
        .join(Profile, Profile.id == TeamMember.user_id)
        .where(TeamMember.team_id == team_id)
    )
    return next((m for m, e in rows if e and normal_email(e) == wanted), None)


def invite(session: Session, team_id: uuid.UUID, email: str, role: str, invited_by: uuid.UUID) -> TeamInvitation:
    """Create or renew (new role, new expiry) the team's invitation to ``email``. The team's row is locked first, so
    two invitations at once neither collide nor pass the limits together."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    lock_team(session, team_id)
    now = datetime.now(UTC)
    session.execute(delete(TeamInvitation).where(TeamInvitation.team_id == team_id, TeamInvitation.expires_at <= now))
    email = normal_email(email)
    row = session.scalar(select(TeamInvitation).where(TeamInvitation.team_id == team_id, TeamInvitation.email == email))
    if row is None:
        pending = session.scalar(select(func.count()).where(TeamInvitation.team_id == team_id)) or 0
        if pending >= MAX_PENDING:
            raise InvitationRefused(f"a team holds at most {MAX_PENDING} pending invitations; it has {pending}")
        check(session, team_id, "members", adding=pending + 1)  # members plus everyone already invited
        row = TeamInvitation(id=uuid.uuid4(), team_id=team_id, email=email)
        session.add(row)
    row.role, row.invited_by = role, invited_by
    row.created_at, row.expires_at = now, now + timedelta(days=valid_days())
    session.flush()
    return row


def team_pending(session: Session, team_id: uuid.UUID) -> list[TeamInvitation]:
    now = datetime.now(UTC)
    return list(
        session.scalars(
            select(TeamInvitation)
            .where(TeamInvitation.team_id == team_id, TeamInvitation.expires_at > now)
            .order_by(TeamInvitation.email)
        )
    )


def revoke(session: Session, team_id: uuid.UUID, email: str) -> bool:
    done = session.execute(
        delete(TeamInvitation).where(TeamInvitation.team_id == team_id, TeamInvitation.email == normal_email(email))
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def pending_for(session: Session, email: str | None) -> list[tuple[TeamInvitation, Team]]:
    """The live invitations to this e-mail, with their teams."""
    if not email:
        return []
    rows = session.execute(
        select(TeamInvitation, Team)
        .join(Team, Team.id == TeamInvitation.team_id)
        .where(TeamInvitation.email == normal_email(email), TeamInvitation.expires_at > datetime.now(UTC))
        .order_by(TeamInvitation.created_at)
    )
    return [(inv, team) for inv, team in rows]


def _still_offered(session: Session, inv: TeamInvitation) -> bool:
    """An invitation holds while its inviter still holds the rank to make it (a removed admin's invitations die)."""
    if inv.invited_by is None:
        return False
    inviter = session.get(TeamMember, (inv.team_id, inv.invited_by))
    need = "owner" if inv.role == "owner" else "admin"
    return inviter is not None and ROLE_RANK.get(inviter.role or "member", 0) >= ROLE_RANK[need]


def mine(session: Session, invitation_id: uuid.UUID, email: str | None) -> TeamInvitation | None:
    """The invitation if it is live and addressed to ``email``; None otherwise (another's looks missing)."""
    inv = session.get(TeamInvitation, invitation_id)
    if inv is None or not email or inv.email != normal_email(email) or inv.expires_at <= datetime.now(UTC):
        return None
    return inv


def accept(session: Session, inv: TeamInvitation, profile_id: uuid.UUID) -> TeamMember | None:
    """Make the invitation a membership (an existing one keeps the higher role); None if it no longer holds."""
    team = session.get(Team, inv.team_id)
    profile = session.get(Profile, profile_id)
    offered = _still_offered(session, inv)
    session.delete(inv)
    session.flush()
    if team is None or profile is None or not offered:
        return None
    current = session.get(TeamMember, (team.id, profile.id))
    if current is not None and ROLE_RANK.get(current.role or "member", 0) >= ROLE_RANK[inv.role]:
        return current
    return add_member(session, team, profile, inv.role)
