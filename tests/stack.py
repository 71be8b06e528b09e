"""The compose topology as native processes: ``airflow api-server``, ``scheduler``, ``dag-processor``,
``triggerer`` and Celery workers on PostgreSQL and Redis; components can be killed and restarted by a test."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from tests import pg

REPO = Path(__file__).resolve().parents[1]

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class AirflowStack:
    """Every Airflow component as its own process group, CeleryExecutor on Redis, metadata on PostgreSQL."""

    def __init__(
        self,
        tmp: Path,
        store_url: str,
        *,
        workers: int = 1,
        concurrency: int = 4,
        env: dict[str, str] | None = None,
        metadata: str | None = None,
        restart_always: bool = False,
    ) -> None:
        assert redis.Redis(host="127.0.0.1", port=6379).ping(), "Redis on 127.0.0.1:6379 is needed"
        self.own_metadata = metadata is None
        self.tmp, self.metadata, self.port = tmp, metadata or pg.create_database(), free_port()
        # Compose's `restart: always`: a component that exits (a database outage can do that) is started again.
        self.restart_always = restart_always
        self.restarts: dict[str, int] = {}
        self._last_restart: dict[str, float] = {}
        self.home = tmp / "airflow"
        (self.home / "plugins").mkdir(parents=True, exist_ok=True)
        self.broker_db = 1 + int(uuid.uuid4().int % 14)
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.concurrency = workers, concurrency
        # As the compose file: the admin's password is the operator's, and Kipu's tasks reach Airflow's REST API
        # through the kipu_airflow_api connection (run notes, parse requests where Airflow closes its database).
        self.admin_password = secrets.token_urlsafe(18)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({"admin": self.admin_password}))
        api_conn = {"conn_type": "http", "host": self.url, "login": "admin", "password": self.admin_password}
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW_CONN_KIPU_AIRFLOW_API": json.dumps(api_conn),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{self.broker_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata,
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "kipu.celery_config.CELERY_CONFIG",
            # As the compose file: a task's slot is free within a second of its process exiting (docs/deploy.md).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "KIPU_DATABASE_URL": store_url,
            "KIPU_HOME": str(tmp / "kipu"),
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: set[str] = set()
        self._api: Any = None

    # -- processes ----------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [c for c in COMPONENTS if c != "celery worker"] + [
            f"celery worker {i}" if i else "celery worker" for i in range(self.workers)
        ]

    def log_path(self, name: str) -> Path:
        return self.tmp / f"{name.replace(' ', '-')}.log"

    def _spawn(self, name: str) -> None:
        if name.startswith("celery worker"):
            args = ["celery", "worker", "--concurrency", str(self.concurrency)]
            if name != "celery worker":
                args += ["--celery-hostname", f"{name.replace(' ', '-')}@%h"]
        else:
            args = [name]
        if name == "api-server":
            args += ["--port", str(self.port), "--workers", "1"]
        log = self.log_path(name).open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stopped.discard(name)

    def start(self) -> AirflowStack:
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, check=True, capture_output=True
        )
        for name in self.names():
            self._spawn(name)
        return self

    def kill(self, name: str, sig: int = signal.SIGTERM, wait: float = 60) -> None:
        """Stop one component (its whole process group), as a container stop or a crash would."""
        proc = self.procs[name]
        self.stopped.add(name)
        if proc.poll() is None:
            # Task processes may run in sessions of their own (Airflow's supervisor): signal every descendant.
            children = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, sig)
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.kill(name, sig)
        self._spawn(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        redis.Redis(host="127.0.0.1", port=6379, db=self.broker_db).flushdb()
        if self.own_metadata:
            pg.drop_database(self.metadata)

    # -- waiting ------------------------------------------------------------------------------------------------
    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 240, every: float = 2) -> None:
        """Poll ``predicate`` until true; fail at once, with its log, if a component died."""
        deadline = time.monotonic() + timeout
        while True:
            self.supervise()
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.diagnose()}")
            time.sleep(every)

    def diagnose(self, chars: int = 2500) -> str:
        """What a timeout needs to be understood from CI's output alone: recent DAG runs and each log's tail."""
        parts = []
        try:
            runs = self.api().request("GET", "/dags/~/dagRuns", params={"limit": 30, "order_by": "-start_date"})
            for run in runs.json().get("dag_runs", []):
                parts.append(f"run {run['dag_id']} {run['dag_run_id']} {run['state']} started {run.get('start_date')}")
        except Exception as exc:  # the diagnosis must never hide the timeout itself
            parts.append(f"(DAG runs unavailable: {exc})")
        for name in self.procs:
            text = self.log_path(name).read_text(errors="replace")[-chars:] if self.log_path(name).exists() else ""
            parts.append(f"--- {name} log tail ---\n{text}")
        return "\n".join(parts)

    def supervise(self) -> None:
        """Fail at once, with its log, if a component died; with ``restart_always``, start it again instead."""
        for name, proc in list(self.procs.items()):
            if name in self.stopped or proc.poll() is None:
                continue
            if not self.restart_always:
                raise AssertionError(f"{name} exited:\n{self.log_path(name).read_text()[-3000:]}")
            if time.monotonic() - self._last_restart.get(name, 0.0) >= 5:  # compose waits between restarts too
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._last_restart[name] = time.monotonic()
                self._spawn(name)

    def hold(self, seconds: float) -> None:
        """Let ``seconds`` pass while keeping the restart policy."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervise()
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def api(self) -> Any:
        """Airflow's REST API as admin, once the api-server answers."""
        from kipu.airflow_api import AirflowAPI

        if self._api is None:
            self.wait("the api-server", lambda: httpx.get(f"{self.url}/api/v2/monitor/health").status_code == 200)
            self._api = AirflowAPI(self.url, username="admin", password=self.admin_password)
        return self._api

    def wait_for_dags(self, *dag_ids: str) -> Any:
        api = self.api()
        self.wait(f"DAGs {dag_ids} to be parsed", lambda: all(api.dag_exists(d) for d in dag_ids))
        for dag_id in dag_ids:
            api.unpause(dag_id)
        return api

    def logs(self) -> list[Path]:
        """Every component's output and every task log."""
        found = [*self.tmp.glob("*.log"), *(self.home / "logs").rglob("*")]
        return [p for p in found if p.is_file()]
