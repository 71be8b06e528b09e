"""``/api/invitations``: the invitations addressed to the caller's own e-mail, which only they accept or decline."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from kipu.api.auth import CallerDep
from kipu.store import invitations
from kipu.store.engine import session_scope

router = APIRouter(prefix="/invitations", tags=["teams"])


class MyInvitationOut(BaseModel):
    id: uuid.UUID
    team: str | None
    team_name: str
    role: str
    expires_at: datetime


class JoinedOut(BaseModel):
    team: str | None
    role: str


def _gone(invitation_id: uuid.UUID) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"invitation {invitation_id} not found (or expired)")


@router.get("", response_model=list[MyInvitationOut])
def my_invitations(caller: CallerDep) -> list[MyInvitationOut]:
    with session_scope() as s:
        return [
            MyInvitationOut(id=i.id, team=t.slug, team_name=t.name, role=i.role, expires_at=i.expires_at)
            for i, t in invitations.pending_for(s, caller.email)
        ]


@router.post("/{invitation_id}/accept", response_model=JoinedOut)
def accept(invitation_id: uuid.UUID, caller: CallerDep) -> JoinedOut:
    """Join the team with the invitation's role. An invitation whose inviter has since lost the rank to make it
    is void (404)."""
    with session_scope() as s:
        inv = invitations.mine(s, invitation_id, caller.email)
        member = invitations.accept(s, inv, caller.profile_id) if inv is not None else None
        joined = JoinedOut(team=member.team.slug, role=member.role or "member") if member is not None else None
    if joined is None:
        raise _gone(invitation_id)
    return joined


@router.delete("/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
def decline(invitation_id: uuid.UUID, caller: CallerDep) -> None:
    with session_scope() as s:
        inv = invitations.mine(s, invitation_id, caller.email)
        if inv is not None:
            s.delete(inv)
    if inv is None:
        raise _gone(invitation_id)
