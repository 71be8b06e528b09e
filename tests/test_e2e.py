"""Workflows end to end through real Airflow (``dag.test()``), checking the store's run, step and post rows.

Both the Kipu store and Airflow's metadata database are real PostgreSQL; approvals are answered from a thread
the way Airflow's HITL REST handler and timeout sweep do it.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kipu.captions.counting import grapheme_count
from kipu.ingest import enter
from kipu.platforms.feed.hook import FeedHook
from kipu.store.engine import session_scope
from kipu.store.models import NotificationEvent, Post, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.workflows import save_workflow
from sqlalchemy import func, select

from tests.conftest import REPO
from tests.helpers import demo_doc, step
from tests.hitl import Responder

pytestmark = pytest.mark.slow
DAG_ID = "kipu.demo.demo_crosspost"
ITEMS = {i.platform_post_id: i for i in FeedHook(str(REPO / "include/demo/feed.xml")).list_posts()}
SECRET = "tok-OUTBOX-SECRET-0001"


@pytest.fixture
def flow(pg_demo_team: dict, airflow_db: Path) -> dict:
    return pg_demo_team


def store(doc: dict[str, Any]) -> None:
    with session_scope() as s:
        save_workflow(s, doc)


def run_item(
    item_id: str, responder: Responder | None = None, workflow_run_id: str | None = None, slug: str = "demo_crosspost"
) -> dict:
    """Record the item (the record-then-start path) and run its DAG run with ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags[f"kipu.demo.{slug}"]
    if workflow_run_id is None:
        with session_scope() as s:
            wf = s.scalar(select(Workflow).where(Workflow.slug == slug))
            workflow_run_id = str(enter(s, wf, [ITEMS[item_id]])[0].workflow_run_id)
    if responder:
        responder.start()
    dag_run = dag.test(run_conf={"workflow_run_id": workflow_run_id})
    if responder:
        responder.join(5)
        assert responder.error is None, responder.error
    with session_scope() as s:
        run = s.get(WorkflowRun, uuid.UUID(workflow_run_id))
        steps = {
            k: r
            for k, r in s.execute(
                select(WorkflowStep.step_key, WorkflowStepRun)
                .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
                .where(WorkflowStepRun.run_id == run.id)
            ).tuples()
        }
        posts = s.scalars(select(Post).where(Post.workflow_run_id == run.id)).all()
        return {"dag_run": dag_run, "run": run, "steps": steps, "posts": posts, "id": workflow_run_id}


def told(kind: str) -> list[dict]:
    """The data of every notification event of ``kind`` the run left for the team."""
    with session_scope() as s:
        return [e.data for e in s.scalars(select(NotificationEvent).where(NotificationEvent.kind == kind))]


def outbox_files(team: dict) -> list[Path]:
    return sorted(team["outbox"].glob("*.json"))


def test_short_video_takes_the_false_branch_and_publishes(flow: dict) -> None:
    store(demo_doc())
    out = run_item("ana-001")
    assert out["dag_run"].state == "success"
    assert out["run"].status == "completed" and out["run"].completed_at is not None
    steps = out["steps"]
    assert set(steps) == {
        "skip_ads_and_text",
        "rewrite_for_bluesky",
        "long_or_short",
        "quick_pause",
        "publish_outbox",
    }
    assert all(r.status == "completed" and r.started_at and r.completed_at for r in steps.values())
    assert steps["long_or_short"].output_data["branch"] == "if_false"
    assert steps["skip_ads_and_text"].input_data["platform_post_id"] == "ana-001"
    caption = steps["rewrite_for_bluesky"].output_data["caption"]
    assert grapheme_count(caption) <= 300 and "#fyp" not in caption and "#Pasta" in caption
    (post,) = out["posts"]
    assert post.status == "published" and post.caption == caption and post.platform == "outbox"
    (file,) = outbox_files(flow)
    written = json.loads(file.read_text())
    assert written["caption"] == caption and written["media"][0]["file"].endswith("pasta.mp4")
    assert (flow["outbox"] / written["media"][0]["file"]).stat().st_size == 88
    (published,) = told("post.published")  # from the publish task's on_success_callback (KipuPostNotifier)
    assert published["post_id"] == str(post.id) and published["platform"] == "outbox"
    assert published["url"] == post.platform_url and published["caption"] == caption[:200]
    assert told("post.failed") == []


def _short_timeout(auto: bool) -> dict:
    doc = demo_doc()
    step(doc, "team_review")["config"] = {
        "approvers": ["admin"],
        "timeout_hours": 0.0005,
        "auto_approve_on_timeout": auto,
    }
    return doc


def test_long_video_waits_and_publishes_once_approved(flow: dict) -> None:
    store(demo_doc())
    responder = Responder(DAG_ID, "Approve")
    out = run_item("ana-002", responder)
    assert responder.assigned_users == [{"id": "admin", "name": "Owner"}]
    assert out["dag_run"].state == "success" and out["run"].status == "completed"
    steps = out["steps"]
    assert "quick_pause" not in steps and steps["long_or_short"].output_data["branch"] == "if_true"
    assert steps["cool_down"].status == "completed"
    assert steps["cool_down"].completed_at - steps["cool_down"].started_at >= timedelta(seconds=3)
    review = steps["team_review"]
    assert review.status == "completed"
    assert review.output_data["decision"] == "Approve" and review.output_data["responded_by"] == "admin"
    (post,) = out["posts"]
    assert post.status == "published" and len(outbox_files(flow)) == 1
    (asked,) = told("approval.requested")
    assert asked["approvers"] == ["admin"] and asked["url"].endswith("/tasks/team_review/required_actions")
    assert f"/runs/{out['dag_run'].run_id}/" in asked["url"].replace("%3A", ":").replace("%2B", "+")
    assert told("approval.timed_out") == []


def test_a_rejected_item_is_skipped_with_the_reason_and_never_published(flow: dict) -> None:
    store(demo_doc())
    out = run_item("ana-002", Responder(DAG_ID, "Reject"))
    assert out["dag_run"].state == "success"
    assert out["run"].status == "skipped"
    assert out["run"].error_message == "rejected by admin at 'team_review'"
    assert out["steps"]["team_review"].output_data["decision"] == "Reject"
    assert "publish_outbox" not in out["steps"] or out["steps"]["publish_outbox"].status == "skipped"
    assert out["posts"] == [] and outbox_files(flow) == []


def test_an_unanswered_approval_times_out_to_skipped(flow: dict) -> None:
    store(_short_timeout(auto=False))
    out = run_item("ana-002", Responder(DAG_ID, None))
    assert out["run"].status == "skipped"
    assert "approval 'team_review' timed out" in out["run"].error_message
    review = out["steps"]["team_review"]
    assert review.status == "skipped" and review.output_data["decision"] == "timeout"
    assert out["posts"] == [] and outbox_files(flow) == []
    (timed_out,) = told("approval.timed_out")
    assert timed_out["step"] == "team_review" and "default" not in timed_out


def test_auto_approve_on_timeout_publishes(flow: dict) -> None:
    store(_short_timeout(auto=True))
    out = run_item("ana-002", Responder(DAG_ID, None))
    assert out["dag_run"].state == "success" and out["run"].status == "completed"
    review = out["steps"]["team_review"]
    assert review.output_data["decision"] == "Approve"
    assert review.output_data["responded_by"] == "the timeout default"
    (timed_out,) = told("approval.timed_out")
    assert timed_out["default"] == "Approve"
    (post,) = out["posts"]
    assert post.status == "published" and len(outbox_files(flow)) == 1


@pytest.mark.parametrize(
    "item_id,reason",
    [
        ("ana-004", "filtered out by 'skip_ads_and_text': hashtag #ad is present"),
        ("ana-003", "filtered out by 'skip_ads_and_text': type is text"),
    ],
)
def test_filter_drops_the_item(flow: dict, item_id: str, reason: str) -> None:
    store(demo_doc())
    out = run_item(item_id)
    assert out["dag_run"].state == "success"
    assert out["run"].status == "skipped" and out["run"].error_message == reason
    assert list(out["steps"]) == ["skip_ads_and_text"] and out["posts"] == []


def test_a_second_run_of_the_same_item_publishes_nothing_twice(flow: dict) -> None:
    store(demo_doc())
    first = run_item("ana-005")
    second = run_item("ana-005", workflow_run_id=first["id"])
    assert second["run"].status == "completed"
    assert second["steps"]["publish_outbox"].output_data["targets"]["outbox:demo"]["status"] == "published"
    assert len(second["posts"]) == 1 and len(outbox_files(flow)) == 1


def test_crash_after_the_platform_accepted_is_not_reposted(flow: dict) -> None:
    store(demo_doc())
    first = run_item("ana-001")
    with session_scope() as s:  # as if the worker died after the outbox write, before Kipu recorded it
        post = s.get(Post, first["posts"][0].id)
        post.status, post.platform_post_id = "publishing", None
    again = run_item("ana-001", workflow_run_id=first["id"])
    (post,) = again["posts"]
    assert post.status == "published" and post.platform_post_id == str(post.id)
    assert len(outbox_files(flow)) == 1


def test_a_caption_over_the_limit_fails_before_any_call(flow: dict) -> None:
    doc = demo_doc()
    step(doc, "publish_outbox")["config"] = {"custom_caption": "x" * 5001}
    store(doc)
    out = run_item("ana-001")
    assert out["dag_run"].state == "failed"
    assert out["run"].status == "failed"
    assert "outbox caption is 5001 characters, over the limit of 5000" in out["run"].error_message
    (post,) = out["posts"]
    assert post.status == "failed" and "over the limit of 5000" in post.error_message
    assert outbox_files(flow) == []
    (failed,) = told("post.failed")  # from the publish task's on_failure_callback
    assert failed["post_id"] == str(post.id) and "over the limit of 5000" in failed["error"]
    assert failed["log_url"].endswith("/tasks/publish_outbox") and told("post.published") == []


def test_manual_run_without_a_recorded_row_records_one(flow: dict) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store(demo_doc())
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    dag_run = dag.test(run_conf={"item": ITEMS["ana-001"].model_dump(mode="json")})
    assert dag_run.state == "success"
    with session_scope() as s:
        (run,) = s.scalars(select(WorkflowRun)).all()
        assert run.platform_post_id == "ana-001" and run.status == "completed"
        assert run.dag_run_id == dag_run.run_id


def test_the_trigger_form_takes_a_caption_alone_and_checks_the_item(
    flow: dict, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Airflow's Trigger button with the item as the run's conf: a caption and an image are enough."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    store(demo_doc())
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    image = next(m.url for i in ITEMS.values() for m in i.media if m.kind == "image")
    item = {"caption": "Fresh loaf #bread", "media": [{"url": image}], "idempotency_key": "k1"}
    dag_run = dag.test(run_conf={"item": item})
    assert dag_run.state == "success"
    with session_scope() as s:
        (run,) = s.scalars(select(WorkflowRun)).all()
        assert (run.platform_post_id, run.status, run.source) == ("key:k1", "completed", "manual")
        assert run.trigger_data["platform"] == "manual" and run.trigger_data["content_type"] == "image"
    # The form's schema refuses what no item has, before a run exists.
    params = ParamsDict(dag.params)
    with pytest.raises(ParamValidationError, match="'captoin' is not one of"):
        params["item"] = {"captoin": "typo"}
        params.validate()
    # A conf that passes the form but not the item model fails at once, naming the field, without retries.
    bad = dag.test(run_conf={"item": {"caption": "x", "media": [{"url": image, "alt": "a loaf"}]}})
    assert bad.state == "failed"
    ti = next(t for t in bad.get_task_instances() if t.task_id == "skip_ads_and_text")
    assert ti.state == "failed" and ti.try_number == 1
    logs = capfd.readouterr().out + caplog.text
    assert "dag_run.conf: item.media[0].alt: unknown field (check the spelling)" in logs


def test_tokens_never_reach_logs_xcom_or_history(
    flow: dict, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    store(demo_doc())
    out = run_item("ana-001")
    assert out["run"].status == "completed"
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    with create_session() as session:
        values = [str(x.value) for x in session.scalars(select(XComModel))]
    assert values and all(SECRET not in v for v in values)
    rows = json.dumps([r.output_data for r in out["steps"].values()] + [r.input_data for r in out["steps"].values()])
    assert SECRET not in rows


def test_the_rewrite_step_uses_the_kipu_openai_connection(flow: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from kipu.store.models import AIUsage

    from tests.fakes.openai_server import Answer, OpenAIServer

    with OpenAIServer() as fake:
        conn = {"conn_type": "kipu_openai", "password": "sk-test-E2E-KEY", "host": fake.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_OPENAI", json.dumps(conn | {"extra": {"model": "gpt-4o-mini"}}))
        fake.then(
            Answer(hashtags=["Weeknight", "pasta"]),  # the step's generate_hashtags option asks first
            Answer(caption="Fifteen minutes, fresh pasta, no excuses", hashtags=["pasta", "weeknight"]),
        )
        doc = demo_doc()
        step(doc, "rewrite_for_bluesky")["config"]["generate_hashtags"] = 2
        store(doc)
        out = run_item("ana-001")
        assert fake.requests[0]["response_format"]["json_schema"]["name"] == "hashtags"
    assert out["run"].status == "completed"
    rewrite = out["steps"]["rewrite_for_bluesky"].output_data
    assert rewrite["engine"] == "openai" and rewrite["model"] == "gpt-4o-mini" and rewrite["fallback"] is None
    assert rewrite["caption"].startswith("Fifteen minutes, fresh pasta, no excuses")
    assert rewrite["tokens_in"] > 0 and rewrite["cost_usd"] > 0
    assert rewrite["generated_hashtags"] == ["Weeknight", "pasta"] and rewrite["hashtag_engine"] == "openai"
    (post,) = out["posts"]
    assert post.caption == rewrite["caption"]
    with session_scope() as s:
        usage = s.scalars(select(AIUsage)).all()
        assert sorted(u.purpose for u in usage) == ["hashtags", "rewrite"]
        assert all(str(u.workflow_run_id) == out["id"] and u.team_id is not None and u.tokens_in > 0 for u in usage)


def test_an_item_past_the_monthly_post_limit_is_held_then_published_after_an_upgrade(
    flow: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from kipu.store.accounts import find_team

    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_kipu")  # billing on: the team is on the free plan
    monkeypatch.setenv("KIPU_PLAN_HOLD_RECHECK_SECONDS", "2")
    store(demo_doc())
    with session_scope() as s:
        find_team(s, "demo").plan_limits = {"posts_per_month": 1}
    assert run_item("ana-001")["run"].status == "completed"  # the month's one post
    seen: dict[str, Any] = {}

    def upgrade_once_held() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            with session_scope() as s:
                run = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == "ana-005"))
                if run is not None and run.status == "held_by_plan":
                    row = s.scalar(
                        select(WorkflowStepRun)
                        .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
                        .where(WorkflowStepRun.run_id == run.id, WorkflowStep.step_key == "publish_outbox")
                    )
                    seen.update(step=row.status, held=dict(row.output_data["held_by_plan"]))
                    seen["posts"] = s.scalar(select(func.count()).where(Post.workflow_run_id == run.id))
                    team = find_team(s, "demo")
                    team.plan, team.plan_limits = "pro", None  # what checkout.session.completed does
                    return
            time.sleep(0.3)

    watcher = threading.Thread(target=upgrade_once_held)
    watcher.start()
    out = run_item("ana-005")
    watcher.join(5)
    assert seen["step"] == "held_by_plan" and seen["posts"] == 0  # held: nothing reached the platform
    assert seen["held"]["plan"] == "free" and seen["held"]["limit"] == 1 and seen["held"]["used"] == 1
    assert out["dag_run"].state == "success" and out["run"].status == "completed"
    publish = out["steps"]["publish_outbox"]
    assert publish.output_data["held_by_plan"] is None and publish.output_data["released_from_hold_at"]
    assert publish.output_data["was_held_by_plan"]["since"] < publish.output_data["released_from_hold_at"]
    (post,) = out["posts"]
    assert post.status == "published" and len(outbox_files(flow)) == 2
    (told_limit,) = told("plan.limit_reached")
    assert told_limit["limit"] == "posts this month" and told_limit["allowed"] == 1


@pytest.mark.parametrize(("release", "admitted"), [("upgrade", False), ("new_month", True)])
def test_a_hold_from_last_month_waits_for_an_upgrade_unless_the_team_chose_the_new_month(
    flow: dict, monkeypatch: pytest.MonkeyPatch, release: str, admitted: bool
) -> None:
    from kipu.operators.base import RunState
    from kipu.operators.publish import KipuPublishOperator
    from kipu.specs.steps import PublishStep
    from kipu.store.accounts import find_team

    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_kipu")
    store(demo_doc())
    with session_scope() as s:
        team = find_team(s, "demo")
        team.plan_limits, team.held_release = {"posts_per_month": 1}, release
        wf = s.scalar(select(Workflow).where(Workflow.slug == "demo_crosspost"))
        run_id = enter(s, wf, [ITEMS["ana-005"]])[0].workflow_run_id
        publish = s.scalar(
            select(WorkflowStep).where(WorkflowStep.workflow_id == wf.id, WorkflowStep.step_key == "publish_outbox")
        )
        team_id, wf_id, step_id, config = team.id, wf.id, publish.id, dict(publish.config)
    op = KipuPublishOperator(
        task_id="publish_outbox", workflow_id=str(wf_id), step_id=str(step_id), step_config=config, team_id=str(team_id)
    )
    held = {"since": "2026-10-31T23:00:00+00:00", "month": "2000-01", "plan": "free", "limit": 1, "used": 1, "needs": 1}
    state = RunState(
        run_id=run_id,
        workflow_id=wf_id,
        team_id=team_id,
        item=ITEMS["ana-005"],
        captions={},
        output={"held_by_plan": held},
    )
    step = PublishStep.model_validate({"id": "publish_outbox", "type": "publish", **config})
    assert op._admitted(state, step) is admitted  # this month has room (no posts yet) either way
    with session_scope() as s:
        claimed = s.scalar(select(func.count()).where(Post.workflow_run_id == run_id))
        assert s.get(WorkflowRun, run_id).status == ("running" if admitted else "held_by_plan")
    assert claimed == (1 if admitted else 0)  # admitted: the intent is claimed under the team lock


# -- a workflow without branches: no finalize task, the task in which the item ends records the outcome ----------
LINE = "kipu.demo.line"


def line_doc() -> dict[str, Any]:
    doc = demo_doc(slug="line", name="Line")
    doc["steps"] = [s for s in doc["steps"] if s["id"] not in ("long_or_short", "quick_pause")]
    step(doc, "cool_down")["config"] = {"duration_seconds": 1}
    return doc


def test_a_workflow_without_branches_has_no_finalize_task_and_publishes(flow: dict) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store(line_doc())
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[LINE]
    assert dag.task_ids == ["skip_ads_and_text", "rewrite_for_bluesky", "cool_down", "team_review", "publish_outbox"]
    assert dag.get_task("publish_outbox").last_step and not dag.get_task("cool_down").last_step
    out = run_item("ana-002", Responder(LINE, "Approve"), slug="line")
    assert out["dag_run"].state == "success"
    assert out["run"].status == "completed" and out["run"].completed_at is not None
    assert all(r.status == "completed" for r in out["steps"].values()) and len(out["steps"]) == 5
    (post,) = out["posts"]
    assert post.status == "published" and len(outbox_files(flow)) == 1


def test_without_branches_a_filtered_item_ends_in_the_filter(flow: dict) -> None:
    store(line_doc())
    out = run_item("ana-004", slug="line")
    assert out["dag_run"].state == "success"
    assert out["run"].status == "skipped"
    assert out["run"].error_message == "filtered out by 'skip_ads_and_text': hashtag #ad is present"
    assert list(out["steps"]) == ["skip_ads_and_text"] and out["posts"] == []


def test_without_branches_a_rejected_item_ends_in_the_approval(flow: dict) -> None:
    store(line_doc())
    out = run_item("ana-002", Responder(LINE, "Reject"), slug="line")
    assert out["dag_run"].state == "success"
    assert out["run"].status == "skipped" and out["run"].error_message == "rejected by admin at 'team_review'"
    assert out["posts"] == [] and outbox_files(flow) == []


def test_without_branches_a_publish_that_fails_for_good_fails_the_run(flow: dict) -> None:
    doc = line_doc()
    step(doc, "publish_outbox")["config"] = {"custom_caption": "x" * 5001}
    doc["steps"] = [s for s in doc["steps"] if s["type"] != "approval"]
    store(doc)
    out = run_item("ana-001", slug="line")
    assert out["dag_run"].state == "failed"
    assert out["run"].status == "failed" and out["run"].completed_at is not None
    assert "outbox caption is 5001 characters, over the limit of 5000" in out["run"].error_message
    (post,) = out["posts"]
    assert post.status == "failed" and outbox_files(flow) == []
