"""The compose topology, natively: ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and a
Celery worker on the local PostgreSQL and Redis. ``kipu_poll`` finds new posts on a fake platform, an approval is
answered through the HITL REST API, and every item is published exactly once. Every process is stopped after."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select

from tests import pg
from tests.conftest import REPO
from tests.fakes.platform_server import PlatformServer
from tests.helpers import demo_doc, step

pytestmark = pytest.mark.slow
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")


def _port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[dict]:
    """Every Airflow component as its own process, CeleryExecutor on Redis, metadata and store on PostgreSQL."""
    assert redis.Redis(host="127.0.0.1", port=6379).ping(), "Redis on 127.0.0.1:6379 is needed"
    metadata = pg.create_database()
    port = _port()
    home = tmp_path / "airflow"
    (home / "plugins").mkdir(parents=True)
    broker_db = 1 + int(uuid.uuid4().int % 14)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "KIPU_DATABASE_URL": pg_url,
        "KIPU_HOME": str(tmp_path / "kipu"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for component in COMPONENTS:
            args = component.split() + (["--port", str(port), "--workers", "1"] if component == "api-server" else [])
            if component == "celery worker":
                args += ["--concurrency", "4"]
            log = (tmp_path / f"{component.replace(' ', '-')}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield {"url": f"http://127.0.0.1:{port}", "home": home, "logs": tmp_path, "procs": procs}
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        redis.Redis(host="127.0.0.1", port=6379, db=broker_db).flushdb()
        pg.drop_database(metadata)


def _wait(what: str, predicate, stack: dict, timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        for proc, name in zip(stack["procs"], COMPONENTS, strict=True):
            log = stack["logs"] / f"{name.replace(' ', '-')}.log"
            assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_poll_approve_publish_exactly_once_on_celery(stack: dict, pg_demo_team: dict) -> None:
    from kipu.airflow_api import AirflowAPI
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
        password_file = stack["home"] / "simple_auth_manager_passwords.json.generated"
        _wait(
            "the api-server",
            lambda: password_file.exists() and httpx.get(f"{stack['url']}/api/v2/monitor/health").status_code == 200,
            stack,
        )
        api = AirflowAPI(stack["url"], username="admin", password=json.loads(password_file.read_text())["admin"])
        _wait(
            "the DAGs to be parsed",
            lambda: api.dag_exists("kipu_poll") and api.dag_exists("kipu_demo_crosspost"),
            stack,
        )
        api.unpause("kipu_poll")
        api.unpause("kipu_demo_crosspost")
        assert api.trigger("kipu_poll", "distributed_cycle", {})
        _wait("the poll cycle", lambda: api.run_state("kipu_poll", "distributed_cycle") in ("success", "failed"), stack)
        assert api.run_state("kipu_poll", "distributed_cycle") == "success"
        with session_scope() as s:
            started = {r.platform_post_id: r.dag_run_id for r in s.scalars(select(WorkflowRun))}
        assert set(started) == {"short-1", "long-1", "ad-1"} and all(started.values())

        seen: dict[str, float] = {}

        def finished() -> bool:
            for approval in api.pending_approvals("kipu_demo_crosspost"):
                first = seen.setdefault(approval.dag_run_id, time.monotonic())
                if time.monotonic() - first > 8:  # a human takes seconds; see docs/architecture.md
                    api.answer(approval, "Approve")
            states = [api.run_state("kipu_demo_crosspost", r) for r in started.values()]
            return all(st in ("success", "failed") for st in states)

        _wait("the workflow runs", finished, stack, timeout=300)
        # A second cycle finds nothing new and starts nothing twice.
        assert api.trigger("kipu_poll", "distributed_cycle_2", {})
        _wait(
            "the second cycle",
            lambda: api.run_state("kipu_poll", "distributed_cycle_2") in ("success", "failed"),
            stack,
        )
    with session_scope() as s:
        runs = {r.platform_post_id: r for r in s.scalars(select(WorkflowRun))}
        posts = s.scalars(select(Post)).all()
    for key in ("short-1", "long-1"):
        assert runs[key].status == "completed", (key, runs[key].status, runs[key].error_message)
    assert runs["ad-1"].status == "skipped"
    assert sorted(p.status for p in posts) == ["published", "published"]
    assert len(list(pg_demo_team["outbox"].glob("*.json"))) == 2
    # No secret in any log line of the whole run: every component's output and every task log.
    logs = [*stack["logs"].glob("*.log"), *(stack["home"] / "logs").rglob("*")]
    secrets = ["tok-OUTBOX-SECRET-0001", os.environ["ENCRYPTION_KEY"]]
    for path in (p for p in logs if p.is_file()):
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {path}"
    assert any((stack["home"] / "logs").rglob("*.log")), "the task logs were read"
