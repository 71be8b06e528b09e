"""The Kipu Airflow plugin: mounts the /kipu REST API in Airflow's API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from kipu.api.app import create_app


class KipuPlugin(AirflowPlugin):
    name = "kipu"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/kipu", "name": "Kipu API"}]
