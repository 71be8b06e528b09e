"""The filter step: a short-circuit; when the item fails, every downstream step is skipped."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context
from airflow.sdk.bases.skipmixin import SkipMixin

from kipu.filters import check_all
from kipu.operators.base import KipuStepOperator, RunState
from kipu.specs.common import ConditionSet


class KipuFilterOperator(KipuStepOperator, SkipMixin):
    """Like ``ShortCircuitOperator`` with ``ignore_downstream_trigger_rules=False``: the join rules still apply."""

    ui_color = "#fff4d6"
    inherits_from_skipmixin = True

    def run_step(self, context: Context, state: RunState) -> Any:
        rules = ConditionSet.model_validate(self.step_config["config"])
        passed, reasons = check_all(rules, state.item)
        state.output.update({"passed": passed, "reasons": reasons})
        if passed:
            self.log.info("Item %s passes the filter: %s", state.item.platform_post_id, "; ".join(reasons))
            return True
        state.output["dropped"] = f"filtered out by '{self.task_id}': " + "; ".join(reasons)
        self.item_ended = True
        self.log.info("Item %s is filtered out: %s", state.item.platform_post_id, "; ".join(reasons))
        downstream = [t for t in self.get_direct_relatives(upstream=False) if t.task_id != "finalize"]
        if downstream:
            self.skip(ti=context["ti"], tasks=downstream)
        return False
