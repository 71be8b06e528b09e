"""A dry run of one item through a workflow: each step's outcome and each target's final caption, measured in its
platform's own counting. It uses the steps' own rules (filters, branches, delay targets, rewrites, the publish
request builder) and writes nothing; AI steps use the offline rewriter unless the caller allows model calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from kipu.filters import check_all, trigger_filter_reason
from kipu.specs.items import ContentItem
from kipu.specs.steps import AIRewriteStep, ApprovalStep, ConditionStep, DelayStep, FilterStep, PublishStep
from kipu.specs.workflow import WorkflowSpec


class StepPreview(BaseModel):
    step: str
    type: str
    outcome: str  # passed | filtered | if_true | if_false | rewritten | waits | asks | publishes | not_reached
    detail: str
    data: dict[str, Any] = {}


class TargetPreview(BaseModel):
    platform: str
    connection_id: str
    caption: str
    length: int
    unit: str
    limit: int
    problems: list[str]
    title: str | None = None
    media: list[str] = []


class Preview(BaseModel):
    """What the workflow would do with the item; nothing was published or stored."""

    workflow: str
    timezone: str
    item: ContentItem
    outcome: str
    steps: list[StepPreview]
    targets: list[TargetPreview]


def dry_run(
    spec: WorkflowSpec,
    item: ContentItem,
    *,
    now: datetime | None = None,
    approvers: dict[str, str] | None = None,
    team_id: uuid.UUID | None = None,
    use_model: bool = False,
) -> Preview:
    """The item through ``spec`` from ``now`` (aware; default: the current time). ``approvers`` names members for
    display; ``use_model`` lets ai_rewrite steps call the configured model (counted against the team's budget)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    steps: list[StepPreview] = []
    targets: list[TargetPreview] = []
    reason = trigger_filter_reason(spec.trigger.filters, item)
    if reason is not None:
        outcome = f"skipped at entry by the trigger's filters: {reason}"
        return Preview(workflow=spec.name, timezone=spec.timezone, item=item, outcome=outcome, steps=[], targets=[])
    graph = spec.graph()
    captions: dict[str, str] = {}
    outcome = "finished without publishing"
    current = graph.root
    reached: set[str] = set()
    while current is not None:
        step = spec.step(current)
        reached.add(current)
        nxt = (graph.downstream.get(current) or [None])[0]
        if isinstance(step, FilterStep):
            passed, reasons = check_all(step.config, item)
            steps.append(
                StepPreview(
                    step=step.id, type="filter", outcome="passed" if passed else "filtered", detail="; ".join(reasons)
                )
            )
            if not passed:
                outcome = f"filtered out by '{step.id}': " + "; ".join(reasons)
                nxt = None
        elif isinstance(step, ConditionStep):
            result, reasons = check_all(step.config, item)
            nxt = graph.branches[step.id][0 if result else 1]
            side = "if_true" if result else "if_false"
            where = f"continues at '{nxt}'" if nxt else "the item ends here"
            steps.append(
                StepPreview(
                    step=step.id,
                    type="condition",
                    outcome=side,
                    detail=f"{'; '.join(reasons)}: {side}, {where}",
                    data={"next_step": nxt},
                )
            )
            if nxt is None:
                outcome = f"ended by condition '{step.id}' ({side})"
        elif isinstance(step, AIRewriteStep):
            steps.append(_rewrite(step, item, captions, team_id, use_model))
        elif isinstance(step, DelayStep):
            from kipu.schedule import delay_target

            target = delay_target(step.config, spec.timezone, now)
            local = target.astimezone(ZoneInfo(spec.timezone))
            detail = f"waits until {local:%a %Y-%m-%d %H:%M:%S %Z} ({spec.timezone}), {target:%Y-%m-%d %H:%M:%S} UTC"
            steps.append(
                StepPreview(
                    step=step.id,
                    type="delay",
                    outcome="waits",
                    detail=detail,
                    data={"until_utc": target.isoformat(), "until_local": local.isoformat()},
                )
            )
            now = max(now, target)  # a later delay starts when this one ends
        elif isinstance(step, ApprovalStep):
            steps.append(_approval(step, approvers or {}))
        elif isinstance(step, PublishStep):
            found = _publish(step, item, captions)
            targets += found
            names = ", ".join(t.platform for t in found)
            blocked = [f"{t.platform}: {'; '.join(t.problems)}" for t in found if t.problems]
            steps.append(
                StepPreview(
                    step=step.id,
                    type="publish",
                    outcome="publishes",
                    detail=f"would publish to {names}" + (f"; refused: {blocked}" if blocked else ""),
                )
            )
            outcome = f"would publish to {len(targets)} target(s)" + (
                f", {sum(1 for t in targets if t.problems)} over a limit" if any(t.problems for t in targets) else ""
            )
        current = nxt
    for key in graph.order:
        if key not in reached:
            step = spec.step(key)
            steps.append(StepPreview(step=key, type=step.type, outcome="not_reached", detail="not reached"))  # type: ignore[attr-defined]
    position = {key: i for i, key in enumerate(graph.order)}
    steps.sort(key=lambda s: position[s.step])
    return Preview(workflow=spec.name, timezone=spec.timezone, item=item, outcome=outcome, steps=steps, targets=targets)


def _rewrite(
    step: AIRewriteStep, item: ContentItem, captions: dict[str, str], team_id: uuid.UUID | None, use_model: bool
) -> StepPreview:
    from kipu.ai.service import rewrite_step
    from kipu.captions.platforms import rules_for

    out = rewrite_step(step.config, item, captions, team_id=team_id, use_model=use_model)
    captions[step.config.target_platform] = out["caption"]
    rules = rules_for(step.config.target_platform)
    detail = (
        f"{step.config.target_platform} caption by the {out['engine']} rewriter, "
        f"{rules.measure(out['caption'])} {rules.unit}"
        + (f" (fallback: {out['fallback']})" if out.get("fallback") else "")
    )
    return StepPreview(step=step.id, type="ai_rewrite", outcome="rewritten", detail=detail, data=out)


def _approval(step: ApprovalStep, approvers: dict[str, str]) -> StepPreview:
    who = [approvers.get(a, a) for a in step.config.approvers]
    then = "approved" if step.config.auto_approve_on_timeout else "dropped"
    detail = (
        f"asks {', '.join(who)}; with no answer in {step.config.timeout_hours:g} h the item is {then} "
        "(the dry run goes on as if approved)"
    )
    return StepPreview(step=step.id, type="approval", outcome="asks", detail=detail, data={"approvers": who})


def _publish(step: PublishStep, item: ContentItem, captions: dict[str, str]) -> list[TargetPreview]:
    from kipu.captions.platforms import rules_for
    from kipu.platforms.options import problems_and_options
    from kipu.publishing import build_request, caption_for

    out = []
    for target in step.targets:
        caption = caption_for(step.config, target.platform, item, captions)
        request = build_request(
            key="dry-run", content_type=item.content_type, caption=caption, config=step.config, item=item
        )
        rules = rules_for(target.platform)
        limit = rules.max_length
        problems = rules.violations(request.caption) + problems_and_options(target.platform, request.options)[0]
        out.append(
            TargetPreview(
                platform=target.platform,
                connection_id=target.connection_id,
                caption=request.caption,
                length=rules.measure(request.caption),
                unit=rules.unit,
                limit=limit,
                problems=problems,
                title=request.title,
                media=[m.url for m in request.media],
            )
        )
    return out
