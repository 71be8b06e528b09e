"""The Kipu Airflow plugin: mounts the /kipu REST API in Airflow's API server."""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from kipu.api.access_log import RedactTokensInQuery
from kipu.ui.layout import PAGES

log = logging.getLogger(__name__)


class LazyKipuApp:
    """The /kipu ASGI app, built when the API server starts (``BuildOnStartup``), or else on its first request.
    Plugins are imported by every Airflow process, tasks included; building the app at import cost each of them
    about a second."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def build(self) -> Any:
        with self._lock:
            if self._app is None:
                from kipu.api.app import create_app
                from kipu.api.gc_tuning import tune_gc

                app = create_app()
                tune_gc()  # after the build, so the collector's freeze keeps the app's objects out of its scans
                self._app = app
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await (self._app or self.build())(scope, receive, send)


KIPU_API = LazyKipuApp()


class BuildOnStartup:
    """Root middleware: builds the /kipu app while the API server starts, so no request pays for it (about 1.4 s:
    imports, routes, a full collection). Airflow runs the lifespan of mounted FastAPI apps only, and the Kipu app is
    not one until built; a root middleware sees the server's own lifespan."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def receive_then_build() -> Any:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                try:
                    KIPU_API.build()
                except Exception:  # the server still starts; the first /kipu request tries again and answers 500
                    log.exception("Kipu could not build its API at start-up")
            return message

        await self.app(scope, receive_then_build, send)


class KipuPlugin(AirflowPlugin):
    name = "kipu"
    fastapi_apps = [{"app": KIPU_API, "url_prefix": "/kipu", "name": "Kipu API"}]
    # Kipu's pages in Airflow's navigation, and tabs on a workflow's DAG and on each DAG run (kipu.ui); embedded by
    # Airflow's UI, signed in with its session.
    external_views = [
        *(
            {"name": label, "href": f"/kipu/ui/{key}", "url_route": f"kipu-{key}", "category": "Kipu"}
            for key, label in PAGES
        ),
        {"name": "Kipu", "href": "/kipu/ui/dag?dag_id={DAG_ID}", "destination": "dag", "url_route": "kipu"},
        {
            "name": "Kipu item",
            "href": "/kipu/ui/run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "kipu-item",
        },
    ]
    # Airflow adds each outside the last: token redaction is outermost, so no access log ever sees a Kipu API token
    # sent in a query string.
    fastapi_root_middlewares = [
        {"middleware": BuildOnStartup, "name": "Kipu API built at start-up"},
        {"middleware": RedactTokensInQuery, "name": "Kipu token redaction"},
    ]
