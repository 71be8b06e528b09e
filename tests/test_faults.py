"""Fault injection on the native distributed stack (Celery on Redis, every Airflow component its own process).

As in the compose file, one PostgreSQL holds both Airflow's metadata and the Kipu store (a cluster of the test's own,
so a test can stop it), and components are restarted when they exit (compose's ``restart: always``). X is a local
fake of its API v2. Each test checks Kipu's promise: no post lost, none published twice. Times are scaled down
(``KIPU_TASK_RETRY_DELAY``)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests import pg
from tests.conftest import seed_demo_team, use_store
from tests.fakes.platform_server import PlatformServer
from tests.fakes.x_server import XServer
from tests.stack import AirflowStack

pytestmark = [pytest.mark.slow, pytest.mark.stack]
RETRY_DELAY = 6  # seconds: retries at ~6, 12 and 24 s, so a task outlasts a 30 s outage
TERMINAL = ("success", "failed")


@pytest.fixture(scope="module")
def store_cluster() -> Iterator[pg.Cluster]:
    cluster = pg.Cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def env(store_cluster: pg.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The store (on its own cluster), the demo team, a fake X with a stored connection, and the stack."""
    from kipu.store.accounts import find_team, upsert_connection
    from kipu.store.engine import reset_engines, session_scope
    from kipu.store.migrate import upgrade

    tmp = tmp_path_factory.mktemp("faults")
    url = store_cluster.create_database()
    upgrade(url)
    saved = {k: os.environ.get(k) for k in ("KIPU_DATABASE_URL", "KIPU_HOME", "AIRFLOW_CONN_KIPU_X_APP")}
    os.environ["KIPU_HOME"] = str(tmp / "kipu")
    use_store(url)
    team = seed_demo_team()
    with XServer() as x:
        app = {
            "conn_type": "kipu_x_app",
            "login": x.state.client_id,
            "password": x.state.client_secret,
            "extra": {"redirect_uri": "https://kipu.example/cb", "token_url": f"{x.url}/2/oauth2/token"},
        }
        os.environ["AIRFLOW_CONN_KIPU_X_APP"] = json.dumps(app)
        tokens = x.state.issue()
        with session_scope() as s:
            upsert_connection(
                s,
                find_team(s, "demo"),
                "x",
                "9001",
                username="ana_cooks",
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                metadata={"base_url": x.url},
            )
        stack = AirflowStack(
            tmp,
            url,
            metadata=store_cluster.create_database(),
            restart_always=True,
            env={
                "KIPU_TASK_RETRY_DELAY": str(RETRY_DELAY),
                # A worker killed with its tasks is noticed in seconds, not the default 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            },
        ).start()
        try:
            yield {"stack": stack, "x": x, "team": team, "cluster": store_cluster, "url": url}
        finally:
            stack.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_engines()


def save(doc: dict[str, Any]) -> str:
    """Store a workflow and return its DAG id."""
    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    with session_scope() as s:
        return save_workflow(s, doc).dag_id


def workflow(slug: str, steps: list[dict[str, Any]], trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": slug.replace("_", " ").title(),
        "slug": slug,
        "team": "demo",
        "status": "active",
        "trigger": trigger or {"type": "manual"},
        "steps": steps,
    }


def publish(step_id: str, *targets: tuple[str, str]) -> dict[str, Any]:
    (conn, platform), *more = targets
    step: dict[str, Any] = {"id": step_id, "type": "publish", "connection_id": conn, "platform": platform}
    if more:
        step["additional_targets"] = [{"connection_id": c, "platform": p} for c, p in more]
    return step


def start(stack: AirflowStack, dag_id: str, run_id: str, caption: str) -> None:
    item = {"platform": "manual", "platform_post_id": run_id, "caption": caption, "content_type": "text"}
    assert stack.api().trigger(dag_id, run_id, {"item": item})


def finished(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    state = stack.api().run_state(dag_id, run_id)
    return state if state in TERMINAL else None


def posts_of(run_key: str) -> list[Any]:
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, WorkflowRun

    with session_scope() as s:
        run = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == run_key))
        assert run is not None, f"no workflow run for {run_key}"
        posts = list(s.scalars(select(Post).where(Post.workflow_run_id == run.id)))
        for p in posts:
            s.expunge(p)
        return posts


def run_row(run_key: str) -> Any:
    from kipu.store.engine import session_scope
    from kipu.store.models import WorkflowRun

    with session_scope() as s:
        run = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == run_key))
        s.expunge(run)
        return run


def _completed(run_key: str) -> bool:
    try:
        run = run_row(run_key)
    except Exception:  # not recorded yet, or the store is still coming back
        return False
    return run is not None and run.status == "completed"


def tweets(x: XServer, text: str) -> list[dict[str, Any]]:
    return [t for t in x.state.tweets if t["text"] == text]


def test_a_worker_killed_after_the_platform_accepted_the_post_publishes_it_exactly_once(env: dict) -> None:
    stack, x = env["stack"], env["x"]
    dag_id = save(workflow("fault_kill", [publish("to_x", ("x:9001", "x"))]))
    stack.wait_for_dags(dag_id)
    killed = threading.Event()

    def kill_worker(tweet: dict[str, Any]) -> None:
        # The platform has the post; the worker dies before Kipu can record it. A fresh worker takes over.
        x.state.after_post = None
        stack.kill("celery worker", signal.SIGKILL)
        stack._spawn("celery worker")
        killed.set()

    x.state.after_post = kill_worker
    caption = "Killed mid-publish, posted once"
    start(stack, dag_id, "kill-1", caption)
    stack.wait("the run after the kill", lambda: finished(stack, dag_id, "kill-1"), timeout=300)
    assert killed.is_set()
    assert stack.api().run_state(dag_id, "kill-1") == "success"
    assert len(tweets(x, caption)) == 1
    (post,) = posts_of("kill-1")
    assert post.status == "published" and post.platform_post_id == tweets(x, caption)[0]["id"]
    assert post.attempts >= 2, "the retry found the post instead of the first attempt recording it"


def test_the_database_down_for_30s_during_a_poll_cycle_and_during_a_run_loses_and_duplicates_nothing(
    env: dict,
) -> None:
    from kipu.store.accounts import find_team, upsert_connection
    from kipu.store.engine import session_scope

    stack, cluster, outbox = env["stack"], env["cluster"], env["team"]["outbox"]
    with PlatformServer() as host:
        src = host.source("dbfeed")
        with session_scope() as s:
            upsert_connection(s, find_team(s, "demo"), "feed", "dbfeed", metadata={"url": host.feed_url("dbfeed")})
        trigger = {
            "type": "poll",
            "connection_id": "feed:dbfeed",
            "platform": "feed",
            "backfill": "last_n",
            "backfill_count": 10,
            # A cycle the outage cut short leaves the items for the next poll of this source: due a minute later.
            "poll_interval_minutes": 1,
        }
        polled = save(workflow("fault_db_poll", [publish("out", ("outbox:demo", "outbox"))], trigger))
        delayed = save(
            workflow(
                "fault_db_run",
                [
                    {"id": "wait", "type": "delay", "config": {"duration_seconds": 8}},
                    publish("out", ("outbox:demo", "outbox")),
                ],
            )
        )
        api = stack.wait_for_dags("kipu_poll", polled, delayed)
        before = len(list(outbox.glob("*.json")))

        # 1. Two posts appear, a poll cycle starts, and the database (Airflow's metadata and the store) stops under
        # it for 30 s. kipu_poll's own schedule may also be mid-cycle: whichever cycle takes the posts meets the outage.
        src.add("db-1", "First while the store is down")
        src.add("db-2", "Second while the store is down")
        assert api.trigger("kipu_poll", "outage_cycle", {})
        cluster.stop()
        try:
            stack.hold(30)
        finally:
            cluster.start()
        # The cycle finishes or fails and the next one picks the items up: either way each is published once.
        for key in ("db-1", "db-2"):
            stack.wait(f"run {key}", lambda k=key: _completed(k), 420)

        # 2. A run is waiting in its delay when the database stops; the delay ends during the outage.
        start(stack, delayed, "db-run-1", "Published after the outage")
        stack.wait("the delay to defer", lambda: api.task_state(delayed, "db-run-1", "wait") == "deferred", 120)
        cluster.stop()
        try:
            stack.hold(30)
        finally:
            cluster.start()
        stack.wait("the delayed run", lambda: finished(stack, delayed, "db-run-1"), timeout=420)
        assert api.run_state(delayed, "db-run-1") == "success"
        print(f"components started again by the restart policy: {stack.restarts or 'none'}")
    for key in ("db-1", "db-2", "db-run-1"):
        (post,) = posts_of(key)
        assert post.status == "published", (key, post.status, post.error_message)
    captions = [json.loads(p.read_text())["caption"] for p in outbox.glob("*.json")]
    assert len(captions) == before + 3
    for caption in ("First while the store is down", "Second while the store is down", "Published after the outage"):
        assert captions.count(caption) == 1


def test_restarting_scheduler_triggerer_and_dag_processor_keeps_pending_waits(env: dict) -> None:
    stack, outbox = env["stack"], env["team"]["outbox"]
    delayed = save(
        workflow(
            "fault_restart_delay",
            [
                {"id": "wait", "type": "delay", "config": {"duration_seconds": 45}},
                publish("out", ("outbox:demo", "outbox")),
            ],
        )
    )
    approved = save(
        workflow(
            "fault_restart_approval",
            [
                {"id": "review", "type": "approval", "config": {"approvers": ["admin"], "timeout_hours": 1}},
                publish("out", ("outbox:demo", "outbox")),
            ],
        )
    )
    api = stack.wait_for_dags(delayed, approved)
    started = datetime.now(UTC)
    start(stack, delayed, "restart-delay", "Waited through restarts")
    start(stack, approved, "restart-approval", "Approved after restarts")
    stack.wait("the delay to defer", lambda: api.task_state(delayed, "restart-delay", "wait") == "deferred", 120)
    stack.wait("the approval to wait", lambda: api.pending_approvals(approved), 120)
    for name in ("scheduler", "triggerer", "dag-processor"):
        stack.restart(name)
    # Nothing fires early: the delay is still pending and the approval unanswered after the restarts.
    time.sleep(10)
    assert api.task_state(delayed, "restart-delay", "wait") == "deferred"
    assert not finished(stack, approved, "restart-approval")
    (approval,) = api.pending_approvals(approved)
    api.answer(approval, "Approve")
    stack.wait(
        "both runs",
        lambda: finished(stack, delayed, "restart-delay") and finished(stack, approved, "restart-approval"),
        300,
    )
    assert api.run_state(delayed, "restart-delay") == "success"
    assert api.run_state(approved, "restart-approval") == "success"
    (delay_post,) = posts_of("restart-delay")
    assert (delay_post.published_at - started).total_seconds() >= 45, "the delay fired early"
    captions = [json.loads(p.read_text())["caption"] for p in outbox.glob("*.json")]
    assert captions.count("Waited through restarts") == 1 and captions.count("Approved after restarts") == 1
    assert api.task_tries(delayed, "restart-delay", "wait") == 1, "the delay fired twice"


def test_a_platform_failing_for_10_minutes_fails_only_its_target_and_a_retry_touches_only_that_target(
    env: dict,
) -> None:
    """X answers 500 for 10 minutes, longer than the publish task's retries (6, 12, 24 s here; 20 s doubling up to
    15 min in production); the outage is lifted by hand once the run has given up. The other target and another
    workflow are not held up."""
    stack, x, outbox = env["stack"], env["x"], env["team"]["outbox"]
    both = save(workflow("fault_outage", [publish("out", ("x:9001", "x"), ("outbox:demo", "outbox"))]))
    other = save(workflow("fault_bystander", [publish("out", ("outbox:demo", "outbox"))]))
    api = stack.wait_for_dags(both, other)
    x.state.fail_until = time.time() + 600
    start(stack, both, "outage-1", "Survives an X outage")
    start(stack, other, "bystander-1", "Not slowed by X")
    stack.wait("the bystander", lambda: finished(stack, other, "bystander-1"), 120)
    assert api.run_state(other, "bystander-1") == "success"
    assert not finished(stack, both, "outage-1"), "the X target is still backing off while others publish"
    stack.wait("the outage run to give up", lambda: finished(stack, both, "outage-1"), 300)
    assert api.run_state(both, "outage-1") == "failed"
    assert run_row("outage-1").status == "partially_published"
    posts = {p.platform: p for p in posts_of("outage-1")}
    assert posts["outbox"].status == "published" and posts["x"].status == "failed"
    assert "HTTP 500" in (posts["x"].error_message or "")
    assert api.task_tries(both, "outage-1", "out") == 4  # the first try and three backed-off retries
    outbox_attempts = posts["outbox"].attempts
    # After the outage, a retry by hand publishes the failed target only.
    x.state.fail_until = 0.0
    from tests.api_helpers import token_for

    with httpx.Client(base_url=stack.url, timeout=60) as client:
        resp = client.post(f"/kipu/api/posts/{posts['x'].id}/publish", headers=token_for("owner@demo.test"))
        assert resp.status_code == 200, resp.text
    assert len(tweets(x, "Survives an X outage")) == 1
    after = {p.platform: p for p in posts_of("outage-1")}
    assert after["x"].status == "published" and after["outbox"].attempts == outbox_attempts
    assert run_row("outage-1").status == "completed"
    captions = [json.loads(p.read_text())["caption"] for p in outbox.glob("*.json")]
    assert captions.count("Survives an X outage") == 1


def test_two_tasks_hitting_an_expired_token_at_once_refresh_it_once(env: dict) -> None:
    stack, x = env["stack"], env["x"]
    dag_id = save(workflow("fault_refresh", [publish("to_x", ("x:9001", "x"))]))
    stack.wait_for_dags(dag_id)
    x.state.expire_all()
    x.state.token_delay = 2.0  # the first refresh is still in flight when the second task gets its 401
    calls = x.state.token_calls
    start(stack, dag_id, "refresh-1", "Refresh race one")
    start(stack, dag_id, "refresh-2", "Refresh race two")
    stack.wait("both runs", lambda: finished(stack, dag_id, "refresh-1") and finished(stack, dag_id, "refresh-2"), 300)
    x.state.token_delay = 0.0
    assert stack.api().run_state(dag_id, "refresh-1") == "success"
    assert stack.api().run_state(dag_id, "refresh-2") == "success"
    assert x.state.token_calls - calls == 1
    assert len(tweets(x, "Refresh race one")) == 1 and len(tweets(x, "Refresh race two")) == 1


def test_no_platform_token_appears_in_any_log(env: dict) -> None:
    stack, x = env["stack"], env["x"]
    secrets = [*x.state.access, *x.state.refresh, os.environ["ENCRYPTION_KEY"]]
    assert secrets and stack.logs()
    for path in stack.logs():
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {path}"
