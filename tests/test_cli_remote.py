"""The ``kipu`` CLI in remote mode against a real ``airflow api-server`` with the Kipu plugin: KIPU_URL and
KIPU_TOKEN, no database access (the CLI's own store URL points nowhere), JSON output, exit codes and roles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.helpers import demo_doc
from tests.tenant.conftest import Server, airflow_server, served_store  # noqa: F401  (module fixtures)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
NO_DATABASE = "postgresql+psycopg2://nobody@127.0.0.1:1/none"


def kipu(server: Server, role: str | None, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIPU_URL": server.url, "KIPU_DATABASE_URL": NO_DATABASE}
    env.pop("KIPU_TOKEN", None)
    if token or role:
        env["KIPU_TOKEN"] = token or server.tokens[role]["Authorization"].removeprefix("Bearer ")  # type: ignore[index]
    return subprocess.run(
        [sys.executable, "-m", "kipu.cli", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def test_the_cli_manages_a_deployed_kipu_through_its_api(airflow_server: Server, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "workflows"
    folder.mkdir()
    for slug in ("remote_a", "remote_b"):
        (folder / f"{slug}.yaml").write_text(yaml.safe_dump(demo_doc(slug=None, name=slug.title())))

    plan = kipu(airflow_server, "member", "plan", str(folder), "--out", str(tmp_path / "plan.json"))
    assert plan.returncode == 2, plan.stderr
    assert "Plan: 2 to create" in plan.stdout
    applied = kipu(airflow_server, "member", "apply", str(folder), "--plan-file", str(tmp_path / "plan.json"))
    assert applied.returncode == 0, applied.stderr
    assert kipu(airflow_server, "member", "plan", str(folder)).returncode == 0

    listed = kipu(airflow_server, "viewer", "workflow", "list", "--team", "demo", "--json")
    assert listed.returncode == 0, listed.stderr
    slugs = {w["slug"]: w for w in json.loads(listed.stdout)}
    assert {"remote_a", "remote_b"} <= set(slugs) and slugs["remote_a"]["status"] == "active"
    table = kipu(airflow_server, "viewer", "workflow", "list", "--team", "demo").stdout
    assert table.splitlines()[0].split()[:3] == ["TEAM", "SLUG", "STATUS"] and "demo  remote_a" in table

    dry = kipu(airflow_server, "viewer", "workflow", "test", "demo/remote_a", "--caption", "Short #bread", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["outcome"].startswith("filtered out by 'skip_ads_and_text'")

    # A manual run with an idempotency key: the second call is the same run.
    runs = [
        kipu(airflow_server, "member", "workflow", "run", "demo/remote_a", "--caption", "Hi", "--media",
             "https://cdn.example/clip.mp4", "--key", "launch-1", "--json")
        for _ in range(2)
    ]  # fmt: skip
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["created"] is True and second["created"] is False
    assert first["workflow_run_id"] == second["workflow_run_id"]
    history = json.loads(kipu(airflow_server, "viewer", "runs", "list", "demo/remote_a", "--json").stdout)
    assert [r["platform_post_id"] for r in history] == ["key:launch-1"]
    assert isinstance(history[0]["steps"], list)

    paused = kipu(airflow_server, "member", "workflow", "pause", "demo/remote_b")
    assert paused.returncode == 0 and paused.stdout.strip() == "demo/remote_b is paused"
    assert kipu(airflow_server, "member", "plan", str(folder)).returncode == 2  # the folder says active
    activated = kipu(airflow_server, "member", "workflow", "activate", "demo/remote_b")
    assert activated.returncode == 0 and activated.stdout.strip() == "demo/remote_b is active"
    shown = kipu(airflow_server, "viewer", "workflow", "show", "demo/remote_a").stdout
    assert shown.startswith("# demo/remote_a ") and "- id: skip_ads_and_text" in shown

    conns = json.loads(kipu(airflow_server, "viewer", "connection", "list", "--team", "demo", "--json").stdout)
    assert {c["platform"] for c in conns} == {"feed", "outbox"} and "access_token" not in json.dumps(conns)
    health = kipu(airflow_server, "viewer", "connection", "health", "--team", "demo")
    assert health.returncode == 0 and "healthy" in health.stdout
    outbox = next(c["id"] for c in conns if c["platform"] == "outbox")
    refresh = kipu(airflow_server, "owner", "connection", "refresh", outbox)
    assert refresh.returncode == 1 and "outbox connections have no tokens to refresh" in refresh.stderr

    post_id = _failed_post(airflow_server.store)
    shown = json.loads(kipu(airflow_server, "viewer", "posts", "show", post_id, "--json").stdout)
    assert shown["status"] == "failed"
    failed = json.loads(kipu(airflow_server, "viewer", "posts", "list", "--status", "failed", "--json").stdout)
    assert [p["id"] for p in failed["items"]] == [post_id]
    retried = kipu(airflow_server, "member", "posts", "retry", post_id, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["post"]["status"] == "published"
    again = kipu(airflow_server, "member", "posts", "retry", post_id)
    assert again.returncode == 0 and "published (it had already landed; not posted again)" in again.stdout

    # Roles, tokens and unknown names give a message and an exit code, never a traceback.
    denied = kipu(airflow_server, "viewer", "apply", str(folder), "--team", "demo")
    assert denied.returncode == 1 and "this needs the member role in the team; you are viewer" in denied.stderr
    deleted = kipu(airflow_server, "member", "workflow", "delete", "demo/remote_b")
    assert deleted.returncode == 1 and "needs the admin role" in deleted.stderr
    assert kipu(airflow_server, "owner", "workflow", "delete", "demo/remote_b").returncode == 0
    missing = kipu(airflow_server, "viewer", "workflow", "show", "demo/nope")
    assert missing.returncode == 1 and "workflow 'nope' not found in team 'demo'" in missing.stderr
    wrong = kipu(airflow_server, None, "workflow", "list", token="kipu_not-a-token")
    assert wrong.returncode == 3 and "refused the token" in wrong.stderr
    no_token = kipu(airflow_server, None, "workflow", "list")
    assert no_token.returncode == 3 and "set KIPU_TOKEN" in no_token.stderr
    for out in (denied, deleted, missing, wrong, no_token):
        assert "Traceback" not in out.stderr


def _failed_post(store: str) -> str:
    """A failed post to the demo outbox, as a publish step leaves it."""
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope
    from kipu.store.models import Connection, Post
    from sqlalchemy import select

    from tests.conftest import use_store

    use_store(store)
    with session_scope() as s:
        team = find_team(s, "demo")
        conn = s.scalar(select(Connection).where(Connection.team_id == team.id, Connection.platform == "outbox"))
        post = Post(
            id=uuid.uuid4(),
            team_id=team.id,
            connection_id=conn.id,
            platform="outbox",
            content_type="text",
            caption="Retry me",
            status="failed",
            error_message="Transient: the outbox was full",
        )
        s.add(post)
        return str(post.id)
