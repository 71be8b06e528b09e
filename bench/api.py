"""/kipu API latency: ``GET /kipu/api/posts`` (a page of 50 of 100,000 posts) and ``POST .../run``, 20 concurrent
clients over loopback HTTP against uvicorn, on PostgreSQL; FastAPI's own minimal endpoint in the same server and
run is the baseline. Prints p50, p99 and throughput; the target is list p99 < 50 ms."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    from kipu.api.app import create_app

    root = FastAPI()


    @root.get("/minimal")
    def minimal() -> dict:
        return {"ok": True}


    root.mount("/kipu", create_app())
    """
)


def seed(posts: int) -> tuple[str, str]:
    """A team with a workflow and ``posts`` posts; returns (token, workflow id)."""
    import yaml
    from kipu.store.accounts import add_member, get_or_create_profile, get_or_create_team, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.models import Post
    from kipu.store.tokens import create_token
    from kipu.store.workflows import save_workflow

    with session_scope() as s:
        owner = get_or_create_profile(s, "owner@bench.test", "Owner", airflow_username="admin")
        team = get_or_create_team(s, "Demo", owner, "demo")
        add_member(s, team, get_or_create_profile(s, "editor@bench.test"), "member")
        upsert_connection(s, team, "feed", "demo", metadata={"url": "file:///dev/null"})
        upsert_connection(s, team, "outbox", "demo", metadata={"path": "/tmp/kipu-bench-outbox"})
        doc = yaml.safe_load((REPO / "include/demo/workflow.yaml").read_text())
        wf_id = str(save_workflow(s, doc).id)
        _, token = create_token(s, owner, "bench")
        base = datetime.now(UTC) - timedelta(days=30)
        rows = [
            {
                "id": uuid.uuid4(),
                "team_id": team.id,
                "platform": ("x", "bluesky", "linkedin")[i % 3],
                "status": "published",
                "caption": f"post {i}",
                "created_at": base + timedelta(seconds=i),
            }
            for i in range(posts)
        ]
        for start in range(0, len(rows), 5000):
            s.execute(Post.__table__.insert(), rows[start : start + 5000])
    return token, wf_id


async def load(url: str, n: int, clients: int, make: object) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            resp = await make(http, i)  # type: ignore[operator]
            latencies.append(time.perf_counter() - t0)
            assert resp.status_code < 300, resp.text

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, time.perf_counter() - started


def wrk(url: str, headers: dict[str, str], clients: int, seconds: int = 10) -> str | None:
    """p50/p99/throughput from wrk (a C load generator: the client costs far less CPU than httpx), if installed."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    args = [exe, "-t2", f"-c{clients}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non2xx is None, out
    return f"p50 {lat.get('50'):>8}  p99 {lat.get('99'):>8}  {float(rps.group(1)) if rps else 0:7.0f} req/s (wrk)"


def report(name: str, lat: list[float], wall: float) -> str:
    lat = sorted(lat)
    p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
    return f"{name:<34} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {len(lat) / wall:7.0f} req/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (one per core here)")
    args = parser.parse_args()
    os.environ.setdefault("ENCRYPTION_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    os.environ.setdefault("KIPU_HOME", tempfile.mkdtemp(prefix="kipu-bench-api-"))
    from tests import pg

    url = pg.create_database()
    os.environ["KIPU_DATABASE_URL"] = url
    from kipu.store.engine import reset_engines
    from kipu.store.migrate import upgrade

    upgrade(url)
    token, wf_id = seed(args.posts)
    reset_engines()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app_dir = Path(tempfile.mkdtemp(prefix="kipu-bench-app-"))
    (app_dir / "bench_app.py").write_text(APP)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:root",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PYTHONPATH": f"{app_dir}:{REPO}"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/minimal").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            assert time.monotonic() < deadline
        h = {"Authorization": f"Bearer {token}"}

        async def minimal(http: httpx.AsyncClient, i: int) -> httpx.Response:
            return await http.get("/minimal")

        async def posts(http: httpx.AsyncClient, i: int) -> httpx.Response:
            return await http.get("/kipu/api/posts", params={"limit": 50}, headers=h)

        async def run(http: httpx.AsyncClient, i: int) -> httpx.Response:
            item = {"platform": "feed", "platform_post_id": f"bench-{i}", "caption": f"bench {i}"}
            return await http.post(f"/kipu/api/workflows/{wf_id}/run", json={"item": item}, headers=h)

        asyncio.run(load(base, 100, args.clients, posts))  # warm-up
        print(
            f"{args.posts} posts, {args.clients} concurrent clients, {args.requests} requests each, "
            f"{args.workers} uvicorn workers, PostgreSQL"
        )
        for name, make, n in (
            ("GET /minimal (FastAPI baseline)", minimal, args.requests),
            ("GET /kipu/api/posts?limit=50", posts, args.requests),
            ("POST /kipu/api/workflows/{id}/run", run, args.requests // 4),
        ):
            lat, wall = asyncio.run(load(base, n, args.clients, make))
            print(report(name, lat, wall) + " (httpx)", flush=True)
        for name, path, hdrs in (
            ("GET /minimal (FastAPI baseline)", "/minimal", {}),
            ("GET /kipu/api/posts?limit=50", "/kipu/api/posts?limit=50", h),
        ):
            line = wrk(base + path, hdrs, args.clients)
            if line:
                print(f"{name:<34} {line}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        pg.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
