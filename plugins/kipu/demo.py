"""``make demo``: a stored workflow takes real items from a feed through every step type on Airflow standalone.

Runs on the embedded default (SQLite, no accounts, no network): seeds a team, a feed and an outbox, starts
``airflow standalone`` in the background, runs one ``kipu_poll`` cycle (which records each feed item and starts
one DAG run per item), answers the approvals through Airflow's HITL REST API, and prints what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from kipu.config import env_number

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "include" / "demo"
PORT = env_number("KIPU_DEMO_PORT", 28080, minimum=1)
APPROVAL_THINK_SECONDS = 8


def prepare_env() -> Path:
    """Airflow and Kipu settings for the demo; must run before Airflow is imported."""
    home = Path(os.environ.setdefault("KIPU_HOME", str(REPO / ".kipu"))).resolve()
    os.environ["KIPU_HOME"] = str(home)
    airflow_home = home / "airflow"
    defaults = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(airflow_home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(PORT),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{PORT}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "KIPU_DATABASE_URL": f"sqlite:///{home / 'kipu.db'}",
        "ENCRYPTION_KEY_FILE": str(home / "encryption.key"),
        "KIPU_OUTBOX": str(home / "outbox"),
        # The demo reads its feed and media from local files: the egress guard's demo-and-tests setting.
        "KIPU_EGRESS_ALLOW_PRIVATE": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    (airflow_home / "plugins").mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return home


def say(msg: str) -> None:
    print(f"[kipu demo] {msg}", flush=True)


def seed(home: Path) -> str:
    """Team, members, feed and outbox connections, and the demo workflow; idempotent."""
    import yaml

    from kipu.store.accounts import add_member, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    with session_scope() as s:
        owner = get_or_create_profile(s, "owner@demo.test", "Demo Owner", airflow_username="admin")
        team = get_or_create_team(s, "Demo", owner, "demo")
        add_member(s, team, get_or_create_profile(s, "editor@demo.test", "Demo Editor"), "member")
        add_member(s, team, get_or_create_profile(s, "viewer@demo.test", "Demo Viewer"), "viewer")
        upsert_connection(s, team, "feed", "demo", username="Ana's Kitchen", metadata={"url": str(DEMO / "feed.xml")})
        upsert_connection(
            s, team, "outbox", "demo", username="Demo outbox", metadata={"path": os.environ["KIPU_OUTBOX"]}
        )
        wf = save_workflow(s, yaml.safe_load((DEMO / "workflow.yaml").read_text()))
        return str(wf.id)


def start_airflow(home: Path) -> subprocess.Popen[bytes]:
    log = (home / "standalone.log").open("ab")
    say(f"starting Airflow standalone on http://127.0.0.1:{PORT} (log: {home / 'standalone.log'})")
    return subprocess.Popen(
        ["airflow", "standalone"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
    )


def stop_airflow(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, what: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"Airflow exited while waiting for {what}; see .kipu/standalone.log")
        if predicate():
            return
        time.sleep(1)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def decide(subject_item: dict) -> str:
    """The demo approver: approve everything except drafts."""
    tags = {t.casefold() for t in subject_item.get("hashtags", [])}
    return "Reject" if "draft" in tags else "Approve"


def summary(workflow_id: str, new_files: int) -> None:
    from sqlalchemy import select

    from kipu.store.engine import session_scope
    from kipu.store.models import Post, WorkflowRun, WorkflowStep, WorkflowStepRun

    with session_scope() as s:
        runs = s.scalars(
            select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id).order_by(WorkflowRun.platform_post_id)
        ).all()
        print()
        print("item       outcome")
        print("           steps: ✓ completed  – skipped  ✗ failed  … waiting")
        print("-" * 100)
        mark = {"completed": "✓", "skipped": "–", "failed": "✗", "running": "…"}
        for run in runs:
            rows = s.execute(
                select(WorkflowStep.step_key, WorkflowStepRun.status)
                .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
                .where(WorkflowStepRun.run_id == run.id)
                .order_by(WorkflowStep.order_index)
            ).all()
            posts = s.scalars(select(Post).where(Post.workflow_run_id == run.id, Post.status == "published")).all()
            outcome = run.status or "?"
            if run.error_message:
                outcome += f" ({run.error_message})"
            elif posts:
                outcome += f" (published {len(posts)}: {', '.join(p.platform for p in posts)})"
            title = (run.trigger_data or {}).get("title") or ""
            print(f"{run.platform_post_id:<10} {title!r}: {outcome}")
            print(f"{'':<10} " + " → ".join(f"{mark.get(st or '', '?')}{k}" for k, st in rows))
    outbox = Path(os.environ["KIPU_OUTBOX"])
    print()
    say(f"outbox: {outbox} ({len(list(outbox.glob('*.json')))} posts, {new_files} new in this run)")


def main(args: argparse.Namespace | None = None) -> int:
    home = prepare_env()
    from kipu.store.crypto import ensure_key_file

    ensure_key_file(Path(os.environ["ENCRYPTION_KEY_FILE"]))
    say(f"home {home}; store {os.environ['KIPU_DATABASE_URL']}")
    subprocess.run(["airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    from kipu.store.migrate import upgrade

    upgrade()
    workflow_id = seed(home)
    say(f"seeded team 'demo' (owner, member, viewer), a feed and an outbox; workflow {workflow_id}")

    from kipu.airflow_api import AirflowAPI
    from kipu.platforms.feed.hook import FeedHook
    from kipu.store.engine import session_scope
    from kipu.store.models import WorkflowRun

    outbox = Path(os.environ["KIPU_OUTBOX"])
    before = len(list(outbox.glob("*.json"))) if outbox.exists() else 0
    proc = start_airflow(home)
    try:
        password_file = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        wait_for(lambda: password_file.exists(), "the Airflow password file", 120, proc)
        password = json.loads(password_file.read_text())["admin"]
        api = AirflowAPI(f"http://127.0.0.1:{PORT}", username="admin", password=password)
        wait_for(api.healthy, "the Airflow API server", 180, proc)
        dag_id = "kipu.demo.demo_crosspost"
        wait_for(lambda: api.dag_exists(dag_id), f"DAG {dag_id} to be parsed", 180, proc)
        api.unpause(dag_id)
        say(f"Airflow is up; DAG {dag_id} loaded")

        # The poll engine finds the items: kipu_poll defers the cycle to the triggerer, records each new item,
        # then starts one DAG run per item under its deterministic run id.
        wait_for(lambda: api.dag_exists("kipu_poll"), "DAG kipu_poll to be parsed", 180, proc)
        began = datetime.now(UTC)
        api.unpause("kipu_poll")
        poll_run = f"kipu_demo__{began:%Y%m%dT%H%M%S}"
        api.trigger("kipu_poll", poll_run, {})
        say(f"started a poll cycle ({poll_run}): kipu_poll → KipuPollTrigger in the triggerer")
        wait_for(lambda: api.run_state("kipu_poll", poll_run) in ("success", "failed"), "the poll cycle", 300, proc)
        if api.run_state("kipu_poll", poll_run) != "success":
            raise SystemExit("the poll cycle failed; see the kipu_poll run in the Airflow UI")
        items = FeedHook(str(DEMO / "feed.xml")).list_posts()
        started: dict[str, str] = {}
        with session_scope() as s:
            for run in s.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.workflow_id == uuid.UUID(workflow_id))
                .order_by(WorkflowRun.platform_post_id)
            ):
                if run.start_requested_at and run.start_requested_at >= began and run.dag_run_id:
                    started[run.dag_run_id] = run.platform_post_id or ""
                    say(f"{run.platform_post_id}: new item, started run {run.dag_run_id}")
                else:
                    say(f"{run.platform_post_id}: already recorded and run ({run.status}); nothing to publish again")
        if not started:
            say("no new items in the feed: nothing was started and nothing was published twice")
        items_by_id = {i.platform_post_id: i for i in items}

        first_seen: dict[tuple[str, str], float] = {}

        def done() -> bool:
            for approval in api.pending_approvals(dag_id):
                # A human takes seconds; answering within the same scheduler beat races the executor's
                # report of the parked attempt (Airflow 3.3.2 then fails the task), so wait a few beats.
                seen = first_seen.setdefault((approval.dag_run_id, approval.task_id), time.monotonic())
                if time.monotonic() - seen < APPROVAL_THINK_SECONDS:
                    continue
                post_id = started.get(approval.dag_run_id)
                item = items_by_id.get(post_id or "")
                choice = decide(item.model_dump() if item else {})
                api.answer(approval, choice)
                say(f"{post_id}: {approval.task_id} answered '{choice}' through the HITL REST API")
            states = {r: api.run_state(dag_id, r) for r in started}
            return all(st in ("success", "failed") for st in states.values())

        wait_for(done, "the runs to finish", 600, proc)
        after = len(list(outbox.glob("*.json")))
        summary(workflow_id, after - before)
        if started:
            say("run `make demo` again: the feed has nothing new, so nothing is published twice")
        return 0
    finally:
        stop_airflow(proc)
        say("stopped Airflow")


if __name__ == "__main__":
    sys.exit(main())
