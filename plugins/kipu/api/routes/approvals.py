"""``/api/approvals``: pending approvals of my teams' workflows, answered through Airflow's own HITL handler
(the same code as ``PATCH /api/v2/.../hitlDetails``), only by an approver listed on the step."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select

from kipu.api.auth import Caller, CallerDep
from kipu.store.engine import session_scope
from kipu.store.models import Profile, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.runs import add_step_output

router = APIRouter(prefix="/approvals", tags=["approvals"])


class ApprovalOut(BaseModel):
    workflow_id: uuid.UUID
    dag_id: str
    dag_run_id: str
    task_id: str
    subject: str | None
    body: str | None
    options: list[str]
    approvers: list[str]
    created_at: datetime | None
    title: str | None = Field(None, description="the item's title")
    caption: str | None = Field(None, description="the item's original caption")
    rewrites: dict[str, str] = Field(default_factory=dict, description="platform -> the caption rewritten for it")
    media: list[str] = Field(default_factory=list, description="the item's media URLs (or kipu-media: refs)")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["Approve", "Reject"]
    comment: str | None = Field(default=None, max_length=2000)


class _Approver(BaseUser):
    """The identity Airflow's HITL handler records as ``responded_by``."""

    def __init__(self, user_id: str, name: str) -> None:
        self._id, self._name = user_id, name

    def get_id(self) -> str:
        return self._id

    def get_name(self) -> str:
        return self._name


def _my_dags(caller: Caller) -> dict[str, uuid.UUID]:
    """DAG id -> workflow id for every workflow of the caller's teams (legacy ids too, for runs made before)."""
    with session_scope() as s:
        rows = s.execute(
            select(Workflow.id, Workflow.dag_id, Workflow.legacy_dag_id).where(Workflow.team_id.in_(caller.team_ids))
        )
        return {dag: wid for wid, *dags in rows for dag in dags if dag}


@router.get("", response_model=list[ApprovalOut])
def pending(caller: CallerDep) -> list[ApprovalOut]:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    dags = _my_dags(caller)
    if not dags:
        return []
    with create_session() as session:
        rows = session.execute(
            select(HITLDetail, TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(
                TaskInstance.dag_id.in_(list(dags)),
                HITLDetail.responded_at.is_(None),
                # Listed once parked: an answer that lands before the task parks would be overwritten by the park.
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
            )
        )
        found = [
            {
                "workflow_id": dags[dag_id],
                "dag_id": dag_id,
                "dag_run_id": run_id,
                "task_id": task_id,
                "subject": d.subject,
                "body": d.body,
                "options": list(d.options or []),
                "approvers": [u["id"] for u in d.assigned_users or []],
                "created_at": getattr(d, "created_at", None),
            }
            for d, dag_id, run_id, task_id in rows
        ]
    items = _items([(a["dag_id"], a["dag_run_id"]) for a in found])
    return [ApprovalOut(**a, **items.get((a["dag_id"], a["dag_run_id"]), {})) for a in found]


def _items(runs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What each run's approvers decide on: the item's title, caption and media, and the captions rewritten so far."""
    if not runs:
        return {}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with session_scope() as s:
        rows = s.scalars(select(WorkflowRun).where(WorkflowRun.dag_run_id.in_([r for _, r in runs])))
        by_id = {row.id: row for row in rows if (row.dag_id, row.dag_run_id) in set(runs)}
        rewrites = s.execute(
            select(WorkflowStepRun.run_id, WorkflowStepRun.output_data)
            .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
            .where(WorkflowStepRun.run_id.in_(list(by_id)), WorkflowStep.step_type == "ai_rewrite")
        )
        captions: dict[uuid.UUID, dict[str, str]] = {}
        for run_id, output in rewrites:
            if output and output.get("caption"):
                captions.setdefault(run_id, {})[str(output.get("target_platform"))] = output["caption"]
        for run in by_id.values():
            item = run.trigger_data or {}
            out[(run.dag_id or "", run.dag_run_id or "")] = {
                "title": item.get("title"),
                "caption": item.get("caption"),
                "media": [m.get("url") for m in item.get("media") or [] if isinstance(m, dict) and m.get("url")],
                "rewrites": captions.get(run.id, {}),
            }
    return out


@router.post("/{dag_id}/{dag_run_id}/{task_id}", response_model=dict[str, Any])
def answer(dag_id: str, dag_run_id: str, task_id: str, body: Decision, caller: CallerDep) -> dict[str, Any]:
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(or_(Workflow.dag_id == dag_id, Workflow.legacy_dag_id == dag_id)))
        team_id, workflow_id = (wf.team_id, wf.id) if wf else (None, None)
        profile = s.get(Profile, caller.profile_id)
        mine = {x for x in (profile.airflow_username, profile.email, str(profile.id)) if x} if profile else set()
        name = (profile.name or profile.email or "") if profile else ""
    caller.require(team_id, "member", f"approval {dag_id}/{dag_run_id}/{task_id}")
    with create_session() as session:
        # Airflow's handler locks TI then HITL row but checks objects it loaded before the lock: lock and load
        # fresh first, in the same order, so a second answer waits here and then sees the first.
        ti = session.scalar(
            select(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == dag_run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == -1,
            )
            .with_for_update(of=TaskInstance)
            .execution_options(populate_existing=True)
        )
        detail = (
            session.scalar(
                select(HITLDetail)
                .where(HITLDetail.ti_id == ti.id)
                .with_for_update(of=HITLDetail)
                .execution_options(populate_existing=True)
            )
            if ti is not None
            else None
        )
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"approval {dag_id}/{dag_run_id}/{task_id} not found")
        ti_state = ti.state
        if detail.responded_at is not None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"approval {dag_id}/{dag_run_id}/{task_id} is already answered"
            )
        if ti_state != TaskInstanceState.AWAITING_INPUT:
            # Airflow's handler would accept it, and the task's park would then overwrite the answer.
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"approval {dag_id}/{dag_run_id}/{task_id} is not waiting for input yet (task state {ti_state}); "
                "retry in a few seconds",
                headers={"Retry-After": "2"},
            )
        listed = {u["id"] for u in detail.assigned_users or []}
        match = sorted(mine & listed)
        if listed and not match:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "you are not one of this step's approvers")
        user = _Approver(match[0] if match else next(iter(mine), str(caller.profile_id)), name)
        payload = UpdateHITLDetailPayload(chosen_options=[body.decision], params_input={})
        update_hitl_detail(dag_id, dag_run_id, task_id, payload, user, session)
    if body.comment and workflow_id is not None:
        _record_comment(workflow_id, dag_run_id, task_id, body.comment, name)
    return {"dag_id": dag_id, "dag_run_id": dag_run_id, "task_id": task_id, "decision": body.decision}


def _record_comment(workflow_id: uuid.UUID, dag_run_id: str, task_id: str, comment: str, who: str) -> None:
    """The comment on the step's run of this workflow only: a run id alone could be another team's, if someone
    triggered a run in Airflow with a chosen id."""
    with session_scope() as s:
        row = s.execute(
            select(WorkflowRun.id, WorkflowStep.id)
            .join(WorkflowStep, WorkflowStep.workflow_id == WorkflowRun.workflow_id)
            .where(
                WorkflowRun.workflow_id == workflow_id,
                WorkflowRun.dag_run_id == dag_run_id,
                WorkflowStep.step_key == task_id,
            )
        ).first()
        if row is None:
            return
        run_id, step_id = row
        # Under the row's lock, and the output only: the resumed task may be recording the decision right now.
        add_step_output(s, run_id, step_id, {"comment": comment, "comment_by": who})
