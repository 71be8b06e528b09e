"""The publish step: one ``posts`` intent per target, written before the call, so a retry never re-posts. Past the
plan's monthly post limit the item is held (``held_by_plan``), deferred on the triggerer, never dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kipu.billing.plans import billing_enabled, effective_plan, limits_for, tell_limit, used
from kipu.config import env_number
from kipu.hooks.base import PlatformError
from kipu.operators.base import KipuStepOperator, RunState
from kipu.platforms import target_hook
from kipu.publishing import LimitExceeded, caption_for, deliver, record_outcome, request_for
from kipu.specs.steps import PublishStep, PublishTarget
from kipu.store.accounts import resolve_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Post, Team, WorkflowRun
from kipu.store.posts import claim_intent
from kipu.store.runs import step_run


def hold_recheck() -> timedelta:
    """How often a held item asks again whether the plan lets it through: ``KIPU_PLAN_HOLD_RECHECK_SECONDS``, 600."""
    return timedelta(seconds=env_number("KIPU_PLAN_HOLD_RECHECK_SECONDS", 600.0, minimum=1.0))


class KipuPublishOperator(KipuStepOperator):
    """Publishes to each target once; a retry touches only targets not yet published."""

    ui_color = "#d6f5d6"

    def _claim(
        self, session: Session, state: RunState, step: PublishStep, target: PublishTarget
    ) -> tuple[Post, Connection]:
        caption = caption_for(step.config, target.platform, state.item, state.captions)
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
            media_urls=[m.url for m in state.item.media],
            metadata={"source_post_id": state.item.platform_post_id, "source_url": state.item.url},
        )
        return post, conn

    def _admitted(self, state: RunState, step: PublishStep) -> bool:
        """Whether the plan's monthly post limit lets this item's new posts through. Checked under a lock on the
        team row, and the intents are claimed in the same transaction, so two items cannot both take the last one."""
        if not billing_enabled() or state.team_id is None:
            return True
        now = datetime.now(UTC)
        with session_scope() as session:
            team = session.get(Team, state.team_id, with_for_update=True)
            limit = limits_for(team, now).posts_per_month if team is not None else None
            held = state.output.get("held_by_plan")
            claimed = session.scalar(
                select(func.count()).where(
                    Post.workflow_run_id == state.run_id, Post.step_id == uuid.UUID(self.step_id)
                )
            )
            new = len(step.targets) - int(claimed or 0)
            have = used(session, state.team_id, "posts_per_month", now)
            plan = effective_plan(team, now) if team is not None else "free"
            fits = limit is None or new <= 0 or have + new <= limit
            # A team that waits for an upgrade keeps its held items held in the next month too, until the plan changes.
            waits = bool(
                held
                and team is not None
                and team.held_release == "upgrade"
                and plan == held["plan"]
                and held["month"] != f"{now:%Y-%m}"
            )
            run = session.get(WorkflowRun, state.run_id)
            if fits and not waits:
                for target in step.targets:
                    self._claim(session, state, step, target)
                if held:
                    # Step outputs merge on write: the hold is cleared, and kept as history.
                    state.output["held_by_plan"], state.output["was_held_by_plan"] = None, held
                    state.output["released_from_hold_at"] = now.isoformat()
                    if run is not None:
                        run.status = "running"
                return True
            assert team is not None and limit is not None
            state.output["held_by_plan"] = held or {
                "since": now.isoformat(),
                "month": f"{now:%Y-%m}",
                "plan": plan,
                "limit": limit,
                "used": have,
                "needs": new,
            }
            if run is not None:
                run.status = "held_by_plan"
            row = step_run(session, state.run_id, uuid.UUID(self.step_id))
            if row is not None:
                row.status = "held_by_plan"
            tell_limit(session, team, "posts_per_month", limit, have, now)
        self.log.warning(
            "Held by the %s plan: %d post(s) this month of %d allowed, this item needs %d more; asking again in %s",
            plan,
            have,
            limit,
            new,
            hold_recheck(),
        )
        return False

    def run_step(self, context: Context, state: RunState) -> Any:
        step = PublishStep.model_validate({"id": self.task_id, "type": "publish", **self.step_config})
        if not self._admitted(state, step):
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(trigger=TimeDeltaTrigger(hold_recheck()), method_name="resume_held")
        results: dict[str, dict[str, Any]] = dict(state.output.get("targets") or {})
        failures: list[tuple[str, PlatformError | Exception]] = []
        for target in step.targets:
            with session_scope() as session:
                post, conn = self._claim(session, state, step, target)
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

    def resume_held(self, context: Context, event: Any = None) -> Any:
        """Back from a hold's wait: the whole step again, from the plan check."""
        return self.execute(context)
