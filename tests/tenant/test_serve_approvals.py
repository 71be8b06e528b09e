"""Class 8, the last case: approving through ``kipu api serve`` (the /kipu app alone) works as under Airflow's API
server. It answered 500 "Auth Manager has not been initialized" before."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from kipu.ingest import enter
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from sqlalchemy import select

from tests.conftest import REPO, use_store
from tests.helpers import demo_doc
from tests.hitl import Responder
from tests.tenant.conftest import Server
from tests.test_e2e import ITEMS, store

pytestmark = pytest.mark.slow
# A DAG of its own: the Airflow metadata database is shared by the session, and other tests expect the demo DAG
# not to be registered there.
SLUG = "via_kipu_serve"
DAG_ID = f"kipu.demo.{SLUG}"


def test_an_approval_answered_through_kipu_api_serve(kipu_serve: Server) -> None:
    from airflow.dag_processing.dagbag import DagBag

    use_store(kipu_serve.store)
    store(demo_doc(slug=SLUG))
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == SLUG))
        run_id = str(enter(s, wf, [ITEMS["ana-002"]])[0].workflow_run_id)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    api = f"{kipu_serve.url}/kipu/api/approvals"
    answers: list[httpx.Response] = []

    def approve() -> None:
        try:
            deadline = time.monotonic() + 240
            pending: list = []
            while not pending and time.monotonic() < deadline:
                time.sleep(0.5)
                pending = httpx.get(api, headers=kipu_serve.tokens["viewer"], timeout=10).json()
            (approval,) = pending
            time.sleep(6)  # Airflow 3.3.2 races an answer within the same scheduler beat as the park
            path = f"{api}/{approval['dag_id']}/{approval['dag_run_id']}/team_review"
            answers.append(
                httpx.post(path, json={"decision": "Approve"}, headers=kipu_serve.tokens["owner"], timeout=30)
            )
        finally:
            if not answers or answers[-1].status_code != 200:
                Responder(DAG_ID, None)._fail_parked()

    helper = threading.Thread(target=approve, daemon=True)
    helper.start()
    run = dag.test(run_conf={"workflow_run_id": run_id})
    helper.join(30)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    assert run.state == "success"
    assert "Auth Manager has not been initialized" not in kipu_serve.log_text()
