"""Record-then-start: the one way an item enters a workflow, whether from a poll, a webhook or by hand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from kipu.factory.builder import dag_id_for
from kipu.filters import trigger_filter_reason
from kipu.specs.items import ContentItem
from kipu.specs.workflow import parse_workflow
from kipu.store.models import Workflow
from kipu.store.runs import record_run
from kipu.store.workflows import workflow_document


class RunStarter(Protocol):
    def trigger(self, dag_id: str, run_id: str, conf: dict) -> bool: ...


def run_id_for(workflow_run_id: uuid.UUID | str) -> str:
    """The Airflow run id of a recorded item: deterministic, so a second start is a no-op."""
    return f"kipu__{workflow_run_id}"


@dataclass
class Recorded:
    workflow_run_id: uuid.UUID
    dag_id: str
    created: bool
    skipped_reason: str | None
    status: str

    @property
    def conf(self) -> dict[str, str]:
        return {"workflow_run_id": str(self.workflow_run_id)}


def record_item(session: Session, workflow: Workflow, item: ContentItem) -> Recorded:
    """Store the item as a run row (once); an item that fails the trigger filters is stored as skipped."""
    spec = parse_workflow(workflow_document(workflow, list(workflow.steps), None))
    reason = trigger_filter_reason(spec.trigger.filters, item)
    run, created = record_run(
        session,
        workflow.id,
        item.model_dump(mode="json"),
        status="skipped" if reason else "pending",
        error_message=f"trigger filter: {reason}" if reason else None,
        dag_id=dag_id_for(workflow.slug or ""),
    )
    return Recorded(
        run.id,
        dag_id_for(workflow.slug or ""),
        created,
        reason if created else run.error_message,
        run.status or "pending",
    )


def start(starter: RunStarter, recorded: Recorded) -> bool:
    """Start the recorded item's DAG run; False if it already exists."""
    if recorded.status == "skipped":
        return False
    return starter.trigger(recorded.dag_id, run_id_for(recorded.workflow_run_id), recorded.conf)
