"""``/api/teams``: my teams; members and invitations (admins manage them, only owners grant or remove ownership);
the team and its plan (owners). Nobody joins a team without accepting its invitation (``/api/invitations``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from kipu.api.auth import Caller, CallerDep
from kipu.billing.plans import billing_enabled, effective_plan
from kipu.store import invitations
from kipu.store.accounts import add_member
from kipu.store.engine import session_scope
from kipu.store.models import Profile, Team, TeamMember

router = APIRouter(prefix="/teams", tags=["teams"])
Role = Literal["owner", "admin", "member", "viewer"]


class TeamOut(BaseModel):
    id: uuid.UUID
    slug: str | None
    name: str
    role: str
    plan: str = Field(description="the team's own plan; changing it changes no other team")
    effective_plan: str = Field(description="whose limits hold now: self_hosted without billing, free after a grace")
    billing_status: str
    held_release: str = Field(description="what releases items held by the monthly post limit: upgrade | new_month")


class MemberOut(BaseModel):
    email: str | None
    name: str | None
    role: str


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    role: Role


class InvitationOut(BaseModel):
    email: str
    role: str
    expires_at: datetime


class TeamPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    plan: Literal["free", "pro", "business"] | None = Field(
        default=None, description="self-hosted only; with Stripe billing the plan changes through checkout (409)"
    )
    held_release: Literal["upgrade", "new_month"] | None = Field(
        default=None, description="items held by the monthly post limit publish after an upgrade, or next month too"
    )


def _team_out(team_id: uuid.UUID, role: str) -> TeamOut:
    with session_scope() as s:
        team = s.get(Team, team_id)
        assert team is not None
        return TeamOut(
            id=team.id,
            slug=team.slug,
            name=team.name,
            role=role,
            plan=team.plan or "free",
            effective_plan=effective_plan(team),
            billing_status=team.billing_status or "none",
            held_release=team.held_release or "upgrade",
        )


@router.get("", response_model=list[TeamOut])
def my_teams(caller: CallerDep) -> list[TeamOut]:
    return sorted((_team_out(t, r) for t, r in caller.roles.items()), key=lambda t: t.slug or "")


@router.patch("/{team}", response_model=TeamOut, responses={409: {"description": "billing on: use checkout"}})
def update_team(team: str, body: TeamPatch, caller: CallerDep) -> TeamOut:
    team_id = caller.team(team, "owner")
    with session_scope() as s:
        row = s.get(Team, team_id)
        assert row is not None
        if body.name is not None:
            row.name = body.name
        if body.plan is not None and body.plan != row.plan:
            if billing_enabled():
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "with billing on, the plan changes through Stripe: POST /kipu/api/teams/{team}/billing/checkout",
                )
            row.plan = body.plan
        if body.held_release is not None:
            row.held_release = body.held_release
    return _team_out(team_id, "owner")


@router.get("/{team}/members", response_model=list[MemberOut])
def members(team: str, caller: CallerDep) -> list[MemberOut]:
    team_id = caller.team(team, "viewer")
    with session_scope() as s:
        rows = s.execute(
            select(Profile.email, Profile.name, TeamMember.role)
            .join(TeamMember, TeamMember.user_id == Profile.id)
            .where(TeamMember.team_id == team_id)
            .order_by(Profile.email)
        )
        return [MemberOut(email=e, name=n, role=r or "member") for e, n, r in rows]


def _owners(s, team_id: uuid.UUID) -> int:  # type: ignore[no-untyped-def]
    return len(s.scalars(select(TeamMember).where(TeamMember.team_id == team_id, TeamMember.role == "owner")).all())


def _member(s, team_id: uuid.UUID, email: str) -> TeamMember | None:  # type: ignore[no-untyped-def]
    """The team's member with this e-mail, compared as invitations compare it (in Python: a database's ``lower``
    differs from Python's, and SQLite's knows ASCII only)."""
    return invitations.member_by_email(s, team_id, email)


def _may_grant(caller: Caller, team_id: uuid.UUID, role: str, current: str | None) -> None:
    if (role == "owner" or current == "owner") and caller.roles.get(team_id) != "owner":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an owner grants or removes ownership")


@router.put(
    "/{team}/members",
    response_model=MemberOut,
    responses={404: {"description": "not a member: invite them with POST /teams/{team}/invitations"}},
)
def put_member(team: str, body: MemberBody, caller: CallerDep) -> MemberOut:
    """Change a member's role. Someone not in the team is invited instead, and joins by accepting."""
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        current = _member(s, team_id, body.email)
        if current is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"{body.email!r} is not a member of this team; invite them: POST /kipu/api/teams/{team}/invitations",
            )
        _may_grant(caller, team_id, body.role, current.role)
        if current.role == "owner" and body.role != "owner" and _owners(s, team_id) == 1:
            raise HTTPException(status.HTTP_409_CONFLICT, "a team keeps at least one owner")
        profile = s.get(Profile, current.user_id)
        add_member(s, s.get(Team, team_id), profile, body.role)  # type: ignore[arg-type]
        return MemberOut(email=profile.email, name=profile.name, role=body.role)  # type: ignore[union-attr]


@router.post(
    "/{team}/invitations",
    response_model=InvitationOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "already a member, or too many pending invitations"}},
)
def invite(team: str, body: MemberBody, caller: CallerDep) -> InvitationOut:
    """Invite an e-mail to the team with a role; asking again renews it. The answer is the same whether or not
    anyone with that e-mail uses Kipu; they see it in ``GET /invitations`` and accept it there."""
    team_id = caller.team(team, "admin")
    _may_grant(caller, team_id, body.role, None)
    with session_scope() as s:
        if _member(s, team_id, body.email) is not None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"{body.email!r} is already a member; change the role with PUT /kipu/api/teams/{team}/members",
            )
        try:
            row = invitations.invite(s, team_id, body.email, body.role, caller.profile_id)
        except invitations.InvitationRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return InvitationOut(email=row.email, role=row.role, expires_at=row.expires_at)


@router.get("/{team}/invitations", response_model=list[InvitationOut])
def pending_invitations(team: str, caller: CallerDep) -> list[InvitationOut]:
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        return [
            InvitationOut(email=i.email, role=i.role, expires_at=i.expires_at)
            for i in invitations.team_pending(s, team_id)
        ]


@router.delete("/{team}/invitations/{email}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_invitation(team: str, email: str, caller: CallerDep) -> None:
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        done = invitations.revoke(s, team_id, email)
    if not done:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pending invitation to {email!r}")


@router.delete("/{team}/members/{email}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(team: str, email: str, caller: CallerDep) -> None:
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        member = _member(s, team_id, email)
        if member is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"member {email!r} not found")
        if member.role == "owner" and caller.roles.get(team_id) != "owner":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only an owner removes an owner")
        if member.role == "owner" and _owners(s, team_id) == 1:
            raise HTTPException(status.HTTP_409_CONFLICT, "a team keeps at least one owner")
        s.delete(member)
