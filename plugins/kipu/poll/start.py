"""The reconciler: every pending run without a started DAG run is started, under its deterministic run id.

A run is marked as asked for in the same transaction that starts it: if a start fails, or the process dies between
two starts, the runs not yet started stay unmarked and the next attempt (a retry, the next cycle) starts them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kipu.store.engine import session_scope
from kipu.store.runs import ask_again_soon, claim_starts

log = logging.getLogger(__name__)

# (dag_id, run_id, conf) -> True if started, False if that run already exists; raises when the start failed.
Trigger = Callable[[str, str, dict[str, Any]], bool]


class StartRefused(Exception):
    """Airflow refused this one run for good (its DAG is gone or not parsed yet): the others still start."""


def start_pending(
    trigger: Trigger, *, limit: int = 500, batch: int = 50, now: datetime | None = None
) -> dict[str, int]:
    """Start up to ``limit`` pending runs, ``batch`` per transaction; counts of started, existing and refused."""
    counts: Counter[str] = Counter()
    while (asked := sum(counts.values())) < limit:
        with session_scope() as session:
            at = now or datetime.now(UTC)
            claimed = claim_starts(session, at, limit=min(batch, limit - asked))
            for wf_run_id, dag_id, run_id in claimed:
                try:
                    counts[
                        "started" if trigger(dag_id, run_id, {"workflow_run_id": str(wf_run_id)}) else "existing"
                    ] += 1
                except StartRefused as exc:  # stays marked: asked for again next cycle if young, else after grace
                    log.warning("Airflow refused to start %s/%s: %s", dag_id, run_id, exc)
                    ask_again_soon(session, wf_run_id, at)
                    counts["refused"] += 1
        if len(claimed) < min(batch, limit - asked):
            break
    return {"started": counts["started"], "existing": counts["existing"], "refused": counts["refused"]}


def trigger_from_task(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
    """Start a DAG run from inside a running task, the way ``TriggerDagRunOperator`` does: through the task's
    supervisor and Airflow's execution API, so the task needs no credentials of its own."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun

    try:
        resp = task_runner.SUPERVISOR_COMMS.send(TriggerDagRun(dag_id=dag_id, run_id=run_id, conf=conf))
    except AirflowRuntimeError as exc:
        status = (exc.error.detail or {}).get("status_code") if isinstance(exc.error.detail, dict) else None
        if isinstance(status, int) and 400 <= status < 500:
            raise StartRefused(f"HTTP {status}: {exc.error.detail.get('message') or exc.error.error}") from None
        raise
    if isinstance(resp, ErrorResponse):
        if resp.error == ErrorType.DAGRUN_ALREADY_EXISTS:
            return False
        raise RuntimeError(f"starting {dag_id}/{run_id} failed: {resp.error}")
    return True
