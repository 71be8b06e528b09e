"""Registers Kipu's connection types with Airflow (the ``apache_airflow_provider`` entry point): the AI server and
each platform's OAuth app, derived from the platform registry. Platform accounts live in Kipu's store, not in Airflow
connections, so they are not registered."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from kipu.connection_types import app_connection_types

    hooks = {
        "kipu_openai": "kipu.connection_types.OpenAIConnection",
        **{conn_type: f"kipu.connection_types.{cls.__name__}" for conn_type, cls in app_connection_types().items()},
    }
    return {
        "package-name": "kipu",
        "name": "Kipu",
        "description": "Content cross-posting on Airflow: connection types for AI and platform apps.",
        "connection-types": [{"connection-type": t, "hook-class-name": h} for t, h in hooks.items()],
    }
