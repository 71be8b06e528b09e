"""Workflow specs: every step type's fields, located error messages and graph validation."""

from __future__ import annotations

import pytest
from kipu.specs.steps import ApprovalStep, DelayStep, PublishStep
from kipu.specs.triggers import PollTrigger
from kipu.specs.workflow import WorkflowSpecError, parse_workflow

from tests.helpers import demo_doc, step


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(WorkflowSpecError) as exc:
        parse_workflow(doc)
    return exc.value.errors


def test_demo_workflow_parses_with_every_step_type() -> None:
    spec = parse_workflow(demo_doc())
    assert {s.type for s in spec.steps} == {
        "filter",
        "ai_rewrite",
        "condition",
        "delay",
        "approval",
        "publish",
    }
    assert isinstance(spec.trigger, PollTrigger)
    assert spec.trigger.poll_interval_minutes == 5
    assert spec.trigger.backfill == "last_n" and spec.trigger.backfill_count == 10  # the demo replays its feed
    assert PollTrigger(connection_id="feed:x", platform="feed").backfill == "none"  # by default, it starts from now
    approval = spec.step("team_review")
    assert isinstance(approval, ApprovalStep) and approval.config.auto_approve_on_timeout is True
    publish = spec.step("publish_outbox")
    assert isinstance(publish, PublishStep) and publish.config.use_original_caption is False


def test_error_names_step_and_field() -> None:
    doc = demo_doc()
    doc["steps"][3] = {"id": "wait_morning", "type": "delay", "config": {"delay_until_time": "25:00"}}
    doc["steps"][2]["config"]["if_true_steps"] = ["wait_morning", "team_review"]
    assert errors_of(doc) == [
        "steps[3] (delay 'wait_morning').config.delay_until_time: '25:00' is not a valid HH:MM time"
    ]


def test_every_error_is_reported_at_once() -> None:
    doc = demo_doc(timezone="Mars/Olympus")
    doc["trigger"]["poll_interval_minutes"] = 0
    step(doc, "cool_down")["config"] = {"duration_seconds": -5}
    step(doc, "team_review")["config"]["approvers"] = []
    step(doc, "publish_outbox")["platform"] = "myspace"
    step(doc, "rewrite_for_bluesky")["config"]["tone"] = "angry"
    step(doc, "skip_ads_and_text")["colour"] = "red"
    errs = errors_of(doc)
    assert "timezone: 'Mars/Olympus' is not a valid IANA time zone name (e.g. 'Europe/Berlin')" in errs
    assert any(e.startswith("trigger.poll_interval_minutes:") and "greater than or equal to 1" in e for e in errs)
    assert "steps[3] (delay 'cool_down').config.duration_seconds: -5.0 is negative; a delay must be >= 0" in errs
    assert any(e.startswith("steps[4] (approval 'team_review').config.approvers:") for e in errs)
    assert any(e.startswith("steps[6] (publish 'publish_outbox').platform: 'myspace' is not allowed") for e in errs)
    assert any(e.startswith("steps[1] (ai_rewrite 'rewrite_for_bluesky').config.tone: 'angry'") for e in errs)
    assert "steps[0] (filter 'skip_ads_and_text').colour: unknown field (check the spelling)" in errs


@pytest.mark.parametrize("minutes", [1, 5, 15, 1440])
def test_poll_interval_accepts_1_to_1440(minutes: int) -> None:
    doc = demo_doc()
    doc["trigger"]["poll_interval_minutes"] = minutes
    assert parse_workflow(doc).trigger.poll_interval_minutes == minutes


def test_poll_interval_over_a_day_is_rejected() -> None:
    doc = demo_doc()
    doc["trigger"]["poll_interval_minutes"] = 1441
    assert any("less than or equal to 1440" in e for e in errors_of(doc))


def test_condition_branch_to_missing_step() -> None:
    doc = demo_doc()
    step(doc, "long_or_short")["config"]["if_false_steps"] = ["nowhere"]
    assert errors_of(doc) == [
        "steps[2] (condition 'long_or_short').config.if_false_steps[0]: 'nowhere' is not a step of this workflow"
    ]


def test_condition_branch_backwards_is_a_cycle() -> None:
    doc = demo_doc()
    step(doc, "long_or_short")["config"]["if_false_steps"] = ["skip_ads_and_text"]
    (err,) = errors_of(doc)
    assert "if_false_steps[0]: 'skip_ads_and_text' is steps[0]" in err and "cycle" in err


def test_step_in_two_branches_is_rejected() -> None:
    doc = demo_doc()
    step(doc, "long_or_short")["config"]["if_false_steps"] = ["quick_pause", "team_review"]
    (err,) = errors_of(doc)
    assert "'team_review' already belongs to a branch of condition 'long_or_short'" in err


def test_duplicate_step_ids() -> None:
    doc = demo_doc()
    doc["steps"].append(dict(step(doc, "publish_outbox")))
    assert any("'publish_outbox' is already used by steps[6]" in e for e in errors_of(doc))


def test_filter_at_the_end_gates_nothing() -> None:
    doc = demo_doc()
    doc["steps"].append(
        {
            "id": "late_filter",
            "type": "filter",
            "config": {"conditions": [{"field": "type", "operator": "eq", "value": "video"}]},
        }
    )
    assert errors_of(doc) == ["steps[7] (filter 'late_filter'): a filter step must be followed by a step it gates"]


def test_filter_condition_operators_must_fit_fields() -> None:
    doc = demo_doc()
    step(doc, "skip_ads_and_text")["config"]["conditions"].append({"field": "caption", "operator": "gt", "value": 3})
    assert any("only applies to field 'duration'" in e for e in errors_of(doc))


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"duration_minutes": 0}, 0),
        ({"duration_minutes": 1.5, "duration_seconds": 3}, 93),
    ],
)
def test_delay_durations(config: dict, expected: float) -> None:
    assert DelayStep.model_validate({"id": "d", "config": config}).config.total_seconds == expected


def test_delay_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="either a duration or delay_until"):
        DelayStep.model_validate({"id": "d", "config": {"duration_minutes": 1, "delay_until_time": "09:00"}})
    with pytest.raises(ValueError, match="give duration_minutes"):
        DelayStep.model_validate({"id": "d", "config": {}})


def test_twitter_is_an_alias_of_x() -> None:
    doc = demo_doc()
    step(doc, "rewrite_for_bluesky")["config"]["target_platform"] = "twitter"
    assert parse_workflow(doc).step("rewrite_for_bluesky").config.target_platform == "x"


def test_branches_and_joins() -> None:
    graph = parse_workflow(demo_doc()).graph()
    assert graph.branches["long_or_short"] == ("cool_down", "quick_pause")
    assert graph.downstream["cool_down"] == ["team_review"]
    assert graph.upstream["publish_outbox"] == ["team_review", "quick_pause"]
    assert graph.leaves() == ["publish_outbox"]


def test_empty_branch_goes_straight_to_the_join() -> None:
    doc = demo_doc()
    step(doc, "long_or_short")["config"]["if_false_steps"] = []
    doc["steps"] = [s for s in doc["steps"] if s["id"] != "quick_pause"]
    graph = parse_workflow(doc).graph()
    assert graph.branches["long_or_short"] == ("cool_down", "publish_outbox")


def test_document_round_trip_is_stable() -> None:
    doc = demo_doc()
    once = parse_workflow(doc).to_document()
    assert parse_workflow(once).to_document() == once
    assert once["steps"][4]["config"] == {
        "approvers": ["admin"],
        "timeout_hours": 0.05,
        "auto_approve_on_timeout": True,
    }
