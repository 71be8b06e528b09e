"""Class 1: no slug of any team can take an engine DAG's id; two teams with one slug get two DAGs; existing
workflows keep working after the upgrade (a migration, and run history that still links up)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from kipu.naming import ENGINE_DAG_IDS
from kipu.store.engine import reset_engines, session_scope
from kipu.store.migrate import upgrade
from kipu.store.models import Workflow, WorkflowRun
from kipu.store.workflows import save_workflow

from tests import pg
from tests.conftest import REPO, use_store
from tests.helpers import demo_doc

API = "/kipu/api"


def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_engine_slugs_are_ordinary_workflows_and_the_engine_dags_stay(api, roles: dict) -> None:
    made = {}
    for slug in ("poll", "maintenance", "awaiting"):
        out = api.post(f"{API}/workflows", json=demo_doc(slug=slug, name=f"Mine {slug}"), headers=roles["member"])
        assert out.status_code == 201, out.text
        made[slug] = out.json()["dag_id"]
    assert made == {s: f"kipu.demo.{s}" for s in made}
    bag = dagbag()
    assert bag.import_errors == {}
    assert set(ENGINE_DAG_IDS) | set(made.values()) <= set(bag.dag_ids)
    # The engine DAGs are the engine's: the poll engine's tasks, not a workflow's steps.
    assert set(bag.dags["kipu_poll"].task_ids) == {"poll_sources", "start_runs"}
    assert "kipu:engine" in bag.dags["kipu_maintenance"].tags and "kipu:engine" in bag.dags["kipu_awaiting"].tags


def test_two_teams_with_one_slug_get_two_dags(api, roles: dict) -> None:
    ours = api.post(f"{API}/workflows", json=demo_doc(slug="shared"), headers=roles["member"])
    doc = demo_doc(slug="shared", team="other")
    for s in doc["steps"]:
        s.pop("connection_id", None) if s["type"] != "publish" else s.update(connection_id="outbox:theirs")
        if s["type"] == "approval":
            s["config"]["approvers"] = ["boss@other.test"]
    doc["trigger"] = {"type": "manual"}
    theirs = api.post(f"{API}/workflows", json=doc, headers=roles["outsider"])
    assert ours.status_code == 201 and theirs.status_code == 201, theirs.text
    assert {ours.json()["dag_id"], theirs.json()["dag_id"]} == {"kipu.demo.shared", "kipu.other.shared"}
    bag = dagbag()
    assert {"kipu.demo.shared", "kipu.other.shared"} <= set(bag.dag_ids) and bag.import_errors == {}
    assert "team:other" in bag.dags["kipu.other.shared"].tags


@pytest.fixture
def old_store() -> object:
    """A store as the previous release left it (revision 0006), with workflows and runs in flight."""
    url = pg.create_database()
    upgrade(url, "0006")
    engine = sa.create_engine(url)
    ids = {k: uuid.uuid4() for k in ("team", "owner", "wf", "engine_wf", "pending", "running", "done")}
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO profiles (id, email) VALUES (:i, 'o@old.test')"), {"i": ids["owner"]})
        c.execute(
            sa.text("INSERT INTO teams (id, name, slug, owner_id) VALUES (:i, 'Old', 'old', :o)"),
            {"i": ids["team"], "o": ids["owner"]},
        )
        for key, slug in (("wf", "crosspost"), ("engine_wf", "poll")):
            c.execute(
                sa.text(
                    "INSERT INTO workflows (id, team_id, name, status, trigger_config, slug) "
                    "VALUES (:i, :t, :n, 'active', '{\"type\": \"manual\"}', :s)"
                ),
                {"i": ids[key], "t": ids["team"], "n": slug, "s": slug},
            )
            c.execute(
                sa.text(
                    "INSERT INTO workflow_steps (id, workflow_id, order_index, step_type, config, step_key) VALUES "
                    '(:i, :w, 0, \'publish\', \'{"platform": "outbox", "connection_id": "outbox:x"}\', \'out\')'
                ),
                {"i": uuid.uuid4(), "w": ids[key]},
            )
        for key, status, asked in (
            ("pending", "pending", None),
            ("running", "running", now),
            ("done", "completed", now),
        ):
            c.execute(
                sa.text(
                    "INSERT INTO workflow_runs (id, workflow_id, status, platform_post_id, dag_id, dag_run_id, "
                    "start_requested_at) VALUES (:i, :w, :st, :p, 'kipu_crosspost', :r, :a)"
                ),
                {"i": ids[key], "w": ids["wf"], "st": status, "p": key, "r": f"kipu__{ids[key]}", "a": asked},
            )
    engine.dispose()
    upgrade(url)
    use_store(url)
    yield ids
    reset_engines()
    pg.drop_database(url)


def test_upgrade_moves_workflows_to_their_namespace_and_keeps_history(old_store: dict) -> None:
    from kipu.factory.loader import build_all

    with session_scope() as s:
        wf, engine_wf = s.get(Workflow, old_store["wf"]), s.get(Workflow, old_store["engine_wf"])
        assert (wf.dag_id, wf.legacy_dag_id) == ("kipu.old.crosspost", "kipu_crosspost")
        # A workflow that had taken an engine DAG id gets its own; the engine's id is never served for it.
        assert (engine_wf.dag_id, engine_wf.legacy_dag_id) == ("kipu.old.poll", None)
        runs = {r.platform_post_id: r for r in s.scalars(sa.select(WorkflowRun))}
        # Never started: it starts under the new id. Started: its Airflow history stays linked under the old one.
        assert runs["pending"].dag_id == "kipu.old.crosspost"
        assert runs["running"].dag_id == runs["done"].dag_id == "kipu_crosspost"
        assert runs["running"].dag_run_id == f"kipu__{old_store['running']}"
    dags = build_all()
    # The unfinished run's DAG is still served under its old id, beside the new one; no engine id is taken.
    assert {"kipu.old.crosspost", "kipu_crosspost", "kipu.old.poll"} == set(dags)
    assert set(dags["kipu_crosspost"].task_ids) == set(dags["kipu.old.crosspost"].task_ids)
    with session_scope() as s:
        s.get(WorkflowRun, old_store["running"]).status = "completed"
    assert set(build_all()) == {"kipu.old.crosspost", "kipu.old.poll"}


def test_a_slug_used_by_another_team_is_free_in_mine(pg_demo_team: dict) -> None:
    with session_scope() as s:
        theirs = demo_doc(team="other", slug="mine", trigger={"type": "manual"})
        theirs["steps"] = [{"id": "out", "type": "publish", "platform": "outbox", "connection_id": "outbox:theirs"}]
        a = save_workflow(s, theirs)
        b = save_workflow(s, demo_doc(slug="mine"))
        assert a.id != b.id and (a.dag_id, b.dag_id) == ("kipu.other.mine", "kipu.demo.mine")
