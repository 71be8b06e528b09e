"""A workflow described in words, for the DAG's ``doc_md``."""

from __future__ import annotations

from kipu.specs.graph import StepGraph
from kipu.specs.steps import (
    AIRewriteStep,
    ApprovalStep,
    ConditionStep,
    DelayStep,
    FilterStep,
    PublishStep,
    StepBase,
)
from kipu.specs.triggers import ManualTrigger, PollTrigger, WebhookTrigger
from kipu.specs.workflow import WorkflowSpec


def _conditions(cfg: object) -> str:
    conds = getattr(cfg, "conditions", [])
    joiner = f" {getattr(cfg, 'operator', 'and')} "
    return joiner.join(f"{c.field} {c.operator.replace('_', ' ')} `{c.value}`" for c in conds)


def describe_step(step: StepBase, graph: StepGraph) -> str:
    if isinstance(step, FilterStep):
        return f"continue only if {_conditions(step.config)}"
    if isinstance(step, ConditionStep):
        t, f = graph.branches.get(step.id, (None, None))
        return f"if {_conditions(step.config)} go to `{t or 'end'}`, otherwise `{f or 'end'}`"
    if isinstance(step, AIRewriteStep):
        c = step.config
        return f"rewrite the caption for {c.target_platform} ({c.tone} tone" + (
            f", at most {c.max_length} characters)" if c.max_length else ")"
        )
    if isinstance(step, DelayStep):
        c = step.config
        if c.delay_until_time or c.delay_until_day:
            return "wait until " + " ".join(x for x in (c.delay_until_day, c.delay_until_time) if x)
        return f"wait {c.total_seconds:g} seconds"
    if isinstance(step, ApprovalStep):
        c = step.config
        fallback = "approve" if c.auto_approve_on_timeout else "skip the item"
        return f"ask {', '.join(c.approvers)} to approve; after {c.timeout_hours:g} h {fallback}"
    if isinstance(step, PublishStep):
        return "publish to " + ", ".join(t.platform for t in step.targets)
    return step.type  # type: ignore[attr-defined]


def describe(spec: WorkflowSpec, workflow_id: str) -> str:
    trig = spec.trigger
    if isinstance(trig, PollTrigger):
        when = f"polls {trig.platform} every {trig.poll_interval_minutes} min"
    elif isinstance(trig, WebhookTrigger):
        when = f"starts on {trig.platform} webhooks"
    else:
        assert isinstance(trig, ManualTrigger)
        when = "starts manually"
    graph = spec.graph()
    lines = [
        f"### {spec.name}",
        "",
        spec.description or "",
        "",
        f"Kipu workflow `{workflow_id}` ({spec.status}); {when}. Time zone for day and time rules: "
        f"`{spec.timezone}`. One run processes one content item (`conf.item`, `conf.workflow_run_id`).",
        "",
    ]
    for i, step in enumerate(spec.steps, 1):
        lines.append(f"{i}. **{step.id}** ({step.type}): {describe_step(step, graph)}")  # type: ignore[attr-defined]
    return "\n".join(lines)
