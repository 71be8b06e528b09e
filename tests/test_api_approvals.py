"""Approvals through /kipu/api: a real ``dag.test()`` run parks at its approval step; the API lists it and
answers it through Airflow's own HITL handler, for listed approvers only."""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from kipu.ingest import enter
from kipu.store.engine import session_scope
from kipu.store.models import Post, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.runs import finish_step
from sqlalchemy import select

from tests.conftest import REPO
from tests.helpers import demo_doc
from tests.hitl import Responder, pending_approval
from tests.test_e2e import DAG_ID, ITEMS, store

pytestmark = pytest.mark.slow
API = "/kipu/api"


def test_an_approver_approves_through_the_api_and_the_item_is_published(api: TestClient, roles: dict) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store(demo_doc())
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "demo_crosspost"))
        run_id = str(enter(s, wf, [ITEMS["ana-002"]])[0].workflow_run_id)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    errors: list[BaseException] = []

    def approve_through_the_api() -> None:
        approval = pending_approval(api, roles["viewer"])
        assert approval["task_id"] == "team_review" and approval["approvers"] == ["admin"]
        path = f"{API}/approvals/{approval['dag_id']}/{approval['dag_run_id']}/team_review"
        assert api.get(f"{API}/approvals", headers=roles["outsider"]).json() == []
        assert api.post(path, json={"decision": "Approve"}, headers=roles["outsider"]).status_code == 404
        assert api.post(path, json={"decision": "Approve"}, headers=roles["viewer"]).status_code == 403
        not_listed = api.post(path, json={"decision": "Approve"}, headers=roles["member"])
        assert not_listed.status_code == 403 and "not one of this step's approvers" in not_listed.text
        assert api.post(path, json={"decision": "Maybe"}, headers=roles["owner"]).status_code == 422
        ok = api.post(path, json={"decision": "Approve", "comment": "Looks great"}, headers=roles["owner"])
        assert ok.status_code == 200, ok.text
        assert api.post(path, json={"decision": "Reject"}, headers=roles["owner"]).status_code == 409  # answered

    def helper() -> None:
        try:
            approve_through_the_api()
        except BaseException as exc:  # reported below; the parked task is failed so dag.test() ends
            errors.append(exc)
            Responder(DAG_ID, None)._fail_parked()

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    result = {"run": dag.test(run_conf={"workflow_run_id": run_id})}  # dag.test() needs the main thread
    thread.join(30)
    if errors:
        raise errors[0]
    assert result["run"].state == "success"
    with session_scope() as s:
        run = s.get(WorkflowRun, uuid.UUID(run_id))
        assert run.status == "completed"
        review = s.scalar(
            select(WorkflowStepRun)
            .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
            .where(WorkflowStepRun.run_id == run.id, WorkflowStep.step_key == "team_review")
        )
        assert review.output_data["decision"] == "Approve" and review.output_data["comment"] == "Looks great"
        (post,) = s.scalars(select(Post).where(Post.workflow_run_id == run.id)).all()
        assert post.status == "published"


def test_an_approval_comment_lands_on_its_own_workflows_run_only(pg_demo_team: dict) -> None:
    """Run ids are not unique across workflows (a run triggered in Airflow may choose its id): the comment goes to
    the step run of the workflow whose approval was answered, never to another workflow's run of that id."""
    from kipu.api.routes.approvals import _record_comment

    store(demo_doc())
    store(demo_doc(slug="demo_second", name="Second"))
    with session_scope() as s:
        mine, other = (
            s.scalar(select(Workflow).where(Workflow.slug == slug)) for slug in ("demo_crosspost", "demo_second")
        )
        mine_run = s.get(WorkflowRun, enter(s, mine, [ITEMS["ana-002"]])[0].workflow_run_id)
        other_run = s.get(WorkflowRun, enter(s, other, [ITEMS["ana-002"]])[0].workflow_run_id)
        other_run.dag_run_id = mine_run.dag_run_id
        mine_id, dag_run_id = mine.id, mine_run.dag_run_id
        runs = {"mine": mine_run.id, "other": other_run.id}
        for wf, run in ((mine, mine_run), (other, other_run)):  # both steps parked, waiting for an answer
            step = s.scalar(
                select(WorkflowStep).where(WorkflowStep.workflow_id == wf.id, WorkflowStep.step_key == "team_review")
            )
            finish_step(s, run.id, step.id, "running", {"awaiting": ["admin"]})
    _record_comment(mine_id, dag_run_id, "team_review", "Looks great", "Ana")
    with session_scope() as s:
        comments = {
            who: [
                r.output_data.get("comment")
                for r in s.scalars(select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id))
                if r.output_data and "comment" in r.output_data
            ]
            for who, run_id in runs.items()
        }
    assert comments == {"mine": ["Looks great"], "other": []}, comments
