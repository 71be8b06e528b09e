"""The one entry for a content item, whatever its source (a poll, a webhook, a manual run, a backfill): filter it by
the trigger, record it once (unique on ``(workflow_id, platform_post_id)``), and start its DAG run under a
deterministic run id. ``Entered`` is the one result type.

A poll cycle enters thousands of items in one statement (``enter_batch``); a webhook or a manual run enters one and
starts it at once (``enter`` + ``start``). A start that fails is retried by ``kipu_poll``'s reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.filters import trigger_filter_reason
from kipu.specs.items import ContentItem
from kipu.specs.triggers import TriggerFilters, parse_trigger
from kipu.store.models import Workflow, WorkflowRun
from kipu.store.runs import claim_starts, insert_runs, run_rows

SKIP_PREFIX = "trigger filter: "


class RunStarter(Protocol):
    def trigger(self, dag_id: str, run_id: str, conf: dict) -> bool: ...


@dataclass(frozen=True)
class Entered:
    """An item after its entry: its run row, whether this entry created it, and why it was skipped if it was."""

    workflow_run_id: uuid.UUID
    platform_post_id: str
    dag_id: str
    created: bool
    status: str
    skipped_reason: str | None = None

    @property
    def conf(self) -> dict[str, str]:
        return {"workflow_run_id": str(self.workflow_run_id)}


@dataclass
class Entry:
    """Items for one workflow: what entering needs of it (its id, DAG id and trigger filters)."""

    workflow_id: uuid.UUID
    dag_id: str
    filters: TriggerFilters
    items: Sequence[ContentItem] = field(default_factory=list)

    @classmethod
    def of(cls, workflow: Any, items: Sequence[ContentItem]) -> Entry:
        """For a workflow row (ORM or Core) with ``id``, ``dag_id`` and ``trigger_config``."""
        return cls(workflow.id, workflow.dag_id or "", parse_trigger(workflow.trigger_config).filters, items)


def enter_batch(session: Session, entries: Sequence[Entry], source: str, now: datetime | None = None) -> list[Entered]:
    """Filter and record every item of every entry in the caller's transaction: one INSERT ... ON CONFLICT DO
    NOTHING for all of them, so a thousand sources cost a handful of statements. Items that fail their trigger's
    filters are stored as ``skipped`` with the reason, visible and never run."""
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        reasons = {i.platform_post_id: r for i in entry.items if (r := trigger_filter_reason(entry.filters, i))}
        rows += run_rows(
            entry.workflow_id,
            [i.model_dump(mode="json") for i in entry.items],
            dag_id=entry.dag_id,
            source=source,
            skip_reasons=reasons,
            now=now,
        )
    created = insert_runs(session, rows)
    wanted = {(r["workflow_id"], r["platform_post_id"]) for r in rows}
    dag_ids = {e.workflow_id: e.dag_id for e in entries}
    out: list[Entered] = []
    if not wanted:
        return out
    stored = session.execute(
        select(
            WorkflowRun.id,
            WorkflowRun.workflow_id,
            WorkflowRun.platform_post_id,
            WorkflowRun.status,
            WorkflowRun.error_message,
        ).where(
            WorkflowRun.workflow_id.in_({w for w, _ in wanted}),
            WorkflowRun.platform_post_id.in_({p for _, p in wanted}),
        )
    )
    for run_id, wf_id, post_id, status, error in stored:
        if (wf_id, post_id) not in wanted:
            continue
        skipped = error.removeprefix(SKIP_PREFIX) if status == "skipped" and error else None
        out.append(Entered(run_id, post_id, dag_ids[wf_id], run_id in created, status or "pending", skipped))
    return out


def enter(session: Session, workflow: Workflow, items: Sequence[ContentItem], source: str = "manual") -> list[Entered]:
    """``enter_batch`` for one workflow's items (a webhook, a manual run, a conf item)."""
    entered = {e.platform_post_id: e for e in enter_batch(session, [Entry.of(workflow, items)], source)}
    return [entered[i.platform_post_id] for i in items]


def start(starter: RunStarter, session: Session, entered: Entered) -> bool:
    """Start the entered item's DAG run now; False if it exists or is not pending.

    The claim is committed with the caller's transaction; if the start call fails, the poll cycle's reconciler starts
    the run later under the same deterministic run id.
    """
    claimed = claim_starts(session, datetime.now(UTC), run_ids=[entered.workflow_run_id])
    if not claimed:
        return False
    _, dag_id, run_id = claimed[0]
    return starter.trigger(dag_id, run_id, entered.conf)


@dataclass
class Started:
    created: int = 0
    duplicates: int = 0
    started: int = 0


def enter_and_start(workflow_ids: Sequence[uuid.UUID], item: ContentItem, source: str) -> Started:
    """Enter one item for every workflow that watches its account, then start each new run (a webhook delivery)."""
    import logging

    from kipu.api.starter import AirflowStarter
    from kipu.store.engine import session_scope

    summary = Started()
    with session_scope() as s:
        workflows = list(s.scalars(select(Workflow).where(Workflow.id.in_(workflow_ids))))
        entered = [e for wf in workflows for e in enter(s, wf, [item], source)]
    for one in entered:
        summary.created += one.created
        summary.duplicates += not one.created
        try:
            with session_scope() as s:
                summary.started += bool(start(AirflowStarter(), s, one))
        except Exception as exc:  # recorded: kipu_poll's reconciler starts it
            logging.getLogger(__name__).warning(
                "starting %s failed (%s); kipu_poll will start it", one.workflow_run_id, type(exc).__name__
            )
    return summary
