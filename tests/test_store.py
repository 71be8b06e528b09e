"""The store on SQLite and on real PostgreSQL: schema, native types, constraints, cascades, run recording."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from kipu.ingest import enter
from kipu.specs.items import ContentItem
from kipu.store.accounts import get_or_create_profile, get_or_create_team, upsert_connection
from kipu.store.engine import get_engine, session_scope
from kipu.store.migrate import current, head, upgrade
from kipu.store.models import Connection, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.runs import finish_step, start_step
from kipu.store.workflows import export_workflow, save_workflow
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from tests.helpers import demo_doc

SEED_TABLES = {
    "profiles",
    "teams",
    "team_members",
    "connections",
    "workflows",
    "workflow_steps",
    "workflow_runs",
    "workflow_step_runs",
    "posts",
    "media",
    "media_folders",
}


def test_schema_has_every_seed_table_and_upgrade_is_idempotent(store_url: str) -> None:
    upgrade(store_url)
    upgrade(store_url)
    assert current(store_url) == head() != "0001"
    assert set(inspect(get_engine()).get_table_names()) >= SEED_TABLES


def test_the_migrations_build_exactly_the_models(store_url: str) -> None:
    """Alembic's own comparison finds nothing between the migrated store and the models: no table, column, index,
    constraint or type a migration forgot."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from kipu.store.models import Base

    with get_engine().connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_seed_columns_are_kept(store_url: str) -> None:
    insp = inspect(get_engine())
    cols = {t: {c["name"] for c in insp.get_columns(t)} for t in SEED_TABLES}
    assert {"id", "name", "avatar_url", "plan", "created_at"} <= cols["profiles"]
    assert {"team_id", "user_id", "role"} <= cols["team_members"]
    assert {
        "id",
        "team_id",
        "platform",
        "platform_user_id",
        "platform_username",
        "access_token",
        "refresh_token",
        "token_expires_at",
        "scopes",
        "metadata",
        "created_at",
    } <= cols["connections"]
    assert {
        "id",
        "team_id",
        "name",
        "description",
        "status",
        "trigger_config",
        "created_at",
        "updated_at",
    } <= cols["workflows"]
    assert {"id", "workflow_id", "order_index", "step_type", "config", "created_at"} <= cols["workflow_steps"]
    assert {
        "id",
        "workflow_id",
        "trigger_data",
        "status",
        "started_at",
        "completed_at",
        "error_message",
    } <= cols["workflow_runs"]
    assert {
        "id",
        "run_id",
        "step_id",
        "status",
        "input_data",
        "output_data",
        "started_at",
        "completed_at",
        "error_message",
    } <= cols["workflow_step_runs"]
    assert {
        "id",
        "team_id",
        "workflow_run_id",
        "connection_id",
        "platform",
        "platform_post_id",
        "content_type",
        "caption",
        "media_urls",
        "status",
        "scheduled_at",
        "published_at",
        "metadata",
        "created_at",
    } <= cols["posts"]
    assert {
        "id",
        "team_id",
        "folder_id",
        "filename",
        "storage_path",
        "mime_type",
        "size_bytes",
        "metadata",
        "created_at",
    } <= cols["media"]
    assert {"id", "team_id", "parent_id", "name", "created_at"} <= cols["media_folders"]
    assert insp.get_pk_constraint("team_members")["constrained_columns"] == ["team_id", "user_id"]


def test_seed_defaults(store_url: str) -> None:
    with session_scope() as s:
        owner = get_or_create_profile(s, "o@t.test")
        team = get_or_create_team(s, "T", owner)
        s.execute(
            text("INSERT INTO workflows (id, team_id, name, trigger_config) VALUES (:i, :t, 'w', '{}')"),
            {
                "i": str(uuid.uuid4()) if s.bind.dialect.name == "sqlite" else uuid.uuid4(),
                "t": str(team.id) if s.bind.dialect.name == "sqlite" else team.id,
            },
        )
        wf = s.scalars(select(Workflow)).one()
        s.refresh(owner)
        assert (wf.status, owner.plan) == ("inactive", "free")
        assert wf.created_at.tzinfo is not None


def test_native_types_on_postgres(pg_url: str) -> None:
    with get_engine().connect() as c:
        rows = dict(
            c.execute(
                text(
                    "select table_name || '.' || column_name, udt_name from information_schema.columns "
                    "where table_schema = 'public'"
                )
            ).all()
        )
    assert rows["connections.id"] == "uuid"
    assert rows["connections.scopes"] == "_text"
    assert rows["connections.metadata"] == "jsonb"
    assert rows["workflows.trigger_config"] == "jsonb"
    assert rows["posts.media_urls"] == "_text"
    assert rows["workflow_runs.started_at"] == "timestamptz"


def test_connections_unique_on_team_platform_user(store_url: str) -> None:
    with session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        upsert_connection(s, team, "x", "42", access_token="a")
        team_id = team.id
    with pytest.raises(IntegrityError), session_scope() as s:
        s.add(Connection(id=uuid.uuid4(), team_id=team_id, platform="x", platform_user_id="42"))
    with session_scope() as s:  # the upsert path updates instead of duplicating
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        upsert_connection(s, team, "x", "42", access_token="b", scopes=["tweet.write"])
        assert s.scalar(select(Connection.scopes)) == ["tweet.write"]


def test_foreign_keys_are_enforced(store_url: str) -> None:
    with pytest.raises(IntegrityError), session_scope() as s:
        s.add(Connection(id=uuid.uuid4(), team_id=uuid.uuid4(), platform="x", platform_user_id="1"))


def test_naive_datetimes_are_refused(store_url: str) -> None:
    with pytest.raises(StatementError, match="naive datetime"), session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        upsert_connection(s, team, "x", "1", expires_at=datetime(2030, 1, 1))


def _stored_demo(s) -> Workflow:  # type: ignore[no-untyped-def]
    owner = get_or_create_profile(s, "owner@demo.test", airflow_username="admin")
    team = get_or_create_team(s, "Demo", owner, "demo")
    upsert_connection(s, team, "feed", "demo")
    upsert_connection(s, team, "outbox", "demo")
    return save_workflow(s, demo_doc())


def test_workflow_round_trip_and_cascade(store_url: str) -> None:
    with session_scope() as s:
        wf = _stored_demo(s)
        wf_id = str(wf.id)
        assert [st.step_key for st in wf.steps][:2] == ["skip_ads_and_text", "rewrite_for_bluesky"]
    with session_scope() as s:
        exported = export_workflow(s, wf_id)
    from kipu.specs.workflow import parse_workflow

    assert exported == parse_workflow(demo_doc()).to_document()
    with session_scope() as s:
        s.delete(s.get(Workflow, uuid.UUID(wf_id)))
    with session_scope() as s:
        assert s.scalar(select(WorkflowStep).limit(1)) is None  # workflow_steps cascade with their workflow


def test_reimport_updates_in_place(store_url: str) -> None:
    with session_scope() as s:
        wf = _stored_demo(s)
        step_ids = {st.step_key: st.id for st in wf.steps}
        doc = demo_doc(description="changed")
        doc["steps"][1]["config"]["tone"] = "funny"
        again = save_workflow(s, doc)
        assert again.id == wf.id and again.description == "changed"
        assert {st.step_key: st.id for st in again.steps} == step_ids


def test_record_run_is_idempotent_and_step_rows_cascade(store_url: str) -> None:
    item = {"platform": "feed", "platform_post_id": "p1", "caption": "hi"}
    with session_scope() as s:
        wf = _stored_demo(s)
        (first,) = enter(s, wf, [ContentItem(**item)])
        (second,) = enter(s, wf, [ContentItem(**dict(item, caption="edited later"))])
        run, created = s.get(WorkflowRun, first.workflow_run_id), first.created
        again, created_again = s.get(WorkflowRun, second.workflow_run_id), second.created
        assert created and not created_again and again.id == run.id
        assert again.trigger_data["caption"] == "hi"  # an edit after detection is not a new item
        step = wf.steps[0]
        start_step(s, run.id, step.id, {"in": 1}, attempt=1)
        start_step(s, run.id, step.id, {"in": 1}, attempt=2)  # a retry updates the same row
        finish_step(s, run.id, step.id, "completed", {"out": 2})
        run_id = run.id
    with session_scope() as s:
        rows = s.scalars(select(WorkflowStepRun)).all()
        assert [(r.status, r.attempt, r.output_data) for r in rows] == [("completed", 2, {"out": 2})]
        s.delete(s.get(WorkflowRun, run_id))
    with session_scope() as s:
        assert s.scalar(select(WorkflowStepRun).limit(1)) is None
