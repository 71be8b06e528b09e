"""Run history in the store: the rows an item's entry writes (``ingest`` decides what to write), claiming starts,
and each step's ``workflow_step_runs`` row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from kipu.naming import run_id_for
from kipu.store.models import Workflow, WorkflowRun, WorkflowStepRun
from kipu.store.types import utcnow

TERMINAL_RUN = ("completed", "failed", "skipped", "partially_published")


def insert_runs(session: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """INSERT ... ON CONFLICT (workflow_id, platform_post_id) DO NOTHING in one statement; returns the ids inserted.

    The unique key makes recording race-safe: a concurrent webhook and poll of the same post insert one row.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the store runs on PostgreSQL or SQLite only
        raise NotImplementedError(f"the Kipu store does not support {dialect}")
    table = WorkflowRun.__table__
    stmt = insert(table).on_conflict_do_nothing(index_elements=["workflow_id", "platform_post_id"])
    return set(session.execute(stmt.returning(table.c.id), rows).scalars())


def run_rows(
    workflow_id: uuid.UUID,
    items: list[dict[str, Any]],
    *,
    dag_id: str | None,
    source: str,
    skip_reasons: dict[str, str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``workflow_runs`` rows for new items (one per post id). An item with a skip reason (it failed the trigger
    filters) is stored as ``skipped`` with the reason, so it is visible and never re-run."""
    reasons = skip_reasons or {}
    now = now or utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        post_id = str(item["platform_post_id"])
        reason = reasons.get(post_id)
        rows.setdefault(
            post_id,
            {
                "id": uuid.uuid4(),
                "workflow_id": workflow_id,
                "trigger_data": item,
                "platform_post_id": post_id,
                "status": "skipped" if reason else "pending",
                "error_message": f"trigger filter: {reason}" if reason else None,
                "completed_at": now if reason else None,
                "started_at": now,
                "dag_id": dag_id,
                "source": source,
            },
        )
    return list(rows.values())


# A run asked for less than this long ago is probably queued in Airflow and is left alone.
START_GRACE = timedelta(minutes=10)
# Airflow refuses a start when the DAG is not parsed yet, typically a workflow saved moments before its first items:
# such a run is asked for again at the next cycle while it is young, not after the whole grace.
REFUSED_RETRY_AFTER = timedelta(seconds=30)
REFUSED_RETRY_WHILE = timedelta(minutes=15)


def claim_starts(
    session: Session,
    now: datetime,
    *,
    run_ids: list[uuid.UUID] | None = None,
    grace: timedelta = START_GRACE,
    limit: int = 500,
) -> list[tuple[uuid.UUID, str, str]]:
    """Pending runs to start now, as ``(workflow_run_id, dag_id, run_id)``; each is marked as asked for.

    A run asked for less than ``grace`` ago is left alone (it is probably queued); an older one is asked for again,
    which is a no-op if its DAG run exists, because the Airflow run id is deterministic.
    """
    wr = WorkflowRun
    startable = and_(
        wr.status == "pending",
        wr.dag_id.is_not(None),
        or_(wr.start_requested_at.is_(None), wr.start_requested_at < now - grace),
        *([wr.id.in_(run_ids)] if run_ids is not None else []),
    )
    # The teams in turn: each team's oldest run, then each one's second, ...; a team alone still gets the whole
    # cycle, and one team's backlog never holds up another team's new item (a window function takes no row locks:
    # the outer select does).
    rank = func.row_number().over(partition_by=Workflow.team_id, order_by=(wr.started_at, wr.id)).label("rank")
    ranked = select(wr.id, wr.started_at, rank).join(Workflow, Workflow.id == wr.workflow_id).where(startable)
    fair = ranked.subquery()
    ids = select(fair.c.id).order_by(fair.c.rank, fair.c.started_at).limit(limit)
    query = select(wr).where(wr.id.in_(ids), startable).order_by(wr.started_at)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for run in session.scalars(query):
        run.start_requested_at = now
        run.dag_run_id = run_id_for(run.id)
        claimed.append((run.id, run.dag_id or "", run.dag_run_id))
    session.flush()
    return claimed


def ask_again_soon(session: Session, run_id: uuid.UUID, now: datetime) -> bool:
    """After Airflow refused to start ``run_id``: let the next cycle ask again if the run was recorded within
    ``REFUSED_RETRY_WHILE`` (its DAG is probably about to be parsed); an older one waits the usual grace."""
    run = session.get(WorkflowRun, run_id)
    if run is None or run.started_at is None or now - run.started_at >= REFUSED_RETRY_WHILE:
        return False
    run.start_requested_at = now - START_GRACE + REFUSED_RETRY_AFTER
    return True


def get_run(session: Session, run_id: uuid.UUID | str) -> WorkflowRun | None:
    return session.get(WorkflowRun, uuid.UUID(str(run_id)))


def step_run(session: Session, run_id: uuid.UUID, step_id: uuid.UUID, *, lock: bool = False) -> WorkflowStepRun | None:
    """A step's run; with ``lock``, read fresh under a row lock, for a read-modify-write that another writer (an
    approval's comment, the task itself) may race."""
    query = select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_id == step_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalar(query)


def add_step_output(session: Session, run_id: uuid.UUID, step_id: uuid.UUID, output: dict[str, Any]) -> bool:
    """Add keys to a step run's output and change nothing else (its status is the task's to set)."""
    row = step_run(session, run_id, step_id, lock=True)
    if row is None:
        return False
    row.output_data = {**(row.output_data or {}), **output}
    session.flush()
    return True


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
    row = step_run(session, run_id, step_id, lock=True)
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
