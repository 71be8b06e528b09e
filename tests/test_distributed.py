"""The compose topology, natively: ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and a
Celery worker on the local PostgreSQL and Redis. ``kipu_poll`` finds new posts on a fake platform, an approval is
answered through the HITL REST API, a signed webhook delivery starts its run in the request, and every item is
published exactly once. Every process is stopped after."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import REPO
from tests.fakes.meta_webhook import page_delivery
from tests.fakes.platform_server import PlatformServer
from tests.helpers import demo_doc, step
from tests.stack import AirflowStack

pytestmark = [pytest.mark.slow, pytest.mark.stack]
PAGE_SECRET = "meta-app-secret-for-the-stack"


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[AirflowStack]:
    stack = AirflowStack(tmp_path, pg_url, env={"KIPU_FACEBOOK_APP_SECRET": PAGE_SECRET}).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_poll_approve_publish_exactly_once_on_celery(stack: AirflowStack, pg_demo_team: dict) -> None:
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, WorkflowRun
    from kipu.store.workflows import save_workflow

    with PlatformServer() as host:
        src = host.source("ana")
        media = REPO / "include" / "demo" / "media"
        clip = {"url": (media / "pasta.mp4").as_uri(), "mime_type": "video/mp4", "duration_in_seconds": 30}
        src.add("short-1", "Quick pasta #pasta", minutes_ago=3, attachments=[clip])
        src.add(
            "long-1",
            "Market tour #market",
            minutes_ago=2,
            attachments=[{"url": (media / "tour.mp4").as_uri(), "mime_type": "video/mp4", "duration_in_seconds": 240}],
        )
        src.add("ad-1", "Buy this #ad", minutes_ago=1)
        from kipu.store.accounts import find_team, upsert_connection

        with session_scope() as s:
            upsert_connection(s, find_team(s, "demo"), "feed", "ana", metadata={"url": host.feed_url("ana")})
            doc = demo_doc()
            doc["trigger"] = {
                "type": "poll",
                "connection_id": "feed:ana",
                "platform": "feed",
                "backfill": "last_n",
                "backfill_count": 10,
            }
            step(doc, "team_review")["config"] = {"approvers": ["admin"], "timeout_hours": 1}
            save_workflow(s, doc)
            upsert_connection(s, find_team(s, "demo"), "facebook", "1234", username="Ana's Kitchen")
            save_workflow(s, page_workflow())
        api = stack.wait_for_dags("kipu_poll", "kipu.demo.demo_crosspost", "kipu.demo.page_hooks")
        assert api.trigger("kipu_poll", "distributed_cycle", {})
        stack.wait("the poll cycle", lambda: api.run_state("kipu_poll", "distributed_cycle") in ("success", "failed"))
        assert api.run_state("kipu_poll", "distributed_cycle") == "success"
        # The cycle started in the triggerer: the scheduler deferred it straight away, and no worker ran it.
        cycle = api.request("GET", "/dags/kipu_poll/dagRuns/distributed_cycle/taskInstances/poll_sources").json()
        assert cycle["state"] == "success" and cycle["queued_when"] is None and not cycle["hostname"], cycle
        with session_scope() as s:
            started = {r.platform_post_id: r.dag_run_id for r in s.scalars(select(WorkflowRun))}
        assert set(started) == {"short-1", "long-1", "ad-1"} and all(started.values())

        seen: dict[str, float] = {}

        def finished() -> bool:
            for approval in api.pending_approvals("kipu.demo.demo_crosspost"):
                first = seen.setdefault(approval.dag_run_id, time.monotonic())
                if time.monotonic() - first > 8:  # a human takes seconds; see docs/architecture.md
                    api.answer(approval, "Approve")
            states = [api.run_state("kipu.demo.demo_crosspost", r) for r in started.values()]
            return all(st in ("success", "failed") for st in states)

        stack.wait("the workflow runs", finished, timeout=300)
        # Each run's outcome is its note in Airflow, set by its task through the REST API (kipu_airflow_api).
        for key, run_id in started.items():
            run = api.request("GET", f"/dags/kipu.demo.demo_crosspost/dagRuns/{run_id}").json()
            assert run["note"], (key, run)
        # A Page's webhook delivery starts its run in the request, through the API server, and waits for no cycle.
        body, headers = page_delivery("1234", "1234_77", "Fresh from the Page #pasta", PAGE_SECRET)
        delivered = httpx.post(f"{stack.url}/kipu/api/webhooks/facebook", content=body, headers=headers, timeout=60)
        assert delivered.status_code == 200 and delivered.json()["started"] == 1, delivered.text
        with session_scope() as s:
            hooked = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == "1234_77"))
            assert hooked is not None and hooked.source == "webhook" and hooked.dag_run_id
        stack.wait(
            "the webhook's run",
            lambda: api.run_state("kipu.demo.page_hooks", hooked.dag_run_id) in ("success", "failed"),
            timeout=120,
        )
        assert api.run_state("kipu.demo.page_hooks", hooked.dag_run_id) == "success"
        # A second cycle finds nothing new and starts nothing twice.
        assert api.trigger("kipu_poll", "distributed_cycle_2", {})
        stack.wait(
            "the second cycle", lambda: api.run_state("kipu_poll", "distributed_cycle_2") in ("success", "failed")
        )
    with session_scope() as s:
        runs = {r.platform_post_id: r for r in s.scalars(select(WorkflowRun))}
        posts = s.scalars(select(Post)).all()
    for key in ("short-1", "long-1", "1234_77"):
        assert runs[key].status == "completed", (key, runs[key].status, runs[key].error_message)
    assert runs["ad-1"].status == "skipped"
    assert sorted(p.status for p in posts) == ["published"] * 3
    assert len(list(pg_demo_team["outbox"].glob("*.json"))) == 3
    # No secret in any log line of the whole run: every component's output and every task log.
    secrets = ["tok-OUTBOX-SECRET-0001", os.environ["ENCRYPTION_KEY"], stack.admin_password, PAGE_SECRET]
    for path in stack.logs():
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {path}"
    assert any((stack.home / "logs").rglob("*.log")), "the task logs were read"


def page_workflow() -> dict:
    """A workflow started by Facebook Page 1234's webhooks that publishes to the demo outbox."""
    return {
        "name": "From the Page",
        "slug": "page_hooks",
        "team": "demo",
        "status": "active",
        "trigger": {"type": "webhook", "connection_id": "facebook:1234", "platform": "facebook"},
        "steps": [{"id": "publish", "type": "publish", "connection_id": "outbox:demo", "platform": "outbox"}],
    }
