"""``KipuPollTrigger``: one poll cycle over many sources, concurrently, inside Airflow's triggerer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kipu.hooks.http import Limits
from kipu.poll.due import Source
from kipu.poll.engine import run_cycle


class KipuPollTrigger(BaseTrigger):
    """Fetches ``sources`` with bounded concurrency and records what is new; yields the cycle's report.

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
        yield TriggerEvent(report.model_dump())
