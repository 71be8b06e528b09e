"""End-to-end latency on the native distributed stack: from a post appearing on a fake platform to its publication,
through the scheduled ``kipu_poll`` and a workflow of filter, offline rewrite and publish, on 2 Celery workers.

Prints the median and p95 latency over the items, and the throughput in items per minute against the same
workflow's tasks run back to back with ``dag.test()`` in this process (the baseline of the same run)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

from cryptography.fernet import Fernet  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="kipu-bench-e2e-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(TMP / "baseline-airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "KIPU_HOME": str(TMP / "kipu"),
        "ENCRYPTION_KEY": os.environ.get("ENCRYPTION_KEY") or Fernet.generate_key().decode(),
        # The fake platform listens on 127.0.0.1, which the egress guard refuses outside the demo and the tests.
        "KIPU_EGRESS_ALLOW_PRIVATE": "1",
    }
)

from tests import pg  # noqa: E402

BASELINE_DB = pg.create_database()
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = BASELINE_DB


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
        "steps": [
            {
                "id": "no_ads",
                "type": "filter",
                "config": {"conditions": [{"field": "hashtags", "operator": "not_contains", "value": "ad"}]},
            },
            {"id": "rewrite", "type": "ai_rewrite", "config": {"target_platform": "bluesky"}},
            {"id": "publish", "type": "publish", "connection_id": "outbox:demo", "platform": "outbox"},
        ],
    }


def published_times() -> dict[str, datetime]:
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


def distributed(items: int, workers: int, timeout: float) -> dict[str, float]:
    from kipu.store.accounts import add_member, find_team, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    from tests.fakes.platform_server import PlatformServer
    from tests.stack import AirflowStack

    store = pg.create_database()
    from kipu.store.migrate import upgrade

    upgrade(store)
    use_store(store)
    with PlatformServer() as host:
        with session_scope() as s:
            owner = get_or_create_profile(s, "owner@bench.test", "Owner", airflow_username="admin")
            team = get_or_create_team(s, "Demo", owner, "demo")
            add_member(s, team, get_or_create_profile(s, "editor@bench.test"), "member")
            upsert_connection(s, team, "outbox", "demo", metadata={"path": str(TMP / "outbox")})
            upsert_connection(s, find_team(s, "demo"), "feed", "bench", metadata={"url": host.feed_url("bench")})
            save_workflow(s, workflow("bench"))
        src = host.source("bench")
        stack = AirflowStack(TMP / "stack", store, workers=workers, concurrency=2).start()
        try:
            api = stack.wait_for_dags("kipu_poll", "kipu.demo.bench_e2e")

            def cycles() -> int:
                resp = api.request("GET", "/dags/kipu_poll/dagRuns", params={"state": "success"})
                return int(resp.json().get("total_entries", 0))

            # The first cycle sets the cursor at "now"; what appears after it is new.
            stack.wait("a first poll cycle", lambda: cycles() >= 1, 240)
            appeared: dict[str, datetime] = {}
            for i in range(items):
                key = f"bench-{i:04d}"
                src.add(key, f"Bench item {i} #bench")
                appeared[key] = datetime.now(UTC)
            deadline = time.monotonic() + timeout
            while len(done := published_times()) < items and time.monotonic() < deadline:
                time.sleep(2)
            if len(done) < items:  # report what was measured rather than nothing
                print(f"only {len(done)} of {items} items were published within {timeout:g}s")
        finally:
            stack.stop()
    latencies = sorted((done[k] - appeared[k]).total_seconds() for k in appeared if k in done)
    span = (max(done.values()) - min(done.values())).total_seconds()
    return {
        "median_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "items_per_min": len(done) / max(span, 1e-9) * 60,
        "published": len(done),
        "first_s": latencies[0],
    }


def baseline(items: int) -> dict[str, float]:
    """The same workflow's tasks, one item after another, with ``dag.test()`` in this process."""
    import subprocess

    from kipu.store.accounts import find_team, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.migrate import upgrade
    from kipu.store.workflows import save_workflow

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    store = pg.create_database()
    upgrade(store)
    use_store(store)
    with session_scope() as s:
        team = get_or_create_team(
            s, "Demo", get_or_create_profile(s, "owner@bench.test", airflow_username="admin"), "demo"
        )
        upsert_connection(s, team, "outbox", "demo", metadata={"path": str(TMP / "outbox-baseline")})
        upsert_connection(s, find_team(s, "demo"), "feed", "bench", metadata={"url": "file:///dev/null"})
        save_workflow(s, workflow("bench"))
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["kipu.demo.bench_e2e"]
    started = time.perf_counter()
    for i in range(items):
        item = {"platform": "feed", "platform_post_id": f"base-{i}", "caption": f"Bench item {i} #bench"}
        run = dag.test(run_conf={"item": item})
        assert run.state == "success", run.state
    elapsed = time.perf_counter() - started
    return {"items_per_min": items / elapsed * 60, "per_item_s": elapsed / items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--baseline-items", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    base = baseline(args.baseline_items)
    dist = distributed(args.items, args.workers, args.timeout)
    print(
        f"items: {dist['published']:.0f} of {args.items} published, {args.workers} Celery workers (concurrency 2 each)"
    )
    print(
        f"latency post->published: median {dist['median_s']:.1f} s, p95 {dist['p95_s']:.1f} s, first {dist['first_s']:.1f} s"
    )
    print(f"throughput: {dist['items_per_min']:.1f} items/min distributed")
    print(
        f"baseline dag.test() back to back: {base['items_per_min']:.1f} items/min ({base['per_item_s']:.2f} s per item)"
    )
    print(f"ratio distributed/baseline: {dist['items_per_min'] / base['items_per_min']:.2f}x")


if __name__ == "__main__":
    main()
