"""``KipuPollTrigger``: one poll cycle over many sources, concurrently, inside Airflow's triggerer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from kipu.hooks.http import Limits
from kipu.poll.due import Source
from kipu.poll.engine import run_cycle

log = logging.getLogger(__name__)


class KipuPollTrigger(BaseTrigger):
    """Fetches ``sources`` with bounded concurrency and records what is new; ends the task with the cycle's report
    as its return value (``TaskSuccessEvent``), so the task does not resume on a worker.

    Only connection and workflow ids travel in the trigger's kwargs; tokens are read from the store in the
    triggerer and never serialized.
    """

    def __init__(
        self, sources: list[dict[str, Any]], limits: dict[str, Any] | None = None, source_timeout: float = 30.0
    ):
        super().__init__()
        self.sources = sources
        self.limits = limits or {}
        self.source_timeout = source_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "kipu.triggers.poll.KipuPollTrigger",
            {"sources": self.sources, "limits": self.limits, "source_timeout": self.source_timeout},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        report = await run_cycle(
            [Source.model_validate(s) for s in self.sources],
            limits=Limits(**self.limits),
            source_timeout=self.source_timeout,
        )
        log.info(
            "poll cycle: %(sources)s accounts, %(fetched)s fetched, %(failed)s failed, %(new_runs)s new items, "
            "%(skipped_runs)s skipped by trigger filters, in %(seconds)ss",
            report.model_dump(),
        )
        # The cycle ends its task here, in the triggerer: no worker slot and no second task start just to log it.
        yield TaskSuccessEvent(xcoms={"return_value": report.model_dump()})
