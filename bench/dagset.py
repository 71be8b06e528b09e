"""The DAG set at scale: N stored six-step workflows on PostgreSQL, parsed by Airflow's real dag-processor over
the shard files, against the same DAGs written as plain Airflow code split into the same number of files.

For each N it reports the DAGs serialized, import errors, the slowest file's parse time against
``dagbag_import_timeout``, the time for a full pass, edit-to-serialized latency (p50, p95) over ``--edits`` edits
made through the store path every API and CLI edit takes, and the dag-processor's CPU at rest.

    python bench/dagset.py --workflows 1000 10000 --shards 32
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from factory_parse import PLAIN, seed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
SERVER = os.environ.get("KIPU_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
TIMEOUT = 30.0  # Airflow's default dagbag_import_timeout


def _admin() -> sa.Engine:
    return sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")


def create_db(name: str, template: str | None = None) -> str:
    with _admin().connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    return f"{SERVER}/{name}"


def drop_db(name: str) -> None:
    with _admin().connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def plain_files(folder: Path, count: int, files: int) -> None:
    """The baseline: the same DAGs as hand-written Airflow code, ``files`` files of a contiguous range each."""
    folder.mkdir(parents=True)
    for i in range(files):
        low, high = i * count // files, (i + 1) * count // files
        code = PLAIN.format(steps=_steps(), count=high)
        code = code.replace(f"for n in range({high}):", f"for n in range({low}, {high}):")
        (folder / f"plain_{i:02d}.py").write_text(code)


def _steps() -> list:
    from factory_parse import STEPS

    return STEPS


class Processor:
    """``airflow dag-processor`` over ``dags`` with its own metadata database."""

    def __init__(self, env: dict[str, str], dags: Path, log: Path) -> None:
        env = {
            **env,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(TIMEOUT),
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120",
            # docs/deploy.md: the default (30 s) drops an edit serialized within 30 s of the previous one.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        }
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "dag-processor"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def cpu_at_rest(self, seconds: float = 20.0) -> float:
        procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        before = sum(p.cpu_times().user + p.cpu_times().system for p in procs if p.is_running())
        time.sleep(seconds)
        after = sum(p.cpu_times().user + p.cpu_times().system for p in procs if p.is_running())
        return (after - before) / seconds * 100

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_serialized(airflow: sa.Engine, prefix: str, want: int, limit: float) -> tuple[int, float]:
    """Until ``want`` DAGs with ``prefix`` are serialized (or ``limit`` s); returns how many and when."""
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < limit:
        with airflow.connect() as c:
            count = c.scalar(
                sa.text("SELECT count(DISTINCT dag_id) FROM serialized_dag WHERE dag_id LIKE :p"), {"p": prefix + "%"}
            )
        if count >= want:
            break
        time.sleep(1)
    return count, time.monotonic() - started


def file_stats(airflow: sa.Engine, prefix: str) -> tuple[float, int]:
    with airflow.connect() as c:
        slowest = c.scalar(
            sa.text("SELECT max(last_parse_duration) FROM dag WHERE dag_id LIKE :p AND NOT is_stale"),
            {"p": prefix + "%"},
        )
        errors = c.scalar(sa.text("SELECT count(*) FROM import_error"))
    return float(slowest or 0), int(errors)


def edit_latencies(store_env: dict[str, str], airflow: sa.Engine, edits: int) -> list[float]:
    """Edit a workflow's description through ``save_workflow`` (the path of ``PUT /workflows/{id}`` and
    ``kipu workflow import``) and time until its new version is serialized."""
    code = textwrap.dedent(
        """
        import sys, time
        from kipu.store.engine import session_scope
        from kipu.store.models import Workflow
        from kipu.store.workflows import export_workflow, save_workflow
        from sqlalchemy import select, text
        import sqlalchemy as sa
        airflow = sa.create_engine(sys.argv[1])
        # A DAG with no runs is updated in place (no new dag_version): its serialized hash tells the new version.
        HASH = "SELECT dag_hash FROM serialized_dag WHERE dag_id = :d ORDER BY last_updated DESC LIMIT 1"
        n = int(sys.argv[2])
        with session_scope() as s:
            ids = [str(w) for w in s.scalars(select(Workflow.id).order_by(Workflow.id).limit(n))]
        for i, wid in enumerate(ids):
            with session_scope() as s:
                doc = export_workflow(s, wid)
                dag_id = s.get(Workflow, __import__("uuid").UUID(wid)).dag_id
            with airflow.connect() as c:
                before = c.scalar(text(HASH), {"d": dag_id})
            doc["description"] = f"edited {i} at {time.time()}"
            t0 = time.monotonic()
            with session_scope() as s:
                save_workflow(s, doc, replacing=s.get(Workflow, __import__("uuid").UUID(wid)))
            while time.monotonic() - t0 < 300:
                with airflow.connect() as c:
                    now = c.scalar(text(HASH), {"d": dag_id})
                if now != before:
                    break
                time.sleep(0.2)
            print(time.monotonic() - t0, dag_id, flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, store_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], str(edits)],
        env=store_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    for seconds, dag_id in rows:
        print(f"    edit of {dag_id}: {float(seconds):.1f}s", flush=True)
    return [float(seconds) for seconds, _ in rows]


LOOP = re.compile(r"Ran scheduling loop in ([0-9.]+) ms")


def scheduler_loops(env: dict[str, str], log: Path, seconds: float, warmup: float = 30.0) -> list[float]:
    """Run ``airflow scheduler`` on ``env``'s metadata database for ``warmup + seconds`` and return its loop
    durations (ms) after the warm-up, from its own debug line "Ran scheduling loop in N ms"."""
    env = {
        **env,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "scheduler"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        time.sleep(warmup)
        mark = log.stat().st_size
        time.sleep(seconds)
        with log.open(errors="replace") as f:
            f.seek(mark)
            return [float(m.group(1)) for m in LOOP.finditer(f.read())]
    finally:
        stop_process(proc)


def report_loops(label: str, loops: list[float]) -> dict[str, float]:
    if not loops:
        raise SystemExit(f"  scheduler ({label}): no loop lines were logged")
    med, p95 = statistics.median(loops), pct(loops, 95)
    print(f"  scheduler with {label}: {len(loops)} loops, median {med:.1f} ms, p95 {p95:.1f} ms", flush=True)
    return {"loops": len(loops), "median_ms": med, "p95_ms": p95}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def run(n: int, shards: int, edits: int, template: str, tmp: Path, scheduler_s: float) -> dict[str, float]:
    from kipu.factory.shards import write_files

    store = create_db(f"kipu_bench_dagset_store_{n}")
    result: dict[str, float] = {"workflows": n}
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "KIPU_HOME": str(tmp / f"kipu-{n}"),
        "KIPU_DATABASE_URL": store,
        "KIPU_DAG_SHARDS": str(shards),
        "ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'bench'}",
    }
    (tmp / f"kipu-{n}").mkdir()
    print(f"N={n}: storing {n} workflows ...", flush=True)
    t0 = time.monotonic()
    seed(n, env)
    print(f"  stored in {time.monotonic() - t0:.0f}s", flush=True)
    for side in ("plain", "kipu"):
        meta = create_db(f"kipu_bench_dagset_af_{side}_{n}", template)
        side_env = {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta}
        airflow = sa.create_engine(meta)
        dags = tmp / f"{side}-{n}"
        if side == "kipu":
            write_files(dags, shards)
            prefix = "kipu."
        else:
            plain_files(dags, n, shards)
            prefix = "plain_"
        proc = Processor(side_env, dags, tmp / f"{side}-{n}.log")
        try:
            count, seconds = wait_serialized(airflow, prefix, n, limit=max(600, n / 20))
            slowest, errors = file_stats(airflow, prefix)
            result[f"{side}_serialized"] = count
            result[f"{side}_full_pass_s"] = seconds
            result[f"{side}_slowest_file_s"] = slowest
            result[f"{side}_import_errors"] = errors
            print(
                f"  {side}: {count}/{n} DAGs serialized in {seconds:.1f}s; slowest file {slowest:.2f}s of "
                f"{TIMEOUT:.0f}s; {errors} import errors",
                flush=True,
            )
            if side == "kipu":
                time.sleep(5)
                lat = edit_latencies(side_env, airflow, edits)
                result["edit_p50_s"], result["edit_p95_s"] = statistics.median(lat), pct(lat, 95)
                print(
                    f"  edit to serialized over {len(lat)} edits: p50 {lat and statistics.median(lat):.1f}s, "
                    f"p95 {pct(lat, 95):.1f}s, max {max(lat):.1f}s",
                    flush=True,
                )
            result[f"{side}_cpu_at_rest_pct"] = proc.cpu_at_rest()
            print(f"  {side}: dag-processor CPU at rest {result[f'{side}_cpu_at_rest_pct']:.1f}%", flush=True)
        finally:
            proc.stop()
        try:
            if side == "kipu" and scheduler_s:
                # Issue 15: the scheduler's loop with N idle Kipu DAGs against 0 DAGs, same stack, one after the other.
                empty = create_db(f"kipu_bench_dagset_af_empty_{n}", template)
                try:
                    zero = report_loops(
                        "0 DAGs",
                        scheduler_loops(
                            {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": empty}, tmp / f"sched-0-{n}.log", scheduler_s
                        ),
                    )
                finally:
                    drop_db(f"kipu_bench_dagset_af_empty_{n}")
                full = report_loops(
                    f"{n} idle Kipu DAGs", scheduler_loops(side_env, tmp / f"sched-{n}.log", scheduler_s)
                )
                result["sched_loop_ratio"] = full["median_ms"] / zero["median_ms"]
                print(f"  scheduler loop median ratio {result['sched_loop_ratio']:.2f}", flush=True)
        finally:
            airflow.dispose()
            drop_db(f"kipu_bench_dagset_af_{side}_{n}")
    drop_db(f"kipu_bench_dagset_store_{n}")
    ratio = result["kipu_full_pass_s"] / result["plain_full_pass_s"]
    result["ratio"] = ratio
    print(
        f"  full pass kipu {result['kipu_full_pass_s']:.1f}s / plain {result['plain_full_pass_s']:.1f}s = "
        f"{ratio:.2f} (target <= 1.3)",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument(
        "--scheduler-seconds", type=float, default=0, help="also time the scheduler loop with N idle DAGs against 0"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kipu-dagset-") as raw:
        tmp = Path(raw)
        template = "kipu_bench_dagset_airflow_template"
        meta = create_db(template)
        env = {**os.environ, "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta}
        print("migrating an Airflow metadata database (the template of each run) ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        try:
            for n in args.workflows:
                run(n, args.shards, args.edits, template, tmp, args.scheduler_seconds)
        finally:
            drop_db(template)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
