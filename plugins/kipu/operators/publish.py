"""The publish step: one ``posts`` intent per target, written before the call, so a retry never re-posts."""

from __future__ import annotations

import uuid
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from kipu.hooks.base import PlatformError
from kipu.operators.base import KipuStepOperator, RunState
from kipu.platforms import target_hook
from kipu.publishing import LimitExceeded, caption_for, deliver, record_outcome, request_for
from kipu.specs.steps import PublishStep
from kipu.store.accounts import resolve_connection
from kipu.store.engine import session_scope
from kipu.store.posts import claim_intent


class KipuPublishOperator(KipuStepOperator):
    """Publishes to each target once; a retry touches only targets not yet published."""

    ui_color = "#d6f5d6"

    def run_step(self, context: Context, state: RunState) -> Any:
        step = PublishStep.model_validate({"id": self.task_id, "type": "publish", **self.step_config})
        results: dict[str, dict[str, Any]] = dict(state.output.get("targets") or {})
        failures: list[tuple[str, PlatformError | Exception]] = []
        for target in step.targets:
            caption = caption_for(step.config, target.platform, state.item, state.captions)
            request_media = list(state.item.media)
            with session_scope() as session:
                conn = resolve_connection(session, state.team_id, target.connection_id)
                if conn is None:
                    raise AirflowFailException(
                        f"{self.task_id}: connection '{target.connection_id}' no longer exists in this team"
                    )
                post = claim_intent(
                    session,
                    team_id=state.team_id,
                    run_id=state.run_id,
                    step_id=uuid.UUID(self.step_id),
                    connection_id=conn.id,
                    platform=target.platform,
                    content_type=state.item.content_type,
                    caption=caption,
                    media_urls=[m.url for m in request_media],
                    metadata={"source_post_id": state.item.platform_post_id, "source_url": state.item.url},
                )
                post_id, already = str(post.id), post.status == "published"
                request = request_for(session, post)  # the one builder: a retry builds the same request
                hook = target_hook(conn)
            key = target.connection_id
            if already:
                self.log.info("%s: already published as post %s; not publishing again", target.platform, post_id)
                results[key] = {**results.get(key, {}), "status": "published", "post_id": post_id}
                continue
            try:
                # A previous attempt may have reached the platform before crashing: deliver asks before posting.
                existing = deliver(hook, request, state.team_id)
            except Exception as exc:
                record_outcome(uuid.UUID(post_id), None, exc)
                results[key] = {"status": "failed", "post_id": post_id, "error": str(exc)}
                failures.append((target.platform, exc))
                continue
            record_outcome(uuid.UUID(post_id), existing, None)
            if existing.awaiting:
                results[key] = {"status": "awaiting_moderation", "post_id": post_id}
                self.log.info("%s: accepted, awaiting the platform's moderation; settled later", target.platform)
                continue
            results[key] = {"status": "published", "post_id": post_id, "url": existing.url}
            self.log.info("%s: published as %s", target.platform, existing.platform_post_id)
        state.output["targets"] = results
        if failures:
            message = "; ".join(f"{p}: {e}" for p, e in failures)
            retryable = any(getattr(e, "retryable", True) and not isinstance(e, LimitExceeded) for _, e in failures)
            published = sum(1 for r in results.values() if r["status"] in ("published", "awaiting_moderation"))
            state.output["partially_published"] = published > 0
            if not retryable:
                raise AirflowFailException(f"publish rejected: {message}")
            raise RuntimeError(f"publish failed for {len(failures)} target(s), will retry: {message}")
        return {"published": len(results)}
