"""``KipuPollTrigger``: one poll cycle over many sources, concurrently, inside Airflow's triggerer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from kipu.hooks.http import Limits
from kipu.poll.due import Source
from kipu.poll.engine import run_cycle

log = logging.getLogger(__name__)
_COUNTS = ("global_concurrency", "default_per_platform", "per_token")


def due_now(max_sources: int) -> list[Source]:
    """The sources due at this moment (the most overdue first, at most ``max_sources``)."""
    from kipu.poll.due import due_sources
    from kipu.store.engine import session_scope

    with session_scope() as session:
        sources = due_sources(session, datetime.now(UTC), max_sources)
    if sources:
        log.info("%d accounts due for %d workflows", len(sources), sum(len(s.workflow_ids) for s in sources))
    else:
        log.info("no poll trigger is due")
    return sources


class KipuPollTrigger(BaseTrigger):
    """Fetches ``sources`` with bounded concurrency and records what is new; ends the task with the cycle's report
    as its return value (``TaskSuccessEvent``), so the task does not resume on a worker.

    With ``sources=None`` (the task started in the triggerer, ``start_from_trigger``) it first selects the due
    sources itself, so a cycle never waits for a worker slot. Only connection and workflow ids travel in the
    trigger's kwargs; tokens are read from the store in the triggerer and never serialized.
    """

    template_fields = ("limits", "max_sources", "source_timeout")

    def __init__(
        self,
        sources: list[dict[str, Any]] | None = None,
        limits: dict[str, Any] | None = None,
        source_timeout: float = 30.0,
        max_sources: int = 10_000,
    ):
        super().__init__()
        self.sources = sources
        self.limits = limits or {}
        self.source_timeout = source_timeout
        self.max_sources = max_sources

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "kipu.triggers.poll.KipuPollTrigger",
            {
                "sources": self.sources,
                "limits": self.limits,
                "source_timeout": self.source_timeout,
                "max_sources": self.max_sources,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.sources is None:
            # The store read is blocking: off the triggerer's event loop, which other triggers share.
            sources = await asyncio.to_thread(due_now, int(self.max_sources))
        else:
            sources = [Source.model_validate(s) for s in self.sources]
        limits = Limits(**{k: int(v) if k in _COUNTS else v for k, v in self.limits.items()})
        report = await run_cycle(sources, limits=limits, source_timeout=float(self.source_timeout))
        log.info(
            "poll cycle: %(sources)s accounts, %(fetched)s fetched, %(failed)s failed, %(new_runs)s new items, "
            "%(skipped_runs)s skipped by trigger filters, in %(seconds)ss",
            report.model_dump(),
        )
        # The cycle ends its task here, in the triggerer: no worker slot and no second task start just to log it.
        yield TaskSuccessEvent(xcoms={"return_value": report.model_dump()})
