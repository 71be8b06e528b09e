"""The ai_rewrite step: a caption for the target platform that always fits its limits."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from kipu.captions.rewriter import RewriteRequest, rewrite
from kipu.operators.base import KipuStepOperator, RunState
from kipu.specs.steps import AIRewriteConfig


class KipuRewriteOperator(KipuStepOperator):
    """Uses the offline rewriter when no AI connection is configured (the OpenAI path is its own issue)."""

    ui_color = "#e6fff0"

    def run_step(self, context: Context, state: RunState) -> Any:
        cfg = AIRewriteConfig.model_validate(self.step_config["config"])
        source = state.captions.get(cfg.target_platform) or state.item.caption or state.item.title or ""
        result = rewrite(
            RewriteRequest(
                text=source,
                target_platform=cfg.target_platform,
                tone=cfg.tone,
                max_length=cfg.max_length,
                include_hashtags=cfg.include_hashtags,
                include_emojis=cfg.include_emojis,
                custom_instructions=cfg.custom_instructions,
                extra_hashtags=tuple(state.item.hashtags),
            )
        )
        state.output.update(
            {
                "target_platform": cfg.target_platform,
                "caption": result.caption,
                "hashtags": result.hashtags,
                "engine": result.engine,
                "truncated": result.truncated,
                "notes": result.notes,
            }
        )
        self.log.info("Rewrote caption for %s with the %s rewriter", cfg.target_platform, result.engine)
        return {"target_platform": cfg.target_platform, "engine": result.engine}
