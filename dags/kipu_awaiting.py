"""``kipu_awaiting``: every 15 minutes, ask the platforms about posts awaiting their moderation and record the final
outcome (TikTok hands out a post id only after review)."""

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, task

with DAG(
    dag_id="kipu_awaiting",
    description="Kipu: settle posts awaiting the platform's moderation",
    schedule=timedelta(minutes=15),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["kipu", "kipu:engine"],
    default_args={"owner": "kipu", "retries": 1, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
):

    @task
    def settle_awaiting_posts() -> dict:
        from kipu.publishing import settle_awaiting

        return settle_awaiting()

    settle_awaiting_posts()
