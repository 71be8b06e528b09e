"""The DAG factory through a real DagBag: ids, tags, docs, a broken workflow, and the snapshot fallback."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from kipu.store.engine import session_scope
from kipu.store.models import Workflow, WorkflowStep
from kipu.store.workflows import save_workflow
from sqlalchemy import select

from tests.conftest import REPO, use_store
from tests.helpers import demo_doc


def dagbag(path: str = "dags", workflows_only: bool = True):  # type: ignore[no-untyped-def]
    """Every shard file parsed by a real DagBag, as the dag-processor does; the engine's DAGs left out unless
    ``workflows_only`` is False."""
    from airflow.dag_processing.dagbag import DagBag
    from kipu.naming import ENGINE_DAG_IDS

    bag = DagBag(dag_folder=str(REPO / path))
    if workflows_only:
        for dag_id in ENGINE_DAG_IDS:
            bag.dags.pop(dag_id, None)
    return bag


def _store_three(broken: bool = True) -> None:
    with session_scope() as s:
        save_workflow(s, demo_doc())
        save_workflow(s, demo_doc(name="Second", slug="second"))
        save_workflow(s, demo_doc(name="Paused", slug="paused", status="paused"))
        if broken:
            wf = save_workflow(s, demo_doc(name="Broken", slug="broken"))
            # Written around the validation, as an old version or a manual edit could.
            step = s.scalar(
                select(WorkflowStep).where(WorkflowStep.workflow_id == wf.id, WorkflowStep.step_key == "cool_down")
            )
            step.config = {"config": {"delay_until_time": "25:00"}}


def test_dagbag_loads_every_active_workflow_without_import_errors(demo_team: dict) -> None:
    _store_three()
    bag = dagbag(workflows_only=False)
    assert bag.import_errors == {}
    engine = {"kipu_poll", "kipu_maintenance", "kipu_awaiting", "kipu_notify", "kipu_shards"}
    workflows = {"kipu.demo.demo_crosspost", "kipu.demo.second", "kipu.demo.paused", "kipu.demo.broken"}
    assert set(bag.dag_ids) == workflows | engine
    # Every shard served from the store in budget: kipu_shards_status.py holds the status DAG, no import error.
    assert bag.dags["kipu_shards"].is_paused_upon_creation and "Kipu's DAG shards" in bag.dags["kipu_shards"].doc_md
    # A paused workflow keeps its DAG, and so its history in view, paused in Airflow.
    assert "kipu:paused" in bag.dags["kipu.demo.paused"].tags and bag.dags["kipu.demo.paused"].is_paused_upon_creation
    assert not bag.dags["kipu.demo.second"].is_paused_upon_creation
    maintenance = bag.dags["kipu_maintenance"]
    assert maintenance.max_active_runs == 1
    assert set(maintenance.task_ids) == {"refresh_expiring_tokens", "renew_youtube_leases", "report_reconnects"}
    assert bag.dags["kipu_awaiting"].task_ids == ["settle_awaiting_posts"]
    poll = bag.dags["kipu_poll"]
    assert poll.max_active_runs == 1 and type(poll.timetable).__name__ == "DeltaTriggerTimetable"
    assert poll.timetable.delta == timedelta(minutes=1)
    assert set(poll.task_ids) == {"poll_sources", "start_runs"}
    dag = bag.dags["kipu.demo.demo_crosspost"]
    assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable"
    assert set(dag.tags) == {"kipu", "team:demo", "feed", "outbox"}
    assert dag.default_args["owner"] == "owner@demo.test"
    assert "rewrite the caption for bluesky" in dag.doc_md and "go to `cool_down`" in dag.doc_md
    assert set(dag.task_ids) == {
        "skip_ads_and_text",
        "rewrite_for_bluesky",
        "long_or_short",
        "cool_down",
        "team_review",
        "quick_pause",
        "publish_outbox",
        "finalize",
    }
    assert dag.get_task("publish_outbox").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("finalize").trigger_rule == "all_done"
    review = dag.get_task("team_review")
    assert review.assigned_users == [{"id": "admin", "name": "Owner"}]
    assert review.defaults == ["Approve"] and review.response_timeout.total_seconds() == 180


def test_broken_workflow_is_its_own_clear_error(demo_team: dict) -> None:
    _store_three()
    broken = dagbag().dags["kipu.demo.broken"]
    assert "kipu:invalid" in broken.tags
    assert "steps[3] (delay 'cool_down').config.delay_until_time: '25:00' is not a valid HH:MM time" in broken.doc_md
    assert broken.task_ids == ["invalid_workflow"]


def test_store_unreachable_serves_last_snapshot(demo_team: dict, store_url: str) -> None:
    _store_three(broken=False)
    served = {"kipu.demo.demo_crosspost", "kipu.demo.second", "kipu.demo.paused"}
    assert set(dagbag().dag_ids) == served
    use_store("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    try:
        assert set(dagbag().dag_ids) == served
    finally:
        use_store(store_url)


def test_parsing_context_builds_only_the_running_dag(demo_team: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _store_three(broken=False)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "kipu.demo.second")
    assert dagbag().dag_ids == ["kipu.demo.second"]


def test_inactive_workflows_have_no_dag(demo_team: dict) -> None:
    _store_three(broken=False)
    with session_scope() as s:
        for wf in s.scalars(select(Workflow)):
            wf.status = "inactive"
    assert dagbag().dag_ids == []


def test_invalid_json_in_store_does_not_break_others(demo_team: dict) -> None:
    _store_three(broken=False)
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "second"))
        wf.trigger_config = {"type": "carrier-pigeon"}
    bag = dagbag()
    assert bag.import_errors == {}
    assert "kipu:invalid" in bag.dags["kipu.demo.second"].tags
    assert "kipu:invalid" not in bag.dags["kipu.demo.demo_crosspost"].tags
    assert os.environ["KIPU_DATABASE_URL"]
    assert uuid.UUID(bag.dags["kipu.demo.demo_crosspost"].get_task("finalize").workflow_id)
