"""A run's outcome written to ``workflow_runs``: by the last task of a workflow DAG with branches, or by the step
in which the item ends."""

from __future__ import annotations

import uuid
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy import select

from kipu.operators.base import resolve_run
from kipu.store.engine import session_scope
from kipu.store.models import WorkflowStep, WorkflowStepRun
from kipu.store.posts import posts_for_run
from kipu.store.runs import finish_run


def run_outcome(
    step_rows: list[tuple[str, WorkflowStepRun]],
    published: int,
    failed_posts: int,
    failed_tasks: list[str] | None = None,
) -> tuple[str, str | None]:
    """``(status, reason)`` of a run from its step rows, its posts and the Airflow task states."""
    failed = [(key, r) for key, r in step_rows if r.status == "failed"]
    if failed:
        key, row = failed[0]
        reason = f"step '{key}' failed: {row.error_message}"
        return ("partially_published" if published else "failed"), reason
    if failed_tasks:  # failed outside Kipu's own bookkeeping: killed, timed out, marked failed in the UI
        reason = f"task '{failed_tasks[0]}' failed in Airflow; see its log"
        return ("partially_published" if published else "failed"), reason
    if failed_posts and published:
        return "partially_published", f"{failed_posts} target(s) failed"
    dropped = [(r.output_data or {}).get("dropped") for _, r in step_rows if (r.output_data or {}).get("dropped")]
    if dropped and not published:
        return "skipped", dropped[0]
    return "completed", None


def run_note(title: str | None, status: str, reason: str | None, posts: list[Any]) -> str:
    """The DAG run's note, so Airflow's runs list reads like a content log: "Market tour — published to 2 (x,
    bluesky)", "Sponsored — filtered: hashtag #ad is present", "Draft — rejected by ana"."""
    name = (title or "item").strip().splitlines()[0][:80] if (title or "").strip() else "item"
    done = [p.platform for p in posts if p.status in ("published", "awaiting_moderation")]
    if status == "completed":
        outcome = f"published to {len(done)} ({', '.join(done)})" if done else "completed, nothing to publish"
    elif status == "skipped" and reason:
        outcome = reason.replace("filtered out by", "filtered by")
    elif status == "partially_published":
        outcome = f"published to {len(done)} ({', '.join(done)}); {reason}"
    else:
        outcome = f"{status}: {reason}" if reason else status
    return f"{name} — {outcome}"[:1000]


FAILED_STATES = ("failed", "upstream_failed")
# A run that ends so fails its DAG run too.
FAILED_OUTCOMES = ("failed", "partially_published")


def _note(op: BaseOperator, context: Context, note: str) -> None:
    """Best effort: a run whose note cannot be set has still ended as recorded."""
    from kipu.airflow_api import from_connection

    api = from_connection()
    if api is None:
        op.log.info("No kipu_airflow_api connection: the run's note is not set (%s)", note)
        return
    try:
        api.set_note(op.dag_id, context["dag_run"].run_id, note)
        op.log.info("Run note: %s", note)
    except Exception as exc:  # any failure (unreachable, refused) only costs the note
        op.log.warning("Could not set the run's note: %s", exc)
    finally:
        api.close()


def finalize_run(
    op: BaseOperator, context: Context, workflow_id: str, failed_tasks: list[str]
) -> tuple[str, str | None]:
    """Write the run's outcome to ``workflow_runs`` and the DAG run's note; ``(status, reason)``. The finalize task
    calls it, or, in a workflow without branches, the task in which the item ends (``KipuStepOperator``)."""
    with session_scope() as session:
        state = resolve_run(context, workflow_id, None, op.dag_id, session)
        rows = list(
            session.execute(
                select(WorkflowStep.step_key, WorkflowStepRun)
                .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
                .where(WorkflowStepRun.run_id == state.run_id)
                .order_by(WorkflowStep.order_index)
            )
        )
        posts = posts_for_run(session, state.run_id)
        # Accepted and in the platform's moderation counts as delivered: it is settled later, never re-posted.
        published = sum(1 for p in posts if p.status in ("published", "awaiting_moderation"))
        failed_posts = sum(1 for p in posts if p.status == "failed")
        status, reason = run_outcome(rows, published, failed_posts, failed_tasks)
        finish_run(session, uuid.UUID(str(state.run_id)), status, reason)
    op.log.info("Run %s ended %s%s", state.run_id, status, f": {reason}" if reason else "")
    _note(op, context, run_note(state.item.title or state.item.caption, status, reason, posts))
    return status, reason


class KipuFinalizeOperator(BaseOperator):
    """Runs whatever happened upstream (``all_done``) and fails the DAG run when the item failed. Only workflows
    with branches have it: in a straight line, the task in which the item ends finalizes the run itself."""

    ui_color = "#dddddd"

    def __init__(self, *, workflow_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.workflow_id = workflow_id

    def _failed_tasks(self, context: Context) -> list[str]:
        run_id = context["dag_run"].run_id
        try:
            states = context["ti"].get_task_states(dag_id=self.dag_id, run_ids=[run_id]).get(run_id, {})
        except Exception as exc:  # the store's view still stands if Airflow cannot be asked
            self.log.warning("Could not read task states: %s", exc)
            return []
        return [t for t, st in states.items() if t != self.task_id and st in FAILED_STATES]

    def execute(self, context: Context) -> dict[str, Any]:
        status, reason = finalize_run(self, context, self.workflow_id, self._failed_tasks(context))
        if status in FAILED_OUTCOMES:
            raise AirflowFailException(f"item ended {status}: {reason}")
        return {"status": status, "reason": reason}
