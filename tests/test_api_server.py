"""The /kipu API through a real ``airflow api-server`` process: the plugin is mounted where operators run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_helpers import token_for
from tests.helpers import demo_doc

pytestmark = pytest.mark.slow


@pytest.fixture
def server(airflow_db: Path, pg_demo_team: dict, tmp_path: Path) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = (tmp_path / "api-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
        env=os.environ.copy(),
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
