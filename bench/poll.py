"""The poll engine against a plain sequential poller: N sources on a local fake host, each answer delayed 50 ms.

The engine side is one cycle through the trigger's code (``run_cycle``): due selection, concurrent fetches,
and recording one new item per source plus every cursor in the store (PostgreSQL by default). The baseline is a
plain loop of httpx requests, one after another, over a sample of the same sources; its rate is per source.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def start_host(sources: int, delay: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.platform_server", "--sources", str(sources), "--delay", str(delay)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"http://127.0.0.1:{port}"


def fresh_store(kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='kipu-bench-poll-')}/kipu.db"
    from tests import pg

    return pg.create_database()


def seed(n: int, host: str) -> None:
    """One workflow through the validating path, then ``n - 1`` copies with bulk inserts (setup, not measured)."""
    from kipu.store.accounts import get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.models import Connection, Workflow, WorkflowStep
    from kipu.store.workflows import save_workflow

    doc = yaml.safe_load((REPO / "include/demo/workflow.yaml").read_text())
    with session_scope() as s:
        owner = get_or_create_profile(s, "owner@bench.test", "Owner", airflow_username="admin")
        team = get_or_create_team(s, "Demo", owner, "demo")
        upsert_connection(s, team, "outbox", "demo", metadata={"path": "/tmp/kipu-bench-outbox"})
        upsert_connection(s, team, "feed", "s0", metadata={"url": f"{host}/feeds/s0"})
        doc["trigger"] = {"type": "poll", "connection_id": "feed:s0", "platform": "feed", "poll_interval_minutes": 5}
        base = save_workflow(s, dict(doc, slug="bench_0", name="Bench 0"))
        steps = [(st.step_key, st.step_type, st.order_index, st.config) for st in base.steps]
        conns, wfs, rows = [], [], []
        for i in range(1, n):
            wf_id = uuid.uuid4()
            conns.append(
                {
                    "id": uuid.uuid4(),
                    "team_id": team.id,
                    "platform": "feed",
                    "platform_user_id": f"s{i}",
                    "metadata": {"url": f"{host}/feeds/s{i}"},
                    "status": "healthy",
                }
            )
            trigger = dict(base.trigger_config, connection_id=f"feed:s{i}")
            wfs.append(
                {
                    "id": wf_id,
                    "team_id": team.id,
                    "name": f"Bench {i}",
                    "slug": f"bench_{i}",
                    "status": "active",
                    "timezone": base.timezone,
                    "trigger_config": trigger,
                }
            )
            rows += [
                {"id": uuid.uuid4(), "workflow_id": wf_id, "step_key": k, "step_type": t, "order_index": o, "config": c}
                for k, t, o, c in copy.deepcopy(steps)
            ]
        for table, values in ((Connection, conns), (Workflow, wfs), (WorkflowStep, rows)):
            for start in range(0, len(values), 2000):
                s.execute(table.__table__.insert(), values[start : start + 2000])


def one_cycle(when: datetime, limit: int) -> tuple[float, float, object]:
    from kipu.poll.due import due_sources
    from kipu.poll.engine import run_cycle
    from kipu.store.engine import session_scope

    wall, cpu = time.perf_counter(), time.process_time()
    with session_scope() as s:
        sources = due_sources(s, when, limit)
    report = asyncio.run(run_cycle(sources, source_timeout=30))
    return time.perf_counter() - wall, time.process_time() - cpu, report


def sequential(host: str, sample: int) -> float:
    """Seconds per source for a plain poller: one httpx GET and parse after another."""
    from kipu.platforms.feed.hook import parse_feed

    with httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        for i in range(sample):
            parse_feed(client.get(f"{host}/feeds/s{i}").content)
        return (time.perf_counter() - started) / sample


def run(n: int, delay: float, store: str, sample: int) -> dict[str, float]:
    from kipu.store.engine import reset_engines
    from kipu.store.migrate import upgrade

    url = fresh_store(store)
    upgrade(url)
    os.environ["KIPU_DATABASE_URL"] = url
    reset_engines()
    proc, host = start_host(n, delay)
    try:
        seed(n, host)
        first_s, _, first = one_cycle(datetime.now(UTC), n)  # polling begins: cursors set, nothing replayed
        assert first.fetched == n and first.new_runs == 0, first  # type: ignore[attr-defined]
        httpx.post(f"{host}/control/add-everywhere", timeout=60).raise_for_status()
        wall, cpu, report = one_cycle(datetime.now(UTC) + timedelta(minutes=10), n)
        assert report.fetched == n and report.new_runs == n, report  # type: ignore[attr-defined]
        per_source = sequential(host, sample)
    finally:
        proc.terminate()
        proc.wait(10)
        reset_engines()
        if store == "postgres":
            from tests import pg

            pg.drop_database(url)
    return {"first": first_s, "wall": wall, "cpu": cpu, "seq_per_source": per_source}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", default="5000", help="comma-separated source counts, e.g. 5000,10000")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each fake answer waits")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--sample", type=int, default=100, help="sources the sequential baseline polls")
    args = parser.parse_args()
    os.environ.setdefault("ENCRYPTION_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    os.environ.setdefault("KIPU_HOME", tempfile.mkdtemp(prefix="kipu-bench-home-"))
    for n in (int(x) for x in args.sources.split(",")):
        r = run(n, args.delay, args.store, args.sample)
        rate, seq_rate = n / r["wall"], 1 / r["seq_per_source"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n} sources ({args.store}, {args.delay * 1000:.0f} ms each): detected and recorded in {r['wall']:.2f} s "
            f"= {rate:.0f} sources/s; sequential {seq_rate:.1f} sources/s (sample {args.sample}); "
            f"ratio {rate / seq_rate:.0f}x; cycle CPU {r['cpu']:.2f} s; peak RSS {rss:.0f} MiB; "
            f"first (cursor-setting) cycle {r['first']:.2f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
