"""Kipu's DAG factory against plain Airflow code: a ``DagBag`` parse of 1,000 stored 6-step workflows.

Both sides are parsed by ``DagBag`` in a fresh interpreter, alternating, so the ratio holds on a noisy machine.
The factory side includes the store read (SQLite, the embedded default), pydantic validation and the docs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Six steps, one of each type; the long branch waits and asks for approval, the short one publishes at once.
STEPS = [
    {
        "id": "skip_ads",
        "type": "filter",
        "config": {"operator": "and", "conditions": [{"field": "hashtags", "operator": "not_contains", "value": "ad"}]},
    },
    {"id": "rewrite", "type": "ai_rewrite", "config": {"target_platform": "bluesky", "tone": "casual"}},
    {
        "id": "long_or_short",
        "type": "condition",
        "config": {
            "operator": "and",
            "conditions": [{"field": "duration", "operator": "gt", "value": 60}],
            "if_true_steps": ["cool_down", "review"],
            "if_false_steps": [],
        },
    },
    {"id": "cool_down", "type": "delay", "config": {"duration_seconds": 30}},
    {"id": "review", "type": "approval", "config": {"approvers": ["admin"], "timeout_hours": 4}},
    {"id": "publish", "type": "publish", "connection_id": "outbox:demo", "platform": "outbox"},
]

# The same DAGs as hand-written Airflow code: the same operator classes, arguments and dependencies.
PLAIN = textwrap.dedent(
    '''
    """1,000 Kipu-shaped DAGs written as plain Airflow code (the benchmark's baseline)."""
    from datetime import UTC, datetime, timedelta

    from airflow.sdk import DAG, Param, TriggerRule
    from kipu.operators.approval import KipuApprovalOperator
    from kipu.operators.condition import KipuConditionOperator
    from kipu.operators.delay import KipuDelayOperator
    from kipu.operators.filter import KipuFilterOperator
    from kipu.operators.finalize import KipuFinalizeOperator
    from kipu.operators.publish import KipuPublishOperator
    from kipu.operators.rewrite import KipuRewriteOperator

    STEPS = {steps!r}
    JOIN = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS

    for n in range({count}):
        wf = f"wf-{{n:04d}}"
        common = dict(workflow_id=wf, team_id="team", workflow_timezone="Europe/Berlin", trigger_rule=JOIN)
        cfg = {{s["id"]: {{k: v for k, v in s.items() if k not in ("id", "type")}} for s in STEPS}}
        with DAG(
            dag_id=f"plain_{{n:04d}}",
            description="Bench workflow",
            schedule=None,
            start_date=datetime(2024, 1, 1, tzinfo=UTC),
            catchup=False,
            max_active_runs=32,
            tags=["kipu", "team:bench", "feed", "outbox"],
            doc_md=f"Bench workflow {{n}}: filter, rewrite, branch, delay, approval, publish.",
            default_args={{"owner": "owner@bench", "retries": 3, "retry_delay": timedelta(seconds=20),
                          "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=15)}},
            params={{"workflow_run_id": Param(None, type=["null", "string"]), "item": Param({{}}, type="object")}},
        ) as dag:
            f = KipuFilterOperator(task_id="skip_ads", step_id="s1", step_config=cfg["skip_ads"], retries=0,
                                   workflow_id=wf, team_id="team", workflow_timezone="Europe/Berlin")
            r = KipuRewriteOperator(task_id="rewrite", step_id="s2", step_config=cfg["rewrite"], **common)
            c = KipuConditionOperator(task_id="long_or_short", step_id="s3", step_config=cfg["long_or_short"],
                                      true_task="cool_down", false_task="publish", retries=0, **common)
            d = KipuDelayOperator(task_id="cool_down", step_id="s4", step_config=cfg["cool_down"], **common)
            a = KipuApprovalOperator(task_id="review", step_id="s5", step_config=cfg["review"], retries=0,
                                     assigned_users=[{{"id": "admin", "name": "Owner"}}],
                                     subject="Bench: approve this item?", **common)
            p = KipuPublishOperator(task_id="publish", step_id="s6", step_config=cfg["publish"], **common)
            end = KipuFinalizeOperator(task_id="finalize", workflow_id=wf)
            f >> r >> c >> [d, p]
            d >> a >> p >> end
        globals()[dag.dag_id] = dag
    '''
)

TIMER = """
import sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
t2 = time.perf_counter()
assert not bag.import_errors, bag.import_errors
print(len(bag.dags), t2 - t1)
"""


def seed(count: int, env: dict[str, str]) -> None:
    """Store ``count`` workflows through the same validate-and-save path as ``kipu workflow import``."""
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from kipu.store.migrate import upgrade
        from kipu.config import database_url
        upgrade(database_url())
        from kipu.store.accounts import get_or_create_profile, get_or_create_team, upsert_connection
        from kipu.store.engine import session_scope
        from kipu.store.workflows import save_workflow
        base = json.loads(sys.argv[1])
        with session_scope() as s:
            owner = get_or_create_profile(s, "owner@bench.test", "Owner", airflow_username="admin")
            team = get_or_create_team(s, "Demo", owner, "demo")
            upsert_connection(s, team, "feed", "demo", metadata={{"url": "file:///dev/null"}})
            upsert_connection(s, team, "outbox", "demo", metadata={{"path": "/tmp/kipu-bench-outbox"}})
            for n in range({count}):
                doc = dict(base, name=f"Bench workflow {{n}}", slug=f"bench_{{n:04d}}")
                save_workflow(s, doc)
        """
    )
    base = yaml.safe_load((REPO / "include/demo/workflow.yaml").read_text())
    base["steps"] = copy.deepcopy(STEPS)
    subprocess.run([sys.executable, "-c", code, json.dumps(base)], check=True, env=env)


def parse(path: Path, env: dict[str, str], *args: str, timer: str = TIMER) -> tuple[int, float]:
    """``timer`` run on ``path`` in a fresh interpreter: it prints the DAG count and the seconds, last."""
    out = subprocess.run([sys.executable, "-c", timer, str(path), *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"parsing {path} failed:\n{out.stderr[-3000:]}")
    dags, seconds = out.stdout.split()[-2:]
    return int(dags), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an empty Kipu store to fill (default: a new SQLite file)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kipu-bench-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "KIPU_HOME": str(tmp / "kipu"),
        "KIPU_DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'kipu.db'}",
        "ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        "PYTHONPATH": str(REPO),
        # One shard: the whole set in one file, as a single parse unit (bench/dagset.py measures the shards).
        "KIPU_DAG_SHARDS": "1",
    }
    (tmp / "kipu").mkdir()
    store = env["KIPU_DATABASE_URL"].split(":", 1)[0]
    print(f"storing {args.workflows} workflows of {len(STEPS)} steps ({store} store) ...", flush=True)
    seed(args.workflows, env)
    plain = tmp / "plain_dags" / "plain.py"
    plain.parent.mkdir()
    plain.write_text(PLAIN.format(steps=STEPS, count=args.workflows))
    factory = REPO / "dags" / "kipu_shard_00.py"

    kipu_times, plain_times = [], []
    for r in range(args.rounds):
        n_kipu, t_kipu = parse(factory, env)
        n_plain, t_plain = parse(plain, env)
        assert n_kipu == n_plain == args.workflows, (n_kipu, n_plain)
        kipu_times.append(t_kipu)
        plain_times.append(t_plain)
        print(
            f"round {r + 1}: kipu factory {t_kipu:.2f} s, plain Airflow {t_plain:.2f} s, ratio {t_kipu / t_plain:.2f}"
        )
    k, p = statistics.median(kipu_times), statistics.median(plain_times)
    print(
        f"median of {args.rounds}: kipu factory {k:.2f} s, plain Airflow {p:.2f} s, ratio {k / p:.2f} (target <= 1.3)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
