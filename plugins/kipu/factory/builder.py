"""Build one DAG from one validated workflow: a task per step, branches, joins, and a finalize task where there are
branches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule

from kipu.config import env_number
from kipu.factory.docs import describe
from kipu.notify.notifier import KipuPostNotifier
from kipu.operators.approval import KipuApprovalOperator
from kipu.operators.condition import KipuConditionOperator
from kipu.operators.delay import KipuDelayOperator
from kipu.operators.filter import KipuFilterOperator
from kipu.operators.finalize import KipuFinalizeOperator
from kipu.operators.publish import KipuPublishOperator
from kipu.operators.rewrite import KipuRewriteOperator
from kipu.specs.items import ManualItem
from kipu.specs.steps import ApprovalStep, ConditionStep, PublishStep
from kipu.specs.workflow import WorkflowSpec
from kipu.store.workflows import WorkflowRecord

START = datetime(2024, 1, 1, tzinfo=UTC)
OPERATORS: dict[str, type] = {
    "filter": KipuFilterOperator,
    "condition": KipuConditionOperator,
    "ai_rewrite": KipuRewriteOperator,
    "delay": KipuDelayOperator,
    "approval": KipuApprovalOperator,
    "publish": KipuPublishOperator,
}
FINALIZE = "finalize"
# The Trigger form's check of a hand-given item: its field names (``specs.items.given_item`` validates it fully when
# the run starts, naming the field). Draft-07 rather than jsonschema's default 2020-12, and no schema per field:
# Airflow validates each Param's schema against its metaschema every time it serializes a task, and the per-field
# 2020-12 schema made serialization 10x slower (11 s for a 273-workflow shard against 1 s; bench/dagset.py).
PARAM_DRAFT = {"$schema": "http://json-schema.org/draft-07/schema#"}
ITEM_FIELDS: tuple[str, ...] = tuple(ManualItem.model_fields)


def _tags(spec: WorkflowSpec, record: WorkflowRecord) -> list[str]:
    platforms = {getattr(spec.trigger, "platform", None)}
    for step in spec.steps:
        if isinstance(step, PublishStep):
            platforms.update(t.platform for t in step.targets)
    team = f"team:{record.team_slug}" if record.team_slug else "team:none"
    paused = ["kipu:paused"] if spec.status == "paused" else []
    return ["kipu", team, *paused, *sorted(p for p in platforms if p)]


def retry_delay_seconds() -> float:
    """The first retry's delay (then doubled, up to 15 min): ``KIPU_TASK_RETRY_DELAY``, 20 s by default."""
    return env_number("KIPU_TASK_RETRY_DELAY", 20.0, minimum=0.0)


def max_active_runs() -> dict[str, int]:
    """How many of one workflow's items run at once (the rest wait queued, in order, so one workflow's burst never
    holds every worker slot): ``KIPU_MAX_ACTIVE_RUNS`` if set, else Airflow's ``max_active_runs_per_dag`` (16)."""
    runs = env_number("KIPU_MAX_ACTIVE_RUNS", 0, minimum=0)
    return {"max_active_runs": runs} if runs else {}


WEIGHT_RULES = ("upstream", "downstream", "absolute")


def weight_rule() -> str:
    """``KIPU_TASK_WEIGHT_RULE``, ``upstream`` by default: a later step outranks an earlier one, so a burst's items
    finish depth-first (Airflow's default, ``downstream``, runs step 1 of every active run before any step 2)."""
    import os

    rule = os.environ.get("KIPU_TASK_WEIGHT_RULE", "upstream").strip().lower()
    return rule if rule in WEIGHT_RULES else "upstream"


def build_dag(spec: WorkflowSpec, record: WorkflowRecord, dag_id: str | None = None) -> DAG:
    """The workflow's DAG, under ``record.dag_id`` (or ``dag_id``: the legacy id of runs started before namespaces)."""
    graph = spec.graph()
    dag = DAG(
        dag_id=dag_id or record.dag_id,
        description=(spec.description or spec.name)[:200],
        schedule=None,
        start_date=START,
        catchup=False,
        **max_active_runs(),
        tags=_tags(spec, record),
        doc_md=describe(spec, record.id),
        # Kipu's status gates the workflow: a paused one's DAG is paused too (kipu.factory.reparse keeps the two in
        # step after creation); an inactive (deleted) one has no DAG.
        is_paused_upon_creation=spec.status == "paused",
        default_args={
            "owner": record.owner or record.team_slug or "kipu",
            "retries": 3,
            "retry_delay": timedelta(seconds=retry_delay_seconds()),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=15),
            "weight_rule": weight_rule(),
        },
        params={
            "workflow_run_id": Param(
                None, type=["null", "string"], description="workflow_runs.id of the item", **PARAM_DRAFT
            ),
            "item": Param(
                {},
                type="object",
                description="The item, when workflow_run_id is absent: a caption and optional media "
                '(e.g. {"caption": "Hello", "idempotency_key": "launch-1"}); Kipu assigns its identity. '
                "Fields: " + ", ".join(ITEM_FIELDS),
                propertyNames={"enum": list(ITEM_FIELDS)},
                **PARAM_DRAFT,
            ),
        },
        render_template_as_native_obj=False,
    )
    common: dict[str, Any] = {
        "workflow_id": record.id,
        "team_id": record.team_id,
        "workflow_timezone": spec.timezone,
    }
    tasks: dict[str, Any] = {}
    # In a straight line (no condition), the task in which the item ends records the run's outcome: no finalize task,
    # one task execution less per item. Branches keep finalize, which waits for whichever path ran (all_done).
    folded = not any(isinstance(step, ConditionStep) for step in spec.steps) and all(
        len(downs) <= 1 for downs in graph.downstream.values()
    )
    with dag:
        for step in spec.steps:
            body = step.model_dump(mode="json", exclude={"id", "type", "name"}, exclude_none=True)
            kwargs: dict[str, Any] = {
                "task_id": step.id,
                "step_id": record.step_ids.get(step.id, ""),
                "step_config": body,
                "doc_md": f"{step.type} step `{step.id}`",  # type: ignore[attr-defined]
                **common,
            }
            if folded:
                kwargs["ends_run"] = True
                kwargs["last_step"] = not graph.downstream.get(step.id)
            if step.id != graph.root:
                # A join after a branch runs if any branch reached it and none failed; for one upstream
                # this is the same as all_success.
                kwargs["trigger_rule"] = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
            if isinstance(step, ConditionStep):
                # A branch that ends the item goes straight to finalize, which must never be skipped.
                kwargs["true_task"], kwargs["false_task"] = (t or FINALIZE for t in graph.branches[step.id])
                kwargs["retries"] = 0
            elif isinstance(step, ApprovalStep):
                kwargs["assigned_users"] = [
                    record.approvers.get(a, {"id": a, "name": a}) for a in step.config.approvers
                ]
                kwargs["subject"] = f"{spec.name}: approve this item?"  # the operator adds the item and its captions
                kwargs["retries"] = 0
            elif isinstance(step, PublishStep):
                # Airflow's callbacks tell the team each target's outcome (kipu.notify).
                kwargs["on_success_callback"] = [KipuPostNotifier()]
                kwargs["on_failure_callback"] = [KipuPostNotifier()]
            elif step.type in ("filter",):  # type: ignore[attr-defined]
                kwargs["retries"] = 0
            tasks[step.id] = OPERATORS[step.type](**kwargs)  # type: ignore[attr-defined]
        for key, downs in graph.downstream.items():
            for down in downs:
                tasks[key] >> tasks[down]
        if folded:
            return dag
        finalize = KipuFinalizeOperator(task_id=FINALIZE, workflow_id=record.id)
        for key in graph.order:
            ends_here = isinstance(spec.step(key), ConditionStep) and None in graph.branches[key]
            if not graph.downstream.get(key) or ends_here:
                tasks[key] >> finalize
    return dag
