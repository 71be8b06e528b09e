"""A real ``airflow api-server`` (and ``kipu api serve``) on a store of their own, for the classes that concern the
deployed app: the door, its content types, and what reaches the logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import pg


@dataclass
class Server:
    url: str
    log: Path
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    store: str = ""

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], log: Path, health: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 150
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(health, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{cmd[:4]} did not come up"
        time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served_store() -> Iterator[str]:
    """A store of the module's own, seeded with the demo team; tokens for each role are made in it."""
    from kipu.store.engine import reset_engines
    from kipu.store.migrate import upgrade

    from tests.conftest import seed_demo_team, use_store

    url = pg.create_database()
    upgrade(url)
    previous = os.environ.get("KIPU_DATABASE_URL")
    use_store(url)
    seed_demo_team()
    yield url
    reset_engines()
    if previous is not None:
        os.environ["KIPU_DATABASE_URL"] = previous
    pg.drop_database(url)


def _tokens(store: str) -> dict[str, dict[str, str]]:
    from tests.api_helpers import token_for
    from tests.conftest import use_store

    use_store(store)
    return {
        "owner": token_for("owner@demo.test"),
        "member": token_for("editor@demo.test"),
        "viewer": token_for("viewer@demo.test"),
        "outsider": token_for("boss@other.test"),
    }


@pytest.fixture(scope="module")
def airflow_server(airflow_db: Path, served_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``airflow api-server`` with the Kipu plugin, as operators run it (media limit 1 MiB to test the door)."""
    port = free_port()
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    env = {**os.environ, "KIPU_DATABASE_URL": served_store, "KIPU_MEDIA_MAX_BYTES": str(1024 * 1024)}
    cmd = [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"]
    proc = start(cmd, log, f"http://127.0.0.1:{port}/api/v2/monitor/health", env)
    try:
        yield Server(f"http://127.0.0.1:{port}", log, _tokens(served_store), served_store)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def kipu_serve(airflow_db: Path, served_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``kipu api serve``: the /kipu app alone, as a developer runs it."""
    port = free_port()
    log = tmp_path_factory.mktemp("kipu-serve") / "kipu-serve.log"
    env = {**os.environ, "KIPU_DATABASE_URL": served_store}
    cmd = [sys.executable, "-m", "kipu.cli", "api", "serve", "--port", str(port), "--host", "127.0.0.1"]
    proc = start(cmd, log, f"http://127.0.0.1:{port}/kipu/openapi.json", env)
    try:
        yield Server(f"http://127.0.0.1:{port}", log, _tokens(served_store), served_store)
    finally:
        stop(proc)
