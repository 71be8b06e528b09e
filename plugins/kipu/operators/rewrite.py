"""The ai_rewrite step: a caption for the target platform that always fits its limits (AI or offline)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from kipu.operators.base import KipuStepOperator, RunState
from kipu.specs.steps import AIRewriteConfig


class KipuRewriteOperator(KipuStepOperator):
    """OpenAI-compatible rewriting through the ``kipu_openai`` connection; the offline rewriter without it, over
    the team's daily token budget, or when the model fails. Records engine, model, tokens and estimated cost."""

    ui_color = "#e6fff0"

    def run_step(self, context: Context, state: RunState) -> Any:
        from kipu.ai.service import rewrite_step  # the openai SDK stays out of DAG parsing

        cfg = AIRewriteConfig.model_validate(self.step_config["config"])
        out = rewrite_step(cfg, state.item, state.captions, team_id=state.team_id, run_id=state.run_id)
        state.output.update(out)
        self.log.info(
            "Rewrote caption for %s with the %s rewriter%s",
            cfg.target_platform,
            out["engine"],
            f" (fallback: {out['fallback']})" if out["fallback"] else "",
        )
        return {"target_platform": cfg.target_platform, "engine": out["engine"]}
