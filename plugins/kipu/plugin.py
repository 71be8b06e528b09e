"""The Kipu Airflow plugin; the /kipu FastAPI app, listeners and links attach here as they land."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class KipuPlugin(AirflowPlugin):
    name = "kipu"
