"""/kipu API latency: ``GET /kipu/api/posts`` (a page of 50 of 100,000 posts) and ``POST .../run``, 20 concurrent
clients on loopback against uvicorn on PostgreSQL, with FastAPI's minimal endpoint in the same server as baseline
(``--airflow``: through ``airflow api-server``). Prints p50, p99 and throughput; the target is list p99 < 50 ms."""

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import pg  # noqa: E402

APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    from kipu.api.app import create_app
    from kipu.api.gc_tuning import tune_gc

    root = FastAPI()


    @root.get("/minimal")
    def minimal() -> dict:
        return {"ok": True}


    root.mount("/kipu", create_app())
    tune_gc()  # as the Kipu plugin does in Airflow's API server, and `kipu api serve`
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


POST_RUN_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 1
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
function init(args) n = 0 end
function request()
  n = n + 1
  local id = string.format("bench-%d-%d", tid, n)
  return wrk.format(nil, nil, nil, '{"item":{"platform":"feed","platform_post_id":"' .. id .. '","caption":"bench"}}')
end
"""


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


def wrk(url: str, headers: dict[str, str], clients: int, seconds: int, script: str | None = None) -> Result:
    """p50/p99/throughput from wrk, a C load generator whose own CPU cost barely touches the server's."""
    args = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            args += ["-s", lua.name]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    assert "Non-2xx or 3xx responses" not in out and "Socket errors" not in out, out
    lat = {k: _ms(v) for k, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    return Result(lat["50"], lat["99"], float(rps.group(1)))


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Result:
    p50: float
    p99: float
    rps: float

    def line(self, name: str, client: str) -> str:
        return f"{name:<37} p50 {self.p50:6.1f} ms  p99 {self.p99:6.1f} ms  {self.rps:7.0f} req/s ({client})"


def measured(lat: list[float], wall: float) -> Result:
    lat = sorted(x * 1000 for x in lat)
    return Result(statistics.median(lat), lat[int(len(lat) * 0.99) - 1], len(lat) / wall)


def airflow_metadata(home: Path) -> str:
    """A migrated Airflow metadata database with the store's DAGs serialized, so a manual run really starts one."""
    metadata = pg.create_database()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",  # not a line per triggered run
        }
    )
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([sys.executable, "-m", "airflow", *command], check=True, capture_output=True)
    return metadata


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10, help="per measurement with wrk")
    parser.add_argument("--requests", type=int, default=2000, help="per measurement with httpx (no wrk installed)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (one per core here)")
    parser.add_argument("--airflow", action="store_true", help="serve through `airflow api-server`, as deployed")
    args = parser.parse_args()
    os.environ.setdefault("ENCRYPTION_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    tmp = Path(tempfile.mkdtemp(prefix="kipu-bench-api-"))
    os.environ.setdefault("KIPU_HOME", str(tmp / "kipu"))
    url = pg.create_database()
    os.environ["KIPU_DATABASE_URL"] = url
    from kipu.store.engine import reset_engines
    from kipu.store.migrate import upgrade

    upgrade(url)
    token, wf_id = seed(args.posts)
    reset_engines()
    # A store in its steady state: vacuumed and analysed now, not by autovacuum in the middle of a measurement.
    from sqlalchemy import create_engine, text

    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    metadata = airflow_metadata(tmp / "airflow")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    (tmp / "bench_app.py").write_text(APP)
    if args.airflow:
        # Kipu as deployed: mounted by the plugin in Airflow's own API server, behind Airflow's middlewares.
        command = ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
        baseline = ("GET /api/v2/monitor/health (Airflow)", "/api/v2/monitor/health")
    else:
        command = ["uvicorn", "bench_app:root", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--workers", str(args.workers), "--log-level", "warning"]
        baseline = ("GET /minimal (FastAPI baseline)", "/minimal")
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", *command], env={**os.environ, "PYTHONPATH": f"{tmp}:{REPO}"}, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + baseline[1]).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "server.log").read_text()[-3000:]
        h = {"Authorization": f"Bearer {token}"}
        run_path = f"/kipu/api/workflows/{wf_id}/run"
        probe = httpx.post(base + run_path, json={"item": {"platform": "feed", "platform_post_id": "probe"}}, headers=h)
        assert probe.json()["started"] is True, probe.text  # the real record-then-start path, not its fallback

        async def minimal(http: httpx.AsyncClient, i: int) -> httpx.Response:
            return await http.get(baseline[1])

        async def posts(http: httpx.AsyncClient, i: int) -> httpx.Response:
            return await http.get("/kipu/api/posts", params={"limit": 50}, headers=h)

        async def run(http: httpx.AsyncClient, i: int) -> httpx.Response:
            item = {"platform": "feed", "platform_post_id": f"bench-{i}", "caption": f"bench {i}"}
            return await http.post(run_path, json={"item": item}, headers=h)

        client = "wrk" if shutil.which("wrk") else "httpx"
        # Warm-up, every worker: pooled connections, prepared statements, compiled-statement caches.
        if client == "wrk":
            wrk(base + "/kipu/api/posts?limit=50", h, args.clients, 3)
        else:
            asyncio.run(load(base, 500, args.clients, posts))
        print(
            f"{args.posts} posts, {args.clients} concurrent clients, {args.workers} "
            f"{'airflow api-server' if args.airflow else 'uvicorn'} workers, PostgreSQL; "
            f"client {client}" + ("" if client == "wrk" else " (install wrk: httpx's own CPU inflates the tails)")
        )
        results: dict[str, Result] = {}
        for name, make, path, hdrs, script in (
            (baseline[0], minimal, baseline[1], {}, None),
            ("GET /kipu/api/posts?limit=50", posts, "/kipu/api/posts?limit=50", h, None),
            ("POST /kipu/api/workflows/{id}/run", run, run_path, h, POST_RUN_LUA),
        ):
            if client == "wrk":
                results[name] = wrk(base + path, hdrs, args.clients, args.seconds, script)
            else:
                results[name] = measured(*asyncio.run(load(base, args.requests, args.clients, make)))
            print(results[name].line(name, client), flush=True)
        ref, listing = results[baseline[0]], results["GET /kipu/api/posts?limit=50"]
        print(
            f"list vs baseline: p99 {listing.p99 / ref.p99:.1f}x, throughput {listing.rps / ref.rps:.2f}x; "
            f"target list p99 < 50 ms: {'met' if listing.p99 < 50 else 'NOT met'} ({listing.p99:.1f} ms)"
        )
    finally:
        proc.terminate()
        proc.wait(10)
        pg.drop_database(url)
        pg.drop_database(metadata)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
