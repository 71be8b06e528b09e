"""Airflow connection types for Kipu: the OAuth app of each platform that has one (client id and secret), and the AI
server. Only what Kipu reads from an Airflow connection is registered."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseHook


class _ConnectionType(BaseHook):
    """Only declares a connection type and its form; Kipu's platform hooks do the work."""

    conn_name_attr = "conn_id"
    conn_type: ClassVar[str]
    default_conn_name: ClassVar[str]
    hook_name: ClassVar[str]
    labels: ClassVar[dict[str, str]] = {}
    placeholders: ClassVar[dict[str, str]] = {}

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        shown = {"host", "login", "password", "extra"}
        return {
            "hidden_fields": sorted({"schema", "port", "host", "login", "password", "extra"} - shown - set(cls.labels)),
            "relabeling": cls.labels,
            "placeholders": cls.placeholders,
        }


class OpenAIConnection(_ConnectionType):
    conn_type = "kipu_openai"
    default_conn_name = "kipu_openai"
    hook_name = "Kipu AI (OpenAI-compatible)"
    labels = {"host": "Base URL", "password": "API key"}
    placeholders = {
        "host": "https://api.openai.com/v1 (or any OpenAI-compatible server)",
        "extra": '{"model": "gpt-4o-mini", "daily_token_budget": 200000}',
    }


def _app(platform: str, title: str) -> type[_ConnectionType]:
    return type(
        f"{title.replace(' ', '')}AppConnection",
        (_ConnectionType,),
        {
            "conn_type": f"kipu_{platform}_app",
            "default_conn_name": f"kipu_{platform}_app",
            "hook_name": f"Kipu {title} app (OAuth client)",
            "labels": {"login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "extra": '{"redirect_uri": "https://kipu.example/kipu/api/auth/callback/' + platform + '"}'
            },
            "__module__": __name__,
        },
    )


def app_connection_types() -> dict[str, type[_ConnectionType]]:
    """``kipu_<platform>_app`` for every platform whose package declares an OAuth app of this deployment, by
    connection type (a federated platform's apps are registered per instance and kept in the store)."""
    from kipu.platforms import all_platforms

    return {
        f"kipu_{p.name}_app": _app(p.name, p.title)
        for p in all_platforms().values()
        if p.oauth is not None and not p.oauth.per_instance
    }


# Importable by name (``kipu.connection_types.XAppConnection``), as Airflow's provider registry needs.
globals().update({cls.__name__: cls for cls in app_connection_types().values()})
