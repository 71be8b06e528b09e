"""``kipu_poll``: every minute, poll every due source in the triggerer and start one DAG run per new item."""

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG
from kipu.operators.start_runs import KipuStartRunsOperator
from kipu.sensors.poll import KipuPollSensor

with DAG(
    dag_id="kipu_poll",
    description="Kipu poll engine: detect new content on every due source, start one run per item",
    schedule=timedelta(minutes=1),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # A backstop: whatever Airflow loses in an outage (a trigger's end, a triggerer), one cycle never holds the next
    # for longer than this; a cut cycle loses nothing (its items are recorded runs or still on the source).
    dagrun_timeout=timedelta(minutes=5),
    tags=["kipu", "kipu:engine"],
    # A cycle's tasks outrank every workflow task (whose weights are their step counts): a burst of items queued on
    # the workers never delays the cycle that finds the next ones.
    default_args={
        "owner": "kipu",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "priority_weight": 1000,
        "weight_rule": "absolute",
    },
    doc_md=__doc__,
):
    # Starting runs does not wait for the cycle to succeed: runs left by an earlier crash start either way.
    KipuPollSensor(task_id="poll_sources") >> KipuStartRunsOperator(task_id="start_runs", retries=2)
