"""``KipuPollSensor``: selects the due sources and defers the whole poll cycle to ``KipuPollTrigger``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.bases.sensor import BaseSensorOperator

from kipu.poll.due import due_sources
from kipu.store.engine import session_scope
from kipu.triggers.poll import KipuPollTrigger


class KipuPollSensor(BaseSensorOperator):
    """Due poll triggers, grouped by account, fetched in the triggerer; returns the cycle report (no secrets).

    :param max_sources: at most this many accounts per cycle (the most overdue first); the rest wait a cycle.
    :param global_concurrency: requests in flight at once, across all sources.
    :param per_platform: requests in flight per platform, e.g. ``{"x": 20}``.
    :param per_token: requests in flight per account token.
    :param source_timeout: seconds one request may take once it holds its slots (queueing is not counted).
    """

    template_fields = ("max_sources", "global_concurrency", "per_token", "source_timeout")
    ui_color = "#e0f0e0"

    def __init__(
        self,
        *,
        max_sources: int = 10_000,
        global_concurrency: int = 200,
        per_platform: dict[str, int] | None = None,
        per_token: int = 2,
        source_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", timedelta(minutes=10).total_seconds())
        super().__init__(**kwargs)
        self.max_sources = max_sources
        self.global_concurrency = global_concurrency
        self.per_platform = per_platform or {}
        self.per_token = per_token
        self.source_timeout = source_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        with session_scope() as session:
            sources = due_sources(session, datetime.now(UTC), int(self.max_sources))
        if not sources:
            self.log.info("no poll trigger is due")
            return {"sources": 0}
        self.log.info("%d accounts due for %d workflows", len(sources), sum(len(s.workflow_ids) for s in sources))
        self.defer(
            trigger=KipuPollTrigger(
                [s.model_dump() for s in sources],
                {
                    "global_concurrency": int(self.global_concurrency),
                    "per_platform": self.per_platform,
                    "per_token": int(self.per_token),
                },
                float(self.source_timeout),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: Any) -> dict[str, Any]:
        """Only under ``dag.test()``, which resumes the task with the trigger's ``TaskSuccessEvent``; a deployed
        triggerer ends the task itself, with the report as its return value."""
        if not isinstance(event, dict):
            return {}
        self.log.info(
            "poll cycle: %(sources)s accounts, %(fetched)s fetched, %(failed)s failed, %(new_runs)s new items, "
            "%(skipped_runs)s skipped by trigger filters, in %(seconds)ss",
            event,
        )
        return event

    def poke(self, context: Context) -> bool:  # the cycle is always deferred; never poked
        raise NotImplementedError("KipuPollSensor always defers")
