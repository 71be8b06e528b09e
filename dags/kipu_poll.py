"""``kipu_poll``: every minute, poll every due source in the triggerer and start one DAG run per new item."""

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task
from kipu.poll.start import pending_starts
from kipu.sensors.poll import KipuPollSensor

with DAG(
    dag_id="kipu_poll",
    description="Kipu poll engine: detect new content on every due source, start one run per item",
    schedule=timedelta(minutes=1),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["kipu", "kipu:engine"],
    default_args={"owner": "kipu", "retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
):
    poll = KipuPollSensor(task_id="poll_sources")

    @task(trigger_rule="all_done")
    def claim_pending_runs() -> list[dict]:
        """Pending runs (new this cycle, or left behind by a crash) to start; empty when nothing is new. Also asks
        Airflow again to parse the shard of any workflow change it has not parsed yet (kipu.factory.reparse)."""
        from kipu.factory.reparse import reconcile

        reconcile()
        return pending_starts(limit=500)

    starts = claim_pending_runs()
    poll >> starts
    TriggerDagRunOperator.partial(
        task_id="start_runs",
        skip_when_already_exists=True,
        wait_for_completion=False,
        retries=2,
        max_active_tis_per_dagrun=16,
    ).expand_kwargs(starts)
