"""Kipu settings read from the environment: home folder, store URL, key material and numeric settings."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

N = TypeVar("N", int, float)


def env_number(name: str, default: N, minimum: N | None = None) -> N:
    """A numeric setting from ``name``, of the default's type; a bad value is an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={raw!r} is below its minimum of {minimum}")
    return value


def kipu_home() -> Path:
    """The Kipu home folder (``KIPU_HOME``, default ``./.kipu``), created on first use."""
    home = Path(os.environ.get("KIPU_HOME", ".kipu")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _airflow_connection_url(conn_id: str) -> str | None:
    """The SQLAlchemy URL of an Airflow connection, or None when Airflow has none by that id."""
    env = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env:
        return _normalise_url(env)
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no Airflow context or no such connection: fall through to the default
        return None
    return _normalise_url(conn.get_uri())


def _normalise_url(url: str) -> str:
    # Airflow writes postgres:// URIs; SQLAlchemy 2 wants postgresql+psycopg2://.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def database_url() -> str:
    """``KIPU_DATABASE_URL``, else the Airflow connection ``kipu_db``, else SQLite in ``KIPU_HOME``."""
    url = os.environ.get("KIPU_DATABASE_URL")
    if url:
        return _normalise_url(url)
    url = _airflow_connection_url("kipu_db")
    if url:
        return url
    return f"sqlite:///{kipu_home() / 'kipu.db'}"
