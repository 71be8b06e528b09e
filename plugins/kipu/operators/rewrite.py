"""The ai_rewrite step: a caption for the target platform that always fits its limits (AI or offline)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from kipu.captions.rewriter import RewriteRequest
from kipu.operators.base import KipuStepOperator, RunState
from kipu.specs.steps import AIRewriteConfig


class KipuRewriteOperator(KipuStepOperator):
    """OpenAI-compatible rewriting through the ``kipu_openai`` connection; the offline rewriter without it, over
    the team's daily token budget, or when the model fails. Records engine, model, tokens and estimated cost."""

    ui_color = "#e6fff0"

    def run_step(self, context: Context, state: RunState) -> Any:
        from kipu.ai.service import generate_hashtags, rewrite_caption  # the openai SDK stays out of DAG parsing

        cfg = AIRewriteConfig.model_validate(self.step_config["config"])
        source = state.captions.get(cfg.target_platform) or state.item.caption or state.item.title or ""
        extra = tuple(state.item.hashtags)
        generated: list[str] = []
        if cfg.generate_hashtags and cfg.include_hashtags:
            generated, engine, why = generate_hashtags(
                source, cfg.target_platform, cfg.generate_hashtags, team_id=state.team_id, run_id=state.run_id
            )
            extra = (*generated, *extra)
            state.output["hashtag_engine"] = engine
            if why:
                state.output["hashtag_fallback"] = why
        result = rewrite_caption(
            RewriteRequest(
                text=source,
                target_platform=cfg.target_platform,
                tone=cfg.tone,
                max_length=cfg.max_length,
                include_hashtags=cfg.include_hashtags,
                include_emojis=cfg.include_emojis,
                custom_instructions=cfg.custom_instructions,
                extra_hashtags=extra,
                hashtag_count=cfg.generate_hashtags,
            ),
            team_id=state.team_id,
            run_id=state.run_id,
        )
        state.output.update(
            {
                "target_platform": cfg.target_platform,
                "caption": result.caption,
                "hashtags": result.hashtags,
                "generated_hashtags": generated,
                "engine": result.engine,
                "model": result.model,
                "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out,
                "cost_usd": result.cost_usd,
                "fallback": result.fallback,
                "truncated": result.truncated,
                "notes": result.notes,
            }
        )
        self.log.info(
            "Rewrote caption for %s with the %s rewriter%s",
            cfg.target_platform,
            result.engine,
            f" (fallback: {result.fallback})" if result.fallback else "",
        )
        return {"target_platform": cfg.target_platform, "engine": result.engine}
