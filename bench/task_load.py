"""What a task pays to load its DAG: a Kipu shard file under a parsing context against a bare 3-@task DAG file.

A task process (Airflow's task runner) parses its DAG file before it runs. Each side is parsed by ``DagBag`` in a
fresh interpreter that has already imported the task runner, as a worker's task process has, with the parsing
context of one task set. Sides alternate, so the ratio holds on a noisy machine. The store is PostgreSQL with
``--workflows`` six-step workflows; the Kipu side reads and builds only the one it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from dagset import create_db, drop_db
from factory_parse import parse, seed

REPO = Path(__file__).resolve().parents[1]

BARE = textwrap.dedent(
    '''
    """The baseline: the same user steps as plain @task functions."""
    from datetime import UTC, datetime

    from airflow.sdk import dag, task


    @dag(dag_id="bare_item", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), catchup=False)
    def bare_item():
        @task
        def filter_item(item: dict) -> dict:
            return item

        @task
        def rewrite(item: dict) -> dict:
            return item

        @task
        def publish(item: dict) -> None:
            return None

        publish(rewrite(filter_item({})))


    bare_item()
    '''
)

TIMER = textwrap.dedent(
    """
    import gc, os, sys, time
    import airflow.sdk.execution_time.task_runner  # a task process has this loaded before it parses its DAG file
    from airflow.dag_processing.dagbag import DagBag
    if sys.argv[4] == "frozen":  # the intrinsic cost: no collection walks Airflow's heap on either side
        gc.freeze()
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = sys.argv[2]
    os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = sys.argv[3]
    start = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
    took = time.perf_counter() - start
    assert sys.argv[2] in bag.dags and not bag.import_errors, (list(bag.dags)[:3], bag.import_errors)
    print(len(bag.dags), took)
    """
)


def load(path: Path, dag_id: str, task_id: str, env: dict[str, str], mode: str) -> tuple[int, float]:
    return parse(path, env, dag_id, task_id, mode, timer=TIMER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    name = f"kipu_bench_taskload_{os.getpid()}"
    url = create_db(name)
    tmp = Path(tempfile.mkdtemp(prefix="kipu-taskload-"))
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'bench'}",
        "KIPU_DATABASE_URL": url,
        "KIPU_HOME": str(tmp / "kipu"),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ENCRYPTION_KEY": os.environ.get("ENCRYPTION_KEY", "Wm9fX0tfS1pLX0tfS1pLX0tfS1pLX0tfS1pLX0tfS1o="),
    }
    try:
        seed(args.workflows, env)
        code = (
            "from kipu.store.engine import session_scope\n"
            "from kipu.store.models import Workflow\n"
            "from kipu.factory.shards import file_name, shard_count, shard_of\n"
            "from sqlalchemy import select\n"
            "with session_scope() as s:\n"
            "    wf = s.scalar(select(Workflow).where(Workflow.slug == 'bench_0007'))\n"
            "    print(wf.dag_id, file_name(shard_of(wf.shard_key, shard_count()), shard_count()))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        dag_id, shard = out.stdout.split()[-2:]
        kipu_file = REPO / "dags" / shard
        bare_file = tmp / "bare_item.py"
        bare_file.write_text(BARE)
        # Installed packages carry bytecode (pip compiles it); the plugins folder gets it here as a deployment has it.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(REPO / "plugins"), str(REPO / "dags")], check=True
        )
        print(f"workflows in the store: {args.workflows}; rounds: {args.rounds}")
        for mode, label in (("task", "as a task process loads it"), ("frozen", "GC frozen on both sides")):
            kipu, bare = [], []
            for _ in range(args.rounds):
                n, seconds = load(kipu_file, dag_id, "publish", env, mode)
                assert n == 1, f"the shard built {n} DAGs under a parsing context"
                kipu.append(seconds)
                bare.append(load(bare_file, "bare_item", "publish", env, mode)[1])
            k, b = statistics.median(kipu) * 1000, statistics.median(bare) * 1000
            print(f"{label}:")
            print(f"  bare 3-@task DAG file:           median {b:7.1f} ms  (min {min(bare) * 1000:.1f})")
            print(f"  Kipu shard, one workflow's DAG:  median {k:7.1f} ms  (min {min(kipu) * 1000:.1f})")
            print(f"  Kipu - bare: {k - b:+.1f} ms; ratio {k / b:.2f}")
    finally:
        drop_db(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
