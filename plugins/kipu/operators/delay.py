"""The delay step: deferrable on ``DateTimeTrigger``; the target is fixed at first start so retries keep it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import Context

from kipu.operators.base import KipuStepOperator, RunState
from kipu.schedule import delay_target
from kipu.specs.steps import DelayConfig


class KipuDelayOperator(KipuStepOperator):
    """Frees its worker slot while waiting: the triggerer fires at the target time."""

    ui_color = "#eeeeee"

    def run_step(self, context: Context, state: RunState) -> Any:
        cfg = DelayConfig.model_validate(self.step_config["config"])
        now = datetime.now(UTC)
        target_iso = state.output.get("target_utc")
        target = datetime.fromisoformat(target_iso) if target_iso else delay_target(cfg, self.workflow_timezone, now)
        state.output["target_utc"] = target.isoformat()
        if target <= now:
            state.output["waited_until"] = now.isoformat()
            return None
        local = target.astimezone(ZoneInfo(self.workflow_timezone))
        self.log.info("Waiting until %s (%s in %s)", target.isoformat(), local.isoformat(), self.workflow_timezone)
        self.defer(trigger=DateTimeTrigger(moment=target), method_name="execute_complete")
        return None

    def execute_complete(self, context: Context, event: Any = None) -> None:
        with self.recorded(context) as state:
            state.output["waited_until"] = datetime.now(UTC).isoformat()
