"""``docker-compose.airflow.yml`` validates with Debian's docker-compose and holds the CeleryExecutor topology."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.airflow.yml"
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"]


def compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian's package) is required; .ci/run installs it"
    return subprocess.run(
        [exe, "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture
def filled_env(tmp_path: Path) -> Path:
    """``.env.example`` with every empty secret filled in, as a user would."""
    lines = []
    for line in (REPO / ".env.example").read_text().splitlines():
        if re.fullmatch(r"[A-Z_]+=", line):
            line += "test-value-" + line[:-1].lower()
        lines.append(line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compose_config_validates_with_the_celery_topology(filled_env: Path) -> None:
    out = compose("config", env_file=filled_env)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    services = config["services"]
    assert {"postgres", "redis", "airflow-init", *AIRFLOW} <= set(services)
    for name in AIRFLOW:
        svc = services[name]
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert svc["environment"]["KIPU_DATABASE_URL"].endswith("@postgres:5432/kipu"), name
        assert svc["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow"), name
        assert "healthcheck" in svc, f"{name} has no health check"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["command"] in ("celery worker", ["celery", "worker"])
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "kipu db upgrade" in init
    assert services["postgres"]["healthcheck"] and services["redis"]["healthcheck"]


def test_secrets_come_from_the_env_file_only(tmp_path: Path) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"(PASSWORD|SECRET|KEY):\s*[\"']?[A-Za-z0-9+/=_-]{8,}", text), (
        "a literal secret is in the file"
    )
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = compose("config", env_file=empty)
    assert out.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in out.stderr or "set AIRFLOW_FERNET_KEY in .env" in out.stderr
