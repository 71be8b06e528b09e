"""``kipu_notify``: every minute, group each team's new events into digests and deliver them (e-mail, Slack,
signed webhooks), retrying failed deliveries with backoff. Apart from the workflow DAGs, so a slow receiver never
holds up a post."""

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, task

with DAG(
    dag_id="kipu_notify",
    description="Kipu: deliver team notifications and outgoing webhooks",
    schedule=timedelta(minutes=1),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["kipu", "kipu:engine"],
    default_args={"owner": "kipu", "retries": 1, "retry_delay": timedelta(seconds=30)},
    dagrun_timeout=timedelta(minutes=10),
    doc_md=__doc__,
):

    @task(execution_timeout=timedelta(minutes=8))
    def deliver_notifications() -> dict:
        from kipu.notify.dispatch import dispatch

        return dispatch()

    deliver_notifications()
