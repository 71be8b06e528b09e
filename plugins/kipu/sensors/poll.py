"""``KipuPollSensor``: the poll cycle, started in the triggerer (``KipuPollTrigger`` selects the due sources and
fetches them); under ``dag.test()`` it selects them itself and defers."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.bases.sensor import BaseSensorOperator
from airflow.triggers.base import StartTriggerArgs

from kipu.triggers.poll import KipuPollTrigger, due_now


class KipuPollSensor(BaseSensorOperator):
    """Due poll triggers, grouped by account, fetched in the triggerer; returns the cycle report (no secrets).

    :param max_sources: at most this many accounts per cycle (the most overdue first); the rest wait a cycle.
    :param global_concurrency: requests in flight at once, across all sources.
    :param per_platform: requests in flight per platform, e.g. ``{"x": 20}``.
    :param per_token: requests in flight per account token.
    :param source_timeout: seconds one request may take once it holds its slots (queueing is not counted).
    :param start_from_trigger: start the cycle in the triggerer (Airflow's ``start_from_trigger``): the scheduler
        hands it straight to the triggerer, so a cycle never waits for a worker slot behind a burst of items, and
        costs no task process. ``False`` selects the due sources on a worker first, then defers.
    """

    template_fields = ("max_sources", "global_concurrency", "per_token", "source_timeout")
    ui_color = "#e0f0e0"
    start_trigger_args = StartTriggerArgs(
        trigger_cls="kipu.triggers.poll.KipuPollTrigger", next_method="execute_complete", trigger_kwargs={}
    )
    start_from_trigger = False

    def __init__(
        self,
        *,
        max_sources: int = 10_000,
        global_concurrency: int = 200,
        per_platform: dict[str, int] | None = None,
        per_token: int = 2,
        source_timeout: float = 30.0,
        start_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        # Bounds how long one cycle holds kipu_poll (one active run): a cycle whose end Airflow lost (the triggerer
        # reported it as the database went down) waited out 10 minutes. A cycle cut short loses nothing: each source
        # commits its items and cursor together, and what was not fetched stays due for the next cycle.
        kwargs.setdefault("timeout", timedelta(minutes=4).total_seconds())
        super().__init__(**kwargs)
        self.max_sources = max_sources
        self.global_concurrency = global_concurrency
        self.per_platform = per_platform or {}
        self.per_token = per_token
        self.source_timeout = source_timeout
        self.start_from_trigger = start_from_trigger
        if start_from_trigger:
            # Replaced, not mutated: ``start_trigger_args`` is a class attribute shared by every instance.
            self.start_trigger_args = dataclasses.replace(
                self.start_trigger_args,
                trigger_kwargs={
                    "sources": None,
                    "limits": self._limits(),
                    "source_timeout": source_timeout,
                    "max_sources": max_sources,
                },
                timeout=timedelta(seconds=self.timeout),
            )

    def _limits(self) -> dict[str, Any]:
        # Values as given (a template is rendered by whoever runs the cycle); the trigger casts them.
        limits = {"global_concurrency": self.global_concurrency, "per_token": self.per_token}
        return {**limits, "per_platform": self.per_platform}

    def execute(self, context: Context) -> dict[str, Any]:
        sources = due_now(int(self.max_sources))
        if not sources:
            return {"sources": 0}
        self.defer(
            trigger=KipuPollTrigger([s.model_dump() for s in sources], self._limits(), float(self.source_timeout)),
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
