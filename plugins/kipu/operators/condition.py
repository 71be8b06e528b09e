"""The condition step: a branch to the first step of ``if_true_steps`` or ``if_false_steps``."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import Context

from kipu.filters import check_all
from kipu.operators.base import KipuStepOperator, RunState
from kipu.specs.common import ConditionSet


class KipuConditionOperator(KipuStepOperator, BaseBranchOperator):
    ui_color = "#f0e6ff"

    def __init__(self, *, true_task: str | None, false_task: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.true_task = true_task
        self.false_task = false_task

    def step_execute(self, context: Context) -> Any:
        with self.recorded(context) as state:
            branch = self.run_step(context, state)
        return self.do_branch(context, branch)

    def run_step(self, context: Context, state: RunState) -> list[str]:
        body = self.step_config["config"]
        rules = ConditionSet.model_validate({"conditions": body["conditions"], "operator": body.get("operator", "and")})
        outcome, reasons = check_all(rules, state.item)
        target = self.true_task if outcome else self.false_task
        state.output.update(
            {
                "outcome": outcome,
                "branch": "if_true" if outcome else "if_false",
                "next_step": target,
                "reasons": reasons,
            }
        )
        self.log.info("Condition is %s (%s); continuing at %s", outcome, "; ".join(reasons), target or "the end")
        return [target] if target else []

    def choose_branch(self, context: Context) -> list[str]:  # used only if called directly
        return self.run_step(context, self.resolve_run(context))
