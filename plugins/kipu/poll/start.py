"""The reconciler: every pending run without a started DAG run is started, under its deterministic run id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kipu.store.engine import session_scope
from kipu.store.runs import claim_starts


def pending_starts(limit: int = 500) -> list[dict[str, Any]]:
    """Kwargs for ``TriggerDagRunOperator.expand_kwargs``: one per pending run, claimed in the store."""
    with session_scope() as session:
        claimed = claim_starts(session, datetime.now(UTC), limit=limit)
    return [
        {"trigger_dag_id": dag_id, "trigger_run_id": run_id, "conf": {"workflow_run_id": str(wf_run_id)}}
        for wf_run_id, dag_id, run_id in claimed
    ]
