"""The step-operator base: resolves the run and its item, and records the step's row around ``run_step``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    DownstreamTasksSkipped,
    TaskDeferralTimeout,
    TaskDeferred,
)
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.ingest import enter
from kipu.specs.items import ContentItem, given_item
from kipu.specs.workflow import format_errors
from kipu.store.engine import session_scope
from kipu.store.models import Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.runs import finish_step, get_run, start_step

try:  # Airflow 3.3 parks HITL tasks with this exception; it is not a failure.
    from airflow.sdk.exceptions import TaskAwaitingInput
except ImportError:  # pragma: no cover
    TaskAwaitingInput = TaskDeferred  # type: ignore[misc,assignment]


@dataclass
class RunState:
    """What a step sees: the run, its item, and the captions rewritten so far (per platform)."""

    run_id: uuid.UUID
    workflow_id: uuid.UUID
    team_id: uuid.UUID | None
    item: ContentItem
    captions: dict[str, str] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)


def _conf(context: Context) -> dict[str, Any]:
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    params = context.get("params") or {}
    for key in ("workflow_run_id", "item"):
        if not conf.get(key) and params.get(key):
            conf[key] = params[key]
    return conf


def resolve_run(
    context: Context, workflow_id: str, team_id: str | None, dag_id: str, session: Session | None = None
) -> RunState:
    """The run this DAG run processes; a run started without a ``workflow_run_id`` is recorded now. In ``session``
    when given (one transaction with what the caller writes next), else in a transaction of its own."""
    if session is None:
        with session_scope() as own:
            return resolve_run(context, workflow_id, team_id, dag_id, own)
    conf = _conf(context)
    wf_id = uuid.UUID(workflow_id)
    run = get_run(session, conf["workflow_run_id"]) if conf.get("workflow_run_id") else None
    if run is None:
        item = dict(conf.get("item") or {})
        if not item:
            raise ValueError("dag_run.conf.item is required: the content item this run processes")
        try:
            given = given_item(item, f"manual:{context['dag_run'].run_id}")
        except ValidationError as exc:  # bad input: say which field, and do not retry
            problems = "; ".join(format_errors(exc, "item"))
            raise AirflowFailException(f"dag_run.conf: {problems}") from None
        workflow = session.get(Workflow, wf_id)
        if workflow is None:
            raise ValueError(f"workflow {wf_id} no longer exists")
        (entered,) = enter(session, workflow, [given], source="manual")
        if entered.skipped_reason is not None:  # the same trigger filters as every other entry
            session.commit()
            raise AirflowSkipException(f"trigger filter: {entered.skipped_reason}")
        run = session.get(WorkflowRun, entered.workflow_run_id)
    if run.workflow_id != wf_id:
        raise ValueError(f"workflow_run_id {run.id} belongs to another workflow")
    run.dag_id, run.dag_run_id = dag_id, context["dag_run"].run_id
    item = ContentItem.model_validate(run.trigger_data or {})
    rewrites = session.execute(
        select(WorkflowStepRun.output_data)
        .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
        .where(
            WorkflowStepRun.run_id == run.id,
            WorkflowStepRun.status == "completed",
            WorkflowStep.step_type == "ai_rewrite",
        )
        .order_by(WorkflowStepRun.completed_at)
    ).scalars()
    captions = {o["target_platform"]: o["caption"] for o in rewrites if o and "caption" in o}
    return RunState(
        run_id=run.id,
        workflow_id=wf_id,
        team_id=uuid.UUID(team_id) if team_id else None,
        item=item,
        captions=captions,
    )


class KipuStepOperator(BaseOperator):
    """Base of every Kipu step; subclasses implement ``run_step``."""

    template_fields = ()
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        workflow_id: str,
        step_id: str,
        step_config: dict[str, Any],
        team_id: str | None = None,
        workflow_timezone: str = "UTC",
        ends_run: bool = False,
        last_step: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.step_config = step_config
        self.team_id = team_id
        self.workflow_timezone = workflow_timezone
        # A workflow without branches has no finalize task: the task in which its item ends finalizes the run (one
        # task execution less per item). ``ends_run`` marks such a DAG's steps, ``last_step`` its last one.
        self.ends_run = ends_run
        self.last_step = last_step
        self.item_ended = False  # set at run time by a step that drops the item (a filter)

    def resolve_run(self, context: Context) -> RunState:
        return resolve_run(context, self.workflow_id, self.team_id, self.dag_id)

    # -- bookkeeping ----------------------------------------------------------------------------------
    def step_input(self, state: RunState) -> dict[str, Any]:
        return {"platform_post_id": state.item.platform_post_id, "config": self.step_config}

    @contextmanager
    def recorded(self, context: Context, state: RunState | None = None) -> Iterator[RunState]:
        """The step's row, running while the body runs, then completed, skipped or failed as it ends. Without a
        ``state`` the run is resolved in the same transaction that starts the step (one round of commits less)."""
        step_id = uuid.UUID(self.step_id)
        with session_scope() as session:
            if state is None:
                state = resolve_run(context, self.workflow_id, self.team_id, self.dag_id, session)
            row = start_step(session, state.run_id, step_id, self.step_input(state), context["ti"].try_number)
            state.output = dict(row.output_data or {})
        try:
            yield state
        except (TaskDeferred, TaskAwaitingInput):
            self._save_output(state)
            raise
        except DownstreamTasksSkipped:  # how Airflow 3 short-circuits: this step itself succeeded
            with session_scope() as session:
                finish_step(session, state.run_id, step_id, "completed", state.output)
            raise
        except AirflowSkipException as exc:
            with session_scope() as session:
                finish_step(session, state.run_id, step_id, "skipped", state.output, str(exc) or None)
            raise
        except Exception as exc:
            with session_scope() as session:
                finish_step(session, state.run_id, step_id, "failed", state.output, f"{type(exc).__name__}: {exc}")
            raise
        else:
            with session_scope() as session:
                finish_step(session, state.run_id, step_id, "completed", state.output)

    def _save_output(self, state: RunState) -> None:
        with session_scope() as session:
            row = session.scalar(
                select(WorkflowStepRun).where(
                    WorkflowStepRun.run_id == state.run_id, WorkflowStepRun.step_id == uuid.UUID(self.step_id)
                )
            )
            if row is not None:
                row.output_data = dict(state.output)

    def execute(self, context: Context) -> Any:
        return self._ending(context, lambda: self.step_execute(context))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        return self._ending(
            context, lambda: super(KipuStepOperator, self).resume_execution(next_method, next_kwargs, context)
        )

    def step_execute(self, context: Context) -> Any:
        with self.recorded(context) as state:
            return self.run_step(context, state)

    # -- finalizing in the step where the item ends ------------------------------------------------------------
    def _ending(self, context: Context, call: Any) -> Any:
        """Run the step (``call``); with ``ends_run``, finalize the run when the item ends in this task: it was the
        last step, the item was dropped or rejected here, or this step failed for good."""
        if not self.ends_run:
            return call()
        self.item_ended = False
        try:
            result = call()
        except (TaskDeferred, TaskAwaitingInput):
            raise
        except (AirflowSkipException, DownstreamTasksSkipped):
            self._finalize(context, [])
            raise
        except Exception as exc:
            if self._final_attempt(context, exc):
                try:
                    self._finalize(context, [self.task_id])
                except Exception as inner:  # the step's own error is the one to report
                    self.log.warning("Could not record the run's outcome: %s", inner)
            raise
        if self.last_step or self.item_ended:
            status, reason = self._finalize(context, [])
            from kipu.operators.finalize import FAILED_OUTCOMES

            if status in FAILED_OUTCOMES:
                raise AirflowFailException(f"item ended {status}: {reason}")
        return result

    def _final_attempt(self, context: Context, exc: BaseException) -> bool:
        if isinstance(exc, (AirflowFailException, AirflowSensorTimeout, TaskDeferralTimeout)):
            return True
        ti = context["ti"]
        max_tries = getattr(ti, "max_tries", None)
        return ti.try_number > (self.retries if max_tries is None else max_tries)

    def _finalize(self, context: Context, failed_tasks: list[str]) -> tuple[str, str | None]:
        from kipu.operators.finalize import finalize_run

        return finalize_run(self, context, self.workflow_id, failed_tasks)

    def run_step(self, context: Context, state: RunState) -> Any:
        raise NotImplementedError
