"""End-to-end latency on the native distributed stack, Kipu against bare Airflow on the same stack and workers.

Four paths, one after another on one stack (Celery on Redis, PostgreSQL), each with a burst of ``--items`` items:
- ``bare``: the baseline, a plain DAG of the same three steps (``bench/bare/bench_bare.py``), one run per item started
  through Airflow's REST API as the items appear;
- ``api``: Kipu's manual-run path, ``POST /kipu/api/workflows/{id}/run`` per item (filter, offline rewrite, publish);
- ``poll``: the items appear on a fake platform and the scheduled ``kipu_poll`` (1-minute interval) picks them up;
- ``webhook``: each item is announced as it appears by a signed Facebook Page webhook delivery to
  ``/kipu/api/webhooks/facebook``, one delivery per item as Meta sends them.

Prints, per path, the median, p95 and first item's latency and the throughput, then each Kipu path's ratio to bare."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

from cryptography.fernet import Fernet  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="kipu-bench-e2e-"))
BARE_OUTBOX = TMP / "outbox-bare"
os.environ.update(
    {
        "KIPU_HOME": str(TMP / "kipu"),
        "ENCRYPTION_KEY": os.environ.get("ENCRYPTION_KEY") or Fernet.generate_key().decode(),
        # The fake platform listens on 127.0.0.1, which the egress guard refuses outside the demo and the tests.
        "KIPU_EGRESS_ALLOW_PRIVATE": "1",
        "KIPU_BENCH_BARE_OUTBOX": str(BARE_OUTBOX),
    }
)

from tests import pg  # noqa: E402
from tests.fakes.meta_webhook import page_delivery  # noqa: E402

PATHS = ("bare", "api", "poll", "webhook")
HOOK_SECRET = "bench-meta-app-secret"
HOOK_PAGE = "1234"


def use_store(url: str) -> None:
    from kipu.store.engine import reset_engines

    os.environ["KIPU_DATABASE_URL"] = url
    reset_engines()


def workflow(feed: str) -> dict:
    return {
        "name": "Bench e2e",
        "slug": "bench_e2e",
        "team": "demo",
        "status": "active",
        "trigger": {"type": "poll", "connection_id": f"feed:{feed}", "platform": "feed", "poll_interval_minutes": 1},
        "steps": STEPS,
    }


def hook_workflow() -> dict:
    """The same steps, started by the Page's webhook deliveries."""
    trigger = {"type": "webhook", "connection_id": f"facebook:{HOOK_PAGE}", "platform": "facebook"}
    return {
        "name": "Bench e2e webhook",
        "slug": "bench_hook",
        "team": "demo",
        "status": "active",
        "trigger": trigger,
        "steps": STEPS,
    }


STEPS: list[dict] = [
    {
        "id": "no_ads",
        "type": "filter",
        "config": {"conditions": [{"field": "hashtags", "operator": "not_contains", "value": "ad"}]},
    },
    {"id": "rewrite", "type": "ai_rewrite", "config": {"target_platform": "bluesky"}},
    {"id": "publish", "type": "publish", "connection_id": "outbox:demo", "platform": "outbox"},
]


def kipu_published() -> dict[str, datetime]:
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, WorkflowRun
    from sqlalchemy import select

    with session_scope() as s:
        rows = s.execute(
            select(WorkflowRun.platform_post_id, Post.published_at)
            .join(Post, Post.workflow_run_id == WorkflowRun.id)
            .where(Post.status == "published")
        ).all()
    return {key: when for key, when in rows if when is not None}


def kipu_recorded() -> dict[str, datetime]:
    """When Kipu asked Airflow for each item's DAG run: for the poll path, just after a cycle found it."""
    from kipu.store.engine import session_scope
    from kipu.store.models import WorkflowRun
    from sqlalchemy import select

    with session_scope() as s:
        rows = s.execute(select(WorkflowRun.platform_post_id, WorkflowRun.start_requested_at)).all()
    return {key: when for key, when in rows if when is not None}


def bare_published() -> dict[str, datetime]:
    out = {}
    for path in BARE_OUTBOX.glob("*.json"):
        body = json.loads(path.read_text())
        out[body["key"]] = datetime.fromisoformat(body["published_at"])
    return out


def dags_folder() -> Path:
    """Kipu's DAG files and the bare DAG in one folder, so both run on the same stack."""
    folder = TMP / "dags"
    folder.mkdir()
    for path in [*sorted((REPO / "dags").glob("*.py")), REPO / "bench" / "bare" / "bench_bare.py"]:
        (folder / path.name).symlink_to(path)
    return folder


def measure(
    name: str,
    items: int,
    start: Callable[[str, int], None],
    published: Callable[[], dict[str, datetime]],
    timeout: float,
    appeared: dict[str, datetime],
) -> dict[str, float]:
    """Start ``items`` items as a burst and wait for all of them; latency from each item's appearance."""
    for i in range(items):
        key = f"{name}-{i:04d}"
        appeared[key] = datetime.now(UTC)
        start(key, i)
    deadline = time.monotonic() + timeout
    while len(done := {k: v for k, v in published().items() if k in appeared}) < items:
        if time.monotonic() > deadline:  # report what was measured rather than nothing
            print(f"{name}: only {len(done)} of {items} items were published within {timeout:g}s")
            break
        time.sleep(1)
    latencies = sorted((done[k] - appeared[k]).total_seconds() for k in done)
    span = (max(done.values()) - min(appeared.values())).total_seconds()
    # The rate once items flow, without the wait before the first one (a poll interval on the poll path).
    flow = (max(done.values()) - min(done.values())).total_seconds()
    extra: dict[str, float] = {}
    if published is kipu_published:
        # Split each latency where Kipu asked for the item's DAG run: the wait to be noticed, then the run.
        recorded = kipu_recorded()
        noticed = sorted((recorded[k] - appeared[k]).total_seconds() for k in done if k in recorded)
        after = sorted((done[k] - recorded[k]).total_seconds() for k in done if k in recorded)
        extra = {"noticed_s": statistics.median(noticed), "median_after_noticed_s": statistics.median(after)}
    return {
        "published": len(done),
        "median_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "first_s": latencies[0],
        "items_per_min": len(done) / max(span, 1e-9) * 60,
        "flow_per_min": (len(done) - 1) / max(flow, 1e-9) * 60,
        **extra,
    }


def _cpu(proc: Any) -> float:
    """A process's CPU seconds with its reaped children (a task process is reaped by its worker's supervisor)."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _tree_cpu(procs: list[Any]) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += _cpu(proc)
    return total


def cpu_by_component(stack: Any) -> dict[str, float]:
    """CPU seconds so far of each stack component's process tree, and of PostgreSQL and Redis."""
    import psutil

    totals: dict[str, float] = {}
    for name, popen in stack.procs.items():
        try:
            root = psutil.Process(popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        key = "celery workers" if name.startswith("celery worker") else name
        totals[key] = totals.get(key, 0.0) + _tree_cpu(tree)
    servers = {"postgres": "postgres", "redis-server": "redis"}
    for proc in psutil.process_iter(["name"]):
        if (key := servers.get(proc.info["name"])) is not None:
            totals[key] = totals.get(key, 0.0) + _tree_cpu([proc])
    return totals


def cpu_report(name: str, before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    per_item = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / items for k in after}
    per_item["total"] = sum(per_item.values())
    print(f"{name}: CPU seconds per item by component: " + ", ".join(f"{k} {v:.2f}" for k, v in per_item.items()))
    return per_item


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def timeline(api: Any, key: str, appeared: datetime, dag_id: str, poll: bool = False) -> list[tuple[float, str]]:
    """Where the first item's seconds went: recorded, start asked for, its DAG run queued and started, and each
    task's queue wait and run, as offsets from the item appearing; with ``poll``, the cycle that found it too."""
    events: list[tuple[datetime | None, str]] = []
    run_id, asked = key, None
    if dag_id != "bench_bare":
        from kipu.store.engine import session_scope
        from kipu.store.models import Post, WorkflowRun
        from sqlalchemy import select

        with session_scope() as s:
            run = s.scalar(select(WorkflowRun).where(WorkflowRun.platform_post_id == key))
            post = s.scalar(select(Post).where(Post.workflow_run_id == run.id))
            events += [
                (run.started_at, "run marked running in the store"),
                (run.start_requested_at, "DAG run asked for"),
            ]
            events.append((post.published_at, "posts.published_at"))
            run_id, asked = run.dag_run_id, run.start_requested_at
    if poll and asked is not None:  # the poll cycle that asked for the run: the last to start before it
        cycles = api.request("GET", "/dags/kipu_poll/dagRuns", params={"order_by": "-run_after", "limit": 5}).json()
        for cycle in cycles.get("dag_runs", []):
            if (_at(cycle.get("start_date")) or asked) < asked:
                events += _run_events(api, "kipu_poll", cycle["dag_run_id"], "poll cycle: ")
                break
    events += _run_events(api, dag_id, run_id)
    return sorted(((when - appeared).total_seconds(), what) for when, what in events if when is not None)


def _run_events(api: Any, dag_id: str, run_id: str, prefix: str = "") -> list[tuple[datetime | None, str]]:
    """A DAG run's queueing and start, and each task's queueing, start and end."""
    dag_run = api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
    events = [(_at(dag_run.get("queued_at")), "DAG run queued"), (_at(dag_run.get("start_date")), "DAG run running")]
    if dag_id == "kipu_poll":
        events.append((_at(dag_run.get("run_after")), "DAG run due"))
    tis = api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
    for ti in tis.get("task_instances", []):
        events.append((_at(ti.get("queued_when")), f"{ti['task_id']} queued"))
        events.append((_at(ti.get("start_date")), f"{ti['task_id']} started"))
        events.append((_at(ti.get("end_date")), f"{ti['task_id']} ended ({ti['state']})"))
    return [(when, prefix + what) for when, what in events]


_EXECUTING = re.compile(
    r"\[([0-9a-f-]{36})\] Executing workload in Celery: .*?log_path='dag_id=([^/]+)/run_id=[^/]+/task_id=([^/]+)/"
)
_SUCCEEDED = re.compile(r"execute_workload\[([0-9a-f-]{36})\] succeeded in ([0-9.]+)s")


def slot_times(worker_logs: list[Path]) -> dict[str, list[float]]:
    """How long each task held its Celery slot (Celery's ``succeeded in``), by DAG: from the task's start to its
    supervisor seeing the process exit."""
    tasks: dict[str, str] = {}
    held: dict[str, float] = {}
    for path in worker_logs:
        for line in path.read_text(errors="replace").splitlines():
            if m := _EXECUTING.search(line):
                tasks[m.group(1)] = m.group(2)
            elif m := _SUCCEEDED.search(line):
                held[m.group(1)] = float(m.group(2))
    out: dict[str, list[float]] = {}
    for key, dag_id in tasks.items():
        if key in held:
            out.setdefault(dag_id, []).append(held[key])
    return out


def run(
    items: int, workers: int, concurrency: int, paths: list[str], timeout: float, extra_env: dict[str, str]
) -> dict[str, dict[str, float]]:
    import httpx
    from kipu.store.accounts import find_team, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.migrate import upgrade
    from kipu.store.tokens import create_token
    from kipu.store.workflows import save_workflow

    from tests.fakes.platform_server import PlatformServer
    from tests.stack import AirflowStack

    store = pg.create_database()
    upgrade(store)
    use_store(store)
    results: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    with PlatformServer() as host:
        with session_scope() as s:
            owner = get_or_create_profile(s, "owner@bench.test", "Owner", airflow_username="admin")
            team = get_or_create_team(s, "Demo", owner, "demo")
            upsert_connection(s, team, "outbox", "demo", metadata={"path": str(TMP / "outbox")})
            upsert_connection(s, find_team(s, "demo"), "feed", "bench", metadata={"url": host.feed_url("bench")})
            wf_id = str(save_workflow(s, workflow("bench")).id)
            upsert_connection(s, find_team(s, "demo"), "facebook", HOOK_PAGE, username="Bench Page")
            save_workflow(s, hook_workflow())
            _, token = create_token(s, owner, "bench")
        src = host.source("bench")
        stack = AirflowStack(
            TMP / "stack",
            store,
            workers=workers,
            concurrency=concurrency,
            env={
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
                "KIPU_FACEBOOK_APP_SECRET": HOOK_SECRET,
                # As the compose file: Kipu asks for a reparse when a workflow changes (docs/deploy.md).
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                **extra_env,
            },
        ).start()
        try:
            api = stack.wait_for_dags("kipu_poll", "kipu.demo.bench_e2e", "kipu.demo.bench_hook", "bench_bare")
            kipu = httpx.Client(base_url=f"{stack.url}/kipu/api", headers={"Authorization": f"Bearer {token}"})

            def cycles() -> int:
                resp = api.request("GET", "/dags/kipu_poll/dagRuns", params={"state": "success"})
                return int(resp.json().get("total_entries", 0))

            # The first cycle sets the feed's cursor at "now"; what appears after it is new.
            stack.wait("a first poll cycle", lambda: cycles() >= 1, 240)

            def item(key: str, i: int) -> dict:
                return {"platform": "bench", "platform_post_id": key, "caption": f"Bench item {i} #bench"}

            def start_bare(key: str, i: int) -> None:
                assert api.trigger("bench_bare", key, {"item": {**item(key, i), "hashtags": ["bench"]}})

            def start_api(key: str, i: int) -> None:
                resp = kipu.post(f"/workflows/{wf_id}/run", json={"item": item(key, i)})
                assert resp.status_code == 202, resp.text

            def start_poll(key: str, i: int) -> None:
                src.add(key, f"Bench item {i} #bench")

            hooks = httpx.Client(base_url=f"{stack.url}/kipu/api/webhooks")

            def start_webhook(key: str, i: int) -> None:
                body, headers = page_delivery(HOOK_PAGE, key, f"Bench item {i} #bench", HOOK_SECRET)
                resp = hooks.post("/facebook", content=body, headers=headers)
                assert resp.status_code == 200 and resp.json()["recorded"] == 1, resp.text

            starters = {"bare": (start_bare, bare_published), "api": (start_api, kipu_published)}
            starters["poll"] = (start_poll, kipu_published)
            starters["webhook"] = (start_webhook, kipu_published)
            for name in paths:
                appeared: dict[str, datetime] = {}
                cpu_before = cpu_by_component(stack)
                results[name] = measure(name, items, *starters[name], timeout, appeared)
                cpu[name] = cpu_report(name, cpu_before, cpu_by_component(stack), items)
                print(f"{name}: {json.dumps({k: round(v, 1) for k, v in results[name].items()})}", flush=True)
                first = f"{name}-0000"
                dag_id = {"bare": "bench_bare", "webhook": "kipu.demo.bench_hook"}.get(name, "kipu.demo.bench_e2e")
                print(f"{name}: where the first item's seconds went")
                for offset, what in timeline(api, first, appeared[first], dag_id, poll=name == "poll"):
                    print(f"  {offset:8.1f} s  {what}")
        finally:
            stack.stop()
    print("Celery slot time per task (median; share held over 4 s, the supervisor's missed exit):")
    for dag_id, held in sorted(slot_times(sorted(stack.tmp.glob("celery-worker*.log"))).items()):
        slow = sum(h > 4 for h in held)
        print(f"  {dag_id}: {statistics.median(held):.2f} s over {len(held)} tasks; {slow} over 4 s")
    if "bare" in cpu:
        print("CPU seconds per item, Kipu path minus bare, by component:")
        for name in (n for n in cpu if n != "bare"):
            diff = {k: v - cpu["bare"].get(k, 0.0) for k, v in cpu[name].items()}
            print(f"  {name}: " + ", ".join(f"{k} {v:+.2f}" for k, v in diff.items()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2, help="Celery workers")
    parser.add_argument("--concurrency", type=int, default=2, help="task processes per worker")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, from: " + ", ".join(PATHS))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for one path's burst")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="a setting for every stack component"
    )
    args = parser.parse_args()
    bad = [pair for pair in args.env if "=" not in pair]
    if bad:
        parser.error(f"--env takes KEY=VALUE, got {bad[0]!r}")
    extra_env = dict(pair.split("=", 1) for pair in args.env)
    paths = [p for p in args.paths.split(",") if p]
    res = run(args.items, args.workers, args.concurrency, paths, args.timeout, extra_env)
    print(f"\n{args.items} items per path, {args.workers} Celery workers x concurrency {args.concurrency}")
    print(
        f"{'path':6} {'published':>9} {'median s':>9} {'p95 s':>8} {'first s':>8} {'items/min':>10}"
        f" {'first→last/min':>15}"
    )
    for name, r in res.items():
        print(
            f"{name:6} {r['published']:>9.0f} {r['median_s']:>9.1f} {r['p95_s']:>8.1f} {r['first_s']:>8.1f}"
            f" {r['items_per_min']:>10.1f} {r['flow_per_min']:>15.1f}"
        )
    if "bare" in res:
        base = res["bare"]
        for name in (n for n in res if n != "bare"):
            r = res[name]
            print(
                f"ratio {name}/bare: throughput {r['items_per_min'] / base['items_per_min']:.2f}x, "
                f"median latency {r['median_s'] / base['median_s']:.2f}x, p95 {r['p95_s'] / base['p95_s']:.2f}x, "
                f"first item {r['first_s'] / base['first_s']:.2f}x, "
                f"first→last rate {r['flow_per_min'] / base['flow_per_min']:.2f}x; "
                f"noticed after {r['noticed_s']:.1f} s (median), then median "
                f"{r['median_after_noticed_s'] / base['median_s']:.2f}x bare's"
            )


if __name__ == "__main__":
    main()
