"""Who is calling: Airflow's own JWT (header or UI cookie) → the Kipu profile → a team role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException, status
from sqlalchemy import select

from kipu.store.accounts import find_team
from kipu.store.engine import session_scope
from kipu.store.models import Profile, TeamMember

# Roles that may act (spend AI budget, edit, publish); viewers only read.
WRITERS = ("owner", "admin", "member")


@dataclass(frozen=True)
class Caller:
    username: str
    profile_id: uuid.UUID | None


def current_caller(user: Annotated[BaseUser, Depends(get_user)]) -> Caller:
    name = user.get_name()
    with session_scope() as s:
        profile = s.scalar(select(Profile).where(Profile.airflow_username == name))
        return Caller(name, profile.id if profile else None)


CallerDep = Annotated[Caller, Depends(current_caller)]


def team_role(caller: Caller, team_ref: str, allowed: tuple[str, ...] = WRITERS) -> uuid.UUID:
    """The team's id if the caller holds one of ``allowed`` in it; 404 for a team they cannot see (no probing)."""
    with session_scope() as s:
        team = find_team(s, team_ref)
        member = s.get(TeamMember, (team.id, caller.profile_id)) if team and caller.profile_id else None
        if team is None or member is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"team {team_ref!r} not found")
        if member.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {member.role!r} in team {team_ref!r} may not do this")
        return team.id
