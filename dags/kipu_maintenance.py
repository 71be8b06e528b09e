"""``kipu_maintenance``: daily, refresh tokens expiring within 48 h, report connections that need a reconnect, and
renew YouTube WebSub leases."""

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, task

with DAG(
    dag_id="kipu_maintenance",
    description="Kipu: refresh expiring tokens, flag and report connections that need the user",
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["kipu", "kipu:engine"],
    default_args={"owner": "kipu", "retries": 2, "retry_delay": timedelta(minutes=10)},
    doc_md=__doc__,
):

    @task
    def refresh_expiring_tokens() -> dict:
        from kipu.auth.maintenance import refresh_expiring

        return refresh_expiring(timedelta(hours=48))

    @task(trigger_rule="all_done")
    def report_reconnects() -> list[dict]:
        """Every connection flagged ``needs_reconnect``, with the reason; logged for operators."""
        import logging

        from kipu.auth.maintenance import needing_reconnect

        flagged = needing_reconnect()
        for c in flagged:
            logging.getLogger("kipu.maintenance").warning(
                "team %s: %s account %s needs a reconnect: %s", c["team"], c["platform"], c["account"], c["reason"]
            )
        return flagged

    @task
    def renew_youtube_leases() -> list[str]:
        """Re-subscribe YouTube channels whose WebSub lease ends soon (leases last days)."""
        from kipu.platforms.youtube.websub import renew_leases

        return renew_leases()

    refresh_expiring_tokens() >> report_reconnects()
    renew_youtube_leases()
