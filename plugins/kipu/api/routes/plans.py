"""``/api/teams/{team}/plan`` and ``/apply``: a folder of workflow files as the team's desired state (``kipu plan``
and ``kipu apply`` in remote mode)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from kipu.api.auth import CallerDep
from kipu.api.errors import unprocessable
from kipu.store.engine import session_scope
from kipu.store.models import Team
from kipu.store.plan import MAX_FILES, Plan, PlanInvalid, StoreChanged, apply_plan, make_plan

router = APIRouter(prefix="/teams", tags=["workflows as code"])


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(
        description="file name -> YAML or JSON text; a file without a slug takes it from its name",
        max_length=MAX_FILES,
    )
    prune: bool = Field(False, description="delete the team's workflows that no file names (else: pause them)")


class ApplyIn(PlanIn):
    fingerprint: str | None = Field(None, description="the plan's fingerprint: refuse (409) if the store moved since")
    source: str | None = Field(None, description="the plan's source: refuse (409) if the files changed since")


@router.post("/{team}/plan", response_model=Plan)
def plan(team: str, body: PlanIn, caller: CallerDep) -> Plan:
    """What applying the files would create, change, pause or delete; errors of every file at once (never 5xx)."""
    team_id = caller.team(team, "viewer")
    with session_scope() as s:
        row = s.get(Team, team_id)
        assert row is not None
        return make_plan(s, row, body.files, body.prune)


@router.post(
    "/{team}/apply",
    response_model=Plan,
    responses={409: {"description": "the store or the files changed since the plan"}, 422: {"description": "errors"}},
)
def apply(team: str, body: ApplyIn, caller: CallerDep) -> Plan:
    """Make the plan's change in one transaction (members; admins when pruning), or nothing at all."""
    team_id = caller.team(team, "admin" if body.prune else "member")
    try:
        with session_scope() as s:
            row = s.get(Team, team_id)
            assert row is not None
            return apply_plan(
                s, row, body.files, prune=body.prune, expect_fingerprint=body.fingerprint, expect_source=body.source
            )
    except PlanInvalid as exc:
        raise unprocessable(exc.errors, ("body", "files")) from None
    except StoreChanged as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
