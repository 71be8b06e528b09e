"""The events a team can be told about, and ``emit``: the one way an event is recorded (once per key)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kipu.store.models import NotificationEvent

EventKind = Literal[
    "post.published",
    "post.failed",
    "approval.requested",
    "approval.timed_out",
    "connection.needs_reconnect",
    "ai.budget_spent",
    "plan.limit_reached",
    "test",
]
KINDS: tuple[str, ...] = get_args(EventKind)
SUBSCRIBABLE: tuple[str, ...] = tuple(k for k in KINDS if k != "test")
MAX_TEXT = 500  # captions and errors inside an event are cut here: events are messages, not archives


def clip(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def emit(session: Session, team_id: uuid.UUID | str | None, kind: EventKind, data: dict[str, Any], key: str) -> bool:
    """Record ``kind`` for the team unless an event with ``key`` exists; True if it was new. In the caller's
    transaction, so an event exists exactly when what it reports was committed."""
    if team_id is None:
        return False
    team = uuid.UUID(str(team_id))
    if session.scalar(
        select(NotificationEvent.id).where(NotificationEvent.team_id == team, NotificationEvent.key == key)
    ):
        return False
    try:
        with session.begin_nested():  # a concurrent writer of the same key wins; the caller's work stands
            session.add(NotificationEvent(team_id=team, kind=kind, key=key, data=data, created_at=datetime.now(UTC)))
    except IntegrityError:
        return False
    return True


def airflow_url(path: str = "") -> str:
    """A link into Airflow's UI: ``KIPU_PUBLIC_URL``, else Airflow's ``[api] base_url``."""
    base = os.environ.get("KIPU_PUBLIC_URL", "")
    if not base:
        try:
            from airflow.configuration import conf

            base = conf.get("api", "base_url", fallback="") or ""
        except Exception:  # links are a convenience; the event stands without Airflow's config
            base = ""
    return (base or "http://localhost:8080").rstrip("/") + path


def task_url(dag_id: str, run_id: str, task_id: str, suffix: str = "") -> str:
    from urllib.parse import quote

    return airflow_url(
        f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}{suffix}"
    )
