"""Kipu's connection types are registered with Airflow, so app credentials can live in Airflow connections; only
what Kipu reads from an Airflow connection is registered (accounts live in Kipu's store)."""

from __future__ import annotations

import warnings


def test_every_kipu_connection_type_is_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hooks = ProvidersManager().hooks
    platforms = ("x", "linkedin", "pinterest", "facebook", "instagram", "threads", "tiktok", "youtube")
    for conn_type in ("kipu_openai", *(f"kipu_{p}_app" for p in platforms)):
        info = hooks[conn_type]
        assert info is not None and info.package_name == "kipu", conn_type
    assert hooks["kipu_openai"].hook_name == "Kipu AI (OpenAI-compatible)"
    # A platform account is a row of Kipu's store, read by the platform's hook: no Airflow connection type for it.
    # Mastodon's OAuth clients are registered per instance and kept in the store: no app connection either.
    for misleading in (
        "kipu_bluesky",
        "kipu_feed",
        "kipu_outbox",
        "kipu_mastodon",
        "kipu_mastodon_app",
        *(f"kipu_{p}" for p in platforms),
    ):
        assert misleading not in hooks, misleading


def test_app_connection_forms_name_their_fields() -> None:
    from kipu.connection_types import OpenAIConnection, XAppConnection

    x = XAppConnection.get_ui_field_behaviour()
    assert x["relabeling"] == {"login": "Client ID", "password": "Client secret"}
    assert "schema" in x["hidden_fields"] and "login" not in x["hidden_fields"]
    assert OpenAIConnection.get_ui_field_behaviour()["relabeling"]["password"] == "API key"
