"""``KipuPostNotifier``: an Airflow notifier on every publish task's success and failure callbacks; it records a
``post.published`` or ``post.failed`` event per target of the step (sent later, as digests, by ``kipu_notify``)."""

from __future__ import annotations

import uuid
from typing import Any

from airflow.sdk import BaseNotifier
from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.notify.events import airflow_url, clip, emit, task_url
from kipu.store.models import Post, Workflow, WorkflowRun


def post_events(session: Session, dag_id: str, run_id: str, task_id: str, step_id: str | None) -> int:
    """Events for the step's settled posts in this DAG run; each post's outcome is told once (a failure once per
    attempt count, so a manual retry that fails again is told again)."""
    if not step_id:
        return 0
    rows = session.execute(
        select(Post, Workflow.name)
        .join(WorkflowRun, WorkflowRun.id == Post.workflow_run_id)
        .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
        .where(WorkflowRun.dag_id == dag_id, WorkflowRun.dag_run_id == run_id, Post.step_id == uuid.UUID(step_id))
    ).all()
    made = 0
    for post, workflow in rows:
        base = {
            "post_id": str(post.id),
            "platform": post.platform,
            "workflow": workflow,
            "caption": clip(post.caption, 200),
            "post_url": airflow_url(f"/kipu/api/posts/{post.id}"),
        }
        if post.status == "published":
            data = {**base, "url": post.platform_url, "platform_post_id": post.platform_post_id}
            made += emit(session, post.team_id, "post.published", data, f"post.published:{post.id}")
        elif post.status == "failed":
            data = {**base, "error": clip(post.error_message), "log_url": task_url(dag_id, run_id, task_id)}
            made += emit(session, post.team_id, "post.failed", data, f"post.failed:{post.id}:{post.attempts}")
    return made


class KipuPostNotifier(BaseNotifier):
    """Fires from ``on_success_callback`` and ``on_failure_callback`` of a publish task (its log says so)."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        from kipu.store.engine import session_scope

        ti, task = context["ti"], context["task"]
        with session_scope() as session:
            made = post_events(session, ti.dag_id, ti.run_id, ti.task_id, getattr(task, "step_id", None))
        self.log.info("Kipu notifications: %d post event(s) queued for the team's channels", made)
