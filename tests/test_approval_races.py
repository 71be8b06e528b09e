"""Answers and comments at the same moment: two answers to one approval are never both accepted, and a comment
never erases the decision the resumed task records meanwhile."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from kipu.ingest import enter
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from sqlalchemy import select

from tests.conftest import REPO
from tests.helpers import demo_doc
from tests.hitl import Responder, pending_approval
from tests.test_e2e import DAG_ID, ITEMS, store

pytestmark = pytest.mark.slow
API = "/kipu/api"


def test_two_concurrent_answers_to_one_approval_are_not_both_accepted(
    api: TestClient, roles: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double click (or two approvers at once): Approve and Reject both answer 200 today. Each request loads the
    HITL row before Airflow's handler takes its row locks, and the handler re-reads under the lock without
    refreshing the loaded objects, so the second writer still sees "not answered" and overwrites the first."""
    import airflow.api_fastapi.core_api.routes.public.hitl as hitl_routes
    from airflow.dag_processing.dagbag import DagBag

    store(demo_doc())
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "demo_crosspost"))
        run_id = str(enter(s, wf, [ITEMS["ana-002"]])[0].workflow_run_id)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    original = hitl_routes.update_hitl_detail
    both_loaded = threading.Barrier(2)

    def racing(*args, **kwargs):  # type: ignore[no-untyped-def]
        # Both requests have read the pending row; the locks decide from here. A fixed route that locks before
        # this point lets only one through: the other waits on the lock, so the barrier gives up after 5 s.
        try:
            both_loaded.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return original(*args, **kwargs)

    monkeypatch.setattr(hitl_routes, "update_hitl_detail", racing)
    codes: list[int] = []
    errors: list[BaseException] = []

    def answer_twice() -> None:
        approval = pending_approval(api, roles["viewer"])
        path = f"{API}/approvals/{approval['dag_id']}/{approval['dag_run_id']}/team_review"
        threads = [
            threading.Thread(
                target=lambda d=d: codes.append(
                    api.post(path, json={"decision": d}, headers=roles["owner"]).status_code
                )
            )
            for d in ("Approve", "Reject")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        if 200 not in codes:
            Responder(DAG_ID, None)._fail_parked()

    def helper() -> None:
        try:
            answer_twice()
        except BaseException as exc:
            errors.append(exc)
            Responder(DAG_ID, None)._fail_parked()

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    dag.test(run_conf={"workflow_run_id": run_id})
    thread.join(60)
    if errors:
        raise errors[0]
    from kipu.store.models import WorkflowStep, WorkflowStepRun

    with session_scope() as s:
        decision = s.scalar(
            select(WorkflowStepRun.output_data)
            .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
            .where(WorkflowStep.step_key == "team_review", WorkflowStepRun.run_id == uuid.UUID(run_id))
        )
    assert sorted(codes) == [200, 409], f"both answers were accepted: {codes}; the step recorded {decision}"


def test_a_comment_does_not_erase_the_decision_recorded_meanwhile(
    pg_demo_team: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comment's write holds the step run's row lock: the task's decision, written meanwhile from another
    connection, waits for it and then adds to it (before, the comment wrote back what it had read, without a lock,
    and the decision was lost)."""
    import kipu.api.routes.approvals as approvals
    from kipu.store.models import WorkflowRun, WorkflowStep, WorkflowStepRun
    from kipu.store.runs import finish_step

    store(demo_doc())
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "demo_crosspost"))
        run_id = enter(s, wf, [ITEMS["ana-002"]])[0].workflow_run_id
        step_id = s.scalar(
            select(WorkflowStep.id).where(WorkflowStep.workflow_id == wf.id, WorkflowStep.step_key == "team_review")
        )
        finish_step(s, run_id, step_id, "running", {"awaiting": ["admin"]})  # the step, parked
        wf_id, dag_run_id = wf.id, s.get(WorkflowRun, run_id).dag_run_id

    read, real = threading.Event(), approvals.add_step_output

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        done = real(*args, **kwargs)
        read.set()  # the comment has read and written the row; its transaction stays open a moment
        time.sleep(1.0)
        return done

    monkeypatch.setattr(approvals, "add_step_output", slow)
    comment = threading.Thread(
        target=approvals._record_comment, args=(wf_id, dag_run_id, "team_review", "Looks great", "Owner")
    )
    comment.start()
    assert read.wait(10)
    with session_scope() as other:  # the worker's execute_complete records the decision now
        finish_step(other, run_id, step_id, "completed", {"decision": "Approve", "responded_by": "Owner"})
    comment.join(10)
    with session_scope() as s:
        row = s.scalar(
            select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_id == step_id)
        )
        assert row.status == "completed" and row.output_data.get("decision") == "Approve", (row.status, row.output_data)
        assert row.output_data.get("comment") == "Looks great"
