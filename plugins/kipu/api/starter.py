"""Starting a DAG run from inside Airflow's API server, with the deterministic run id (a repeat is a no-op)."""

from __future__ import annotations

from typing import Any


class AirflowStarter:
    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagRunAlreadyExists
        from airflow.utils.types import DagRunTriggeredByType

        try:
            trigger_dag(
                dag_id,
                run_id=run_id,
                conf=conf,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name="kipu",
            )
        except DagRunAlreadyExists:
            return False
        return True
