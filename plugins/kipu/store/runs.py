"""Run history: record an item as a ``workflow_runs`` row (once), and each step's ``workflow_step_runs`` row."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kipu.store.models import WorkflowRun, WorkflowStepRun
from kipu.store.types import utcnow

TERMINAL_RUN = ("completed", "failed", "skipped", "partially_published")


def record_run(
    session: Session,
    workflow_id: uuid.UUID,
    item: dict[str, Any],
    *,
    status: str = "pending",
    error_message: str | None = None,
    dag_id: str | None = None,
) -> tuple[WorkflowRun, bool]:
    """The run row of ``item`` for this workflow, created if new; returns ``(row, created)``.

    Unique on ``(workflow_id, platform_post_id)``: a second record of the same item returns the first row.
    """
    post_id = str(item["platform_post_id"])
    existing = session.scalar(
        select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id, WorkflowRun.platform_post_id == post_id)
    )
    if existing:
        return existing, False
    run = WorkflowRun(
        id=uuid.uuid4(),
        workflow_id=workflow_id,
        trigger_data=item,
        platform_post_id=post_id,
        status=status,
        error_message=error_message,
        dag_id=dag_id,
    )
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:  # a concurrent recorder won the race
        run = session.scalars(
            select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id, WorkflowRun.platform_post_id == post_id)
        ).one()
        return run, False
    return run, True


def get_run(session: Session, run_id: uuid.UUID | str) -> WorkflowRun | None:
    return session.get(WorkflowRun, uuid.UUID(str(run_id)))


def step_run(session: Session, run_id: uuid.UUID, step_id: uuid.UUID) -> WorkflowStepRun | None:
    return session.scalar(
        select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_id == step_id)
    )


def start_step(
    session: Session, run_id: uuid.UUID, step_id: uuid.UUID, input_data: dict[str, Any], attempt: int
) -> WorkflowStepRun:
    """Mark a step running; a retry updates the same row and keeps the first start's output (e.g. a delay target)."""
    row = step_run(session, run_id, step_id)
    if row is None:
        row = WorkflowStepRun(id=uuid.uuid4(), run_id=run_id, step_id=step_id, output_data={})
        session.add(row)
    row.status = "running"
    row.input_data = input_data
    row.attempt = attempt
    row.error_message = None
    row.started_at = row.started_at or utcnow()
    row.completed_at = None
    run = session.get(WorkflowRun, run_id)
    if run is not None and run.status == "pending":
        run.status = "running"
        run.started_at = utcnow()
    session.flush()
    return row


def finish_step(
    session: Session,
    run_id: uuid.UUID,
    step_id: uuid.UUID,
    status: str,
    output: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    row = step_run(session, run_id, step_id)
    if row is None:
        row = WorkflowStepRun(id=uuid.uuid4(), run_id=run_id, step_id=step_id, started_at=utcnow())
        session.add(row)
    row.status = status
    if output is not None:
        row.output_data = {**(row.output_data or {}), **output}
    row.error_message = error
    row.completed_at = utcnow()
    session.flush()


def finish_run(
    session: Session, run_id: uuid.UUID, status: str, error: str | None = None, when: datetime | None = None
) -> None:
    run = session.get(WorkflowRun, run_id)
    if run is None:
        return
    run.status = status
    run.error_message = error
    run.completed_at = when or utcnow()
    session.flush()
