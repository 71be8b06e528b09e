"""The /kipu API through a real ``airflow api-server`` process: the plugin is mounted where operators run it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import token_for
from tests.conftest import dag_folder_parsed
from tests.helpers import demo_doc

pytestmark = pytest.mark.slow
ADMIN_PASSWORD = "admin-test-password"


@pytest.fixture
def server(airflow_db: Path, pg_demo_team: dict, tmp_path: Path) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = (tmp_path / "api-server.log").open("wb")
    (tmp_path / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "airflow api-server did not come up"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_kipu_routes_through_airflow_api_server(server: str) -> None:
    headers = token_for("editor@demo.test")
    teams = httpx.get(f"{server}/kipu/api/teams", headers=headers)
    assert teams.status_code == 200 and teams.json()[0]["slug"] == "demo"
    created = httpx.post(f"{server}/kipu/api/workflows", json=demo_doc(), headers=headers)
    assert created.status_code == 201, created.text
    assert httpx.get(f"{server}/kipu/api/workflows").status_code == 401
    docs = httpx.get(f"{server}/kipu/openapi.json")
    assert docs.status_code == 200 and "/api/workflows/{workflow_id}/run" in docs.json()["paths"]


def test_a_task_asks_airflow_for_parses_through_its_rest_api(server: str) -> None:
    """Airflow 3 closes its database to tasks and DAG files: the poll cycle's ``reconcile`` then asks through the
    REST API and the ``kipu_airflow_api`` connection. Run in a process whose ORM access is blocked as a task's is."""
    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    with session_scope() as s:
        wf = save_workflow(s, demo_doc(name="Parsed", slug="parsed"))
    with dag_folder_parsed():  # as after a first parse: the workflow's DAG and kipu_shards exist
        _reconcile_through_rest(server, wf)


def _reconcile_through_rest(server: str, wf: Any) -> None:
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from kipu.factory.shards import STATUS_FILE, file_name, shard_count, shard_key, shard_of
    from kipu.factory.status import ShardStatus, record
    from kipu.store.types import utcnow
    from sqlalchemy import select

    shard = shard_of(shard_key(wf.id), shard_count())
    # The shard was last served from its snapshot, and the status file has not reported it.
    record(
        ShardStatus(
            index=shard,
            count=shard_count(),
            source="snapshot",
            seconds=0.1,
            budget=15.0,
            workflows=1,
            dags=1,
            at=utcnow(),
            dag_id=wf.dag_id,
        )
    )
    script = (
        "from airflow.sdk.execution_time.supervisor import block_orm_access; block_orm_access()\n"
        "from kipu.factory.reparse import airflow, reconcile\n"
        "print(type(airflow()).__name__, reconcile())\n"
    )
    conn = json.dumps({"conn_type": "http", "host": server, "login": "admin", "password": ADMIN_PASSWORD})
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "AIRFLOW_CONN_KIPU_AIRFLOW_API": conn},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == f"_RestAPI {[file_name(shard, shard_count()), STATUS_FILE]}"
    with create_session() as s:
        asked = set(s.scalars(select(DagPriorityParsingRequest.relative_fileloc)))
    assert asked == {file_name(shard, shard_count()), STATUS_FILE}
    assert ADMIN_PASSWORD not in run.stdout + run.stderr
    # Without the connection, it says what is missing, and the poll cycle goes on.
    bare = subprocess.run(
        [sys.executable, "-c", script.replace("print(type(airflow()).__name__, ", "print(")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 0 and bare.stdout.strip().splitlines()[-1] == "[]"
    assert "no kipu_airflow_api connection is defined" in bare.stdout + bare.stderr
