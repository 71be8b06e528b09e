"""Who is calling and what they may do: Kipu API tokens (``kipu tokens create``), team roles, 404 across teams.

Every route gets its caller from ``CallerDep`` and checks roles through ``Caller.require`` (or the object loaders
built on it). Another team's object is indistinguishable from a missing one.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from kipu.config import env_number
from kipu.store.accounts import ROLE_RANK, find_team
from kipu.store.engine import session_scope
from kipu.store.models import TeamMember
from kipu.store.tokens import profile_for_token

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="A Kipu API token: `kipu tokens create --user EMAIL`")


@dataclass(frozen=True)
class Caller:
    profile_id: uuid.UUID
    email: str | None
    roles: dict[uuid.UUID, str] = field(default_factory=dict)  # team id -> role

    @property
    def team_ids(self) -> list[uuid.UUID]:
        return list(self.roles)

    def require(self, team_id: uuid.UUID | None, role: str, what: str) -> None:
        """404 (``what`` not found) outside the caller's teams; 403 naming the role needed inside them."""
        have = self.roles.get(team_id) if team_id else None
        if have is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
        if ROLE_RANK[have] < ROLE_RANK[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role in the team; you are {have}")

    def team(self, ref: str, role: str) -> uuid.UUID:
        """A team by slug or id that the caller holds ``role`` in."""
        with session_scope() as s:
            team = find_team(s, ref)
            team_id = team.id if team else None
        self.require(team_id, role, f"team {ref!r}")
        assert team_id is not None
        return team_id


# Token → caller, for a few seconds: one query fewer per request. A revoked token or a changed role takes effect
# within this time (KIPU_API_AUTH_CACHE_SECONDS; 0 turns the cache off).
_CACHE: dict[str, tuple[float, Caller]] = {}


def _cache_seconds() -> float:
    return env_number("KIPU_API_AUTH_CACHE_SECONDS", 5.0, minimum=0.0)


def load_owned(caller: Caller, model: type[T], object_id: uuid.UUID, role: str, label: str) -> T:
    """A row with a ``team_id`` if the caller holds ``role`` in that team; 404 (as if missing) otherwise."""
    with session_scope() as s:
        row = s.get(model, object_id)
        team_id = getattr(row, "team_id", None) if row is not None else None
    caller.require(team_id, role, f"{label} {object_id}")
    assert row is not None
    return row


async def authenticate(authorization: str) -> Caller:
    """The caller an ``Authorization`` header names; 401 without a valid Kipu bearer token. Async, so a cached
    caller costs no trip to the thread pool. The door guard calls it before a body is read."""
    challenge = {"WWW-Authenticate": "Bearer"}
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a Kipu API token is required", headers=challenge)
    if len(token) > 200:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the API token is unknown or revoked", headers=challenge)
    key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    cached = _CACHE.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    caller = await run_in_threadpool(_resolve, token, challenge)
    ttl = _cache_seconds()
    if ttl > 0:
        if len(_CACHE) > 10_000:
            _CACHE.clear()
        _CACHE[key] = (time.monotonic() + ttl, caller)
    return caller


async def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller of a request: the one the door guard authenticated, else from the header."""
    known = getattr(request.state, "kipu_caller", None)
    if isinstance(known, Caller):
        return known
    header = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else ""
    return await authenticate(header)


def _resolve(token: str, challenge: dict[str, str]) -> Caller:
    with session_scope() as s:
        profile = profile_for_token(s, token)
        if profile is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the API token is unknown or revoked", headers=challenge)
        roles = {
            team_id: role or "member"
            for team_id, role in s.execute(
                select(TeamMember.team_id, TeamMember.role).where(TeamMember.user_id == profile.id)
            )
        }
        return Caller(profile.id, profile.email, roles)


CallerDep = Annotated[Caller, Depends(current_caller)]
