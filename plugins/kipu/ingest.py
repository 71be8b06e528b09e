"""Record-then-start: the one way an item enters a workflow, whether from a poll, a webhook or by hand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session

from kipu.filters import trigger_filter_reason
from kipu.specs.items import ContentItem
from kipu.specs.triggers import parse_trigger
from kipu.store.models import Workflow
from kipu.store.runs import claim_starts, record_items, run_id_for

__all__ = ["Recorded", "RunStarter", "record_item", "run_id_for", "start"]


class RunStarter(Protocol):
    def trigger(self, dag_id: str, run_id: str, conf: dict) -> bool: ...


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


def record_item(session: Session, workflow: Workflow, item: ContentItem, source: str = "manual") -> Recorded:
    """Store the item as a run row (once); an item that fails the trigger filters is stored as skipped."""
    reason = trigger_filter_reason(parse_trigger(workflow.trigger_config).filters, item)
    dag_id = workflow.dag_id or ""
    post_id = item.platform_post_id
    (rec,) = record_items(
        session,
        workflow.id,
        [item.model_dump(mode="json")],
        dag_id=dag_id,
        source=source,
        skip_reasons={post_id: reason} if reason else None,
    )
    skipped = (
        rec.error_message.removeprefix("trigger filter: ") if rec.status == "skipped" and rec.error_message else None
    )
    return Recorded(rec.workflow_run_id, dag_id, rec.created, skipped, rec.status)


def start(starter: RunStarter, session: Session, recorded: Recorded) -> bool:
    """Start the recorded item's DAG run now (webhook and manual paths); False if it exists or is not pending.

    The claim is committed with the caller's transaction; if the start call fails, the poll cycle's
    reconciler starts the run later under the same deterministic run id.
    """
    claimed = claim_starts(session, datetime.now(UTC), run_ids=[recorded.workflow_run_id])
    if not claimed:
        return False
    _, dag_id, run_id = claimed[0]
    return starter.trigger(dag_id, run_id, recorded.conf)
