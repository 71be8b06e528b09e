"""The Kipu Airflow plugin: mounts the /kipu REST API in Airflow's API server."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from kipu.api.access_log import RedactTokensInQuery


class LazyKipuApp:
    """The /kipu ASGI app, built on its first request. Plugins are imported by every Airflow process, tasks
    included; building the app eagerly cost each of them about a second of imports."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from kipu.api.app import create_app
            from kipu.api.gc_tuning import tune_gc

            self._app = create_app()
            tune_gc()
        await self._app(scope, receive, send)


class KipuPlugin(AirflowPlugin):
    name = "kipu"
    fastapi_apps = [{"app": LazyKipuApp(), "url_prefix": "/kipu", "name": "Kipu API"}]
    # Kipu's pages in Airflow's navigation, and tabs on a workflow's DAG and on each DAG run (kipu.ui); embedded by
    # Airflow's UI, signed in with its session.
    external_views = [
        *(
            {"name": label, "href": f"/kipu/ui/{key}", "url_route": f"kipu-{key}", "category": "Kipu"}
            for key, label in (
                ("workflows", "Workflows"),
                ("posts", "Posts"),
                ("approvals", "Approvals"),
                ("connections", "Connections"),
                ("media", "Media"),
            )
        ),
        {"name": "Kipu", "href": "/kipu/ui/dag?dag_id={DAG_ID}", "destination": "dag", "url_route": "kipu"},
        {
            "name": "Kipu item",
            "href": "/kipu/ui/run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "kipu-item",
        },
    ]
    # Outermost, so no access log ever sees a Kipu API token sent in a query string.
    fastapi_root_middlewares = [{"middleware": RedactTokensInQuery, "name": "Kipu token redaction"}]
