"""``KipuStartRunsOperator``: one task execution starts every pending run of a poll cycle (not one task per item)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule


class KipuStartRunsOperator(BaseOperator):
    """Starts each pending run (new this cycle, or left behind by a crash) under ``kipu__<workflow_run_id>``; a run
    that exists already is left alone. Also asks Airflow again to parse the shard of any workflow change it has not
    parsed yet (``kipu.factory.reparse``).

    :param limit: at most this many runs per execution; the rest start in the next cycle.
    """

    template_fields = ("limit",)
    ui_color = "#e0f0e0"

    def __init__(self, *, limit: int = 500, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.limit = limit

    def execute(self, context: Context) -> dict[str, int]:
        from kipu.factory.reparse import reconcile
        from kipu.poll.start import start_pending, trigger_from_task

        reconcile()
        counts = start_pending(trigger_from_task, limit=int(self.limit))
        self.log.info("Runs started: %(started)s; already running: %(existing)s; refused: %(refused)s", counts)
        return counts
