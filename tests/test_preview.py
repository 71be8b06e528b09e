"""Dry runs (``kipu workflow test``, ``POST /workflows/{id}/preview``): every step type's outcome, delays across DST,
each target's final caption in its platform's counting, and nothing published or stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kipu.preview import dry_run
from kipu.specs.items import given_item
from kipu.specs.workflow import parse_workflow
from sqlalchemy import func, select

from tests.api_helpers import token_for
from tests.fakes.openai_server import Answer, OpenAIServer
from tests.helpers import demo_doc

NY = "America/New_York"


def doc(steps: list[dict[str, Any]], tz: str = "UTC", **extra: Any) -> dict[str, Any]:
    return {
        "name": "Preview me",
        "team": "demo",
        "timezone": tz,
        "trigger": {"type": "manual", **extra},
        "steps": steps,
    }


PUBLISH_X = {"id": "to_x", "type": "publish", "connection_id": "x:1", "platform": "x"}


def run(document: dict[str, Any], item: dict[str, Any], at: datetime | None = None, **kw: Any) -> Any:
    return dry_run(parse_workflow(document), given_item(item, "manual:t"), now=at, **kw)


def outcomes(preview: Any) -> list[tuple[str, str]]:
    return [(s.step, s.outcome) for s in preview.steps]


def test_filter_passes_or_ends_the_item_with_the_reason() -> None:
    steps = [
        {
            "id": "no_ads",
            "type": "filter",
            "config": {"conditions": [{"field": "hashtags", "operator": "not_contains", "value": "ad"}]},
        },
        PUBLISH_X,
    ]
    kept = run(doc(steps), {"caption": "New loaf #bread"})
    assert outcomes(kept) == [("no_ads", "passed"), ("to_x", "publishes")]
    dropped = run(doc(steps), {"caption": "Buy now #ad"})
    assert outcomes(dropped) == [("no_ads", "filtered"), ("to_x", "not_reached")]
    assert dropped.outcome == "filtered out by 'no_ads': hashtag #ad is present" and dropped.targets == []


def test_trigger_filters_skip_at_entry() -> None:
    preview = run(doc([PUBLISH_X], filters={"keywords_exclude": ["spoiler"]}), {"caption": "Big spoiler inside"})
    assert preview.outcome == "skipped at entry by the trigger's filters: keyword 'spoiler' is excluded"
    assert preview.steps == [] and preview.targets == []


@pytest.mark.parametrize("duration,branch,reached", [(90, "if_true", "long_pause"), (10, "if_false", "short_pause")])
def test_condition_takes_one_branch(duration: int, branch: str, reached: str) -> None:
    steps = [
        {
            "id": "is_long",
            "type": "condition",
            "config": {
                "conditions": [{"field": "duration", "operator": "gt", "value": 60}],
                "if_true_steps": ["long_pause"],
                "if_false_steps": ["short_pause"],
            },
        },
        {"id": "long_pause", "type": "delay", "config": {"duration_minutes": 30}},
        {"id": "short_pause", "type": "delay", "config": {"duration_minutes": 1}},
        PUBLISH_X,
    ]
    preview = run(doc(steps), {"caption": "clip", "duration_seconds": duration})
    got = dict(outcomes(preview))
    other = {"long_pause", "short_pause"} - {reached}
    assert got["is_long"] == branch and got[reached] == "waits" and got[other.pop()] == "not_reached"
    assert got["to_x"] == "publishes"
    assert preview.steps[0].data["next_step"] == reached


def test_a_branch_that_ends_the_item() -> None:
    steps = [
        {
            "id": "only_video",
            "type": "condition",
            "config": {
                "conditions": [{"field": "type", "operator": "eq", "value": "video"}],
                "if_true_steps": ["to_x"],
            },
        },
        PUBLISH_X,
    ]
    # The false branch of a condition with no if_false_steps continues after the branch: here, nothing.
    preview = run(doc(steps), {"caption": "words only"})
    assert outcomes(preview) == [("only_video", "if_false"), ("to_x", "not_reached")]
    assert preview.outcome == "ended by condition 'only_video' (if_false)"


@pytest.mark.parametrize(
    "at,until_time,expected_utc,expected_local",
    [
        # New York springs forward at 02:00 on 2026-03-08: 02:30 does not exist and moves on to 03:30 EDT.
        ("2026-03-08T05:00:00Z", "02:30", "2026-03-08T07:30:00+00:00", "2026-03-08T03:30:00-04:00"),
        # It falls back at 02:00 on 2026-11-01: 01:30 happens twice, and the first (EDT) is meant.
        ("2026-11-01T04:00:00Z", "01:30", "2026-11-01T05:30:00+00:00", "2026-11-01T01:30:00-04:00"),
        # After the change the wall clock is EST (UTC-5).
        ("2026-11-01T12:00:00Z", "09:00", "2026-11-01T14:00:00+00:00", "2026-11-01T09:00:00-05:00"),
    ],
)
def test_delays_end_in_the_workflow_time_zone_across_dst(
    at: str, until_time: str, expected_utc: str, expected_local: str
) -> None:
    steps = [{"id": "morning", "type": "delay", "config": {"delay_until_time": until_time}}, PUBLISH_X]
    preview = run(doc(steps, tz=NY), {"caption": "hi"}, at=datetime.fromisoformat(at.replace("Z", "+00:00")))
    delay = preview.steps[0]
    assert delay.outcome == "waits"
    assert delay.data == {"until_utc": expected_utc, "until_local": expected_local}
    assert "(America/New_York)" in delay.detail


def test_a_second_delay_counts_from_the_end_of_the_first() -> None:
    steps = [
        {"id": "till_sunday", "type": "delay", "config": {"delay_until_day": "sunday", "delay_until_time": "10:00"}},
        {"id": "an_hour", "type": "delay", "config": {"duration_minutes": 60}},
        PUBLISH_X,
    ]
    preview = run(doc(steps, tz="Europe/Berlin"), {"caption": "hi"}, at=datetime(2026, 3, 27, 12, tzinfo=UTC))
    # Sunday 2026-03-29 is the day Berlin moves to CEST (UTC+2): 10:00 local is 08:00 UTC.
    assert preview.steps[0].data["until_utc"] == "2026-03-29T08:00:00+00:00"
    assert preview.steps[1].data["until_utc"] == "2026-03-29T09:00:00+00:00"


def test_approval_names_who_is_asked_and_what_a_timeout_does() -> None:
    steps = [
        {"id": "review", "type": "approval", "config": {"approvers": ["ana@acme.test", "bo"], "timeout_hours": 2}},
        PUBLISH_X,
    ]
    preview = run(doc(steps), {"caption": "hi"}, approvers={"ana@acme.test": "Ana <ana@acme.test>"})
    review = preview.steps[0]
    assert review.outcome == "asks" and review.data == {"approvers": ["Ana <ana@acme.test>", "bo"]}
    assert "with no answer in 2 h the item is dropped" in review.detail


def test_each_target_gets_its_final_caption_measured_in_its_own_counting() -> None:
    steps = [
        {
            "id": "for_bluesky",
            "type": "ai_rewrite",
            "config": {"target_platform": "bluesky", "include_hashtags": False},
        },
        {
            "id": "out",
            "type": "publish",
            "connection_id": "bsky:1",
            "platform": "bluesky",
            "additional_targets": [{"connection_id": "x:1", "platform": "x"}],
        },
    ]
    # X counts an emoji as 2 and any URL as 23; Bluesky counts graphemes.
    caption = "Fresh bread 🍞 " * 12 + "https://example.com/" + "a" * 80
    preview = run(doc(steps), {"caption": caption})
    bsky, x = preview.targets
    assert preview.steps[0].outcome == "rewritten" and preview.steps[0].data["engine"] == "offline"
    assert bsky.platform == "bluesky" and bsky.unit == "graphemes" and bsky.limit == 300
    assert bsky.length <= 300 and bsky.problems == []
    # X takes the latest rewrite (Bluesky's) and measures it its own way, with the limit.
    assert x.caption == bsky.caption and x.unit == "weighted characters" and x.limit == 280
    from kipu.captions.counting import x_weighted_length

    assert x.length == x_weighted_length(x.caption)


def test_a_caption_over_the_limit_is_reported_not_cut() -> None:
    steps = [{**PUBLISH_X, "config": {"use_original_caption": True}}]
    preview = run(doc(steps), {"caption": "🍞" * 150})
    (x,) = preview.targets
    assert x.length == 300 and x.caption == "🍞" * 150
    assert x.problems == ["x caption is 300 weighted characters, over the limit of 280"]
    assert preview.outcome == "would publish to 1 target(s), 1 over a limit"


def test_ai_steps_call_the_model_only_when_allowed(demo_team: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope
    from kipu.store.models import AIUsage

    steps = [{"id": "for_x", "type": "ai_rewrite", "config": {"target_platform": "x"}}, PUBLISH_X]
    with session_scope() as s:
        team_id = find_team(s, "demo").id
    with OpenAIServer() as fake:
        conn = {"conn_type": "kipu_openai", "password": "sk-test-PREVIEW-KEY", "host": fake.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_OPENAI", json.dumps(conn))
        offline = run(doc(steps), {"caption": "Sunrise bake"}, team_id=team_id)
        assert offline.steps[0].data["engine"] == "offline" and fake.requests == []
        fake.then(Answer(caption="A calm sunrise loaf", hashtags=["bread"]))
        online = run(doc(steps), {"caption": "Sunrise bake"}, team_id=team_id, use_model=True)
    assert online.steps[0].data["engine"] == "openai" and len(fake.requests) == 1
    assert online.targets[0].caption == "A calm sunrise loaf\n\n#bread"
    with session_scope() as s:  # the model call counts against the team's budget
        assert s.scalar(select(func.count()).select_from(AIUsage).where(AIUsage.team_id == team_id)) == 1


# -- through the API and the CLI -------------------------------------------------------------------------------------
@pytest.fixture
def kipu_api(pg_demo_team: dict) -> Iterator[TestClient]:
    from kipu.api.app import create_app

    with TestClient(create_app()) as client:
        yield client


def _counts() -> tuple[int, int]:
    from kipu.store.engine import session_scope
    from kipu.store.models import Post, WorkflowRun

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(WorkflowRun)), s.scalar(select(func.count()).select_from(Post))


def test_preview_of_a_stored_workflow_stores_and_publishes_nothing(kipu_api: TestClient, pg_demo_team: dict) -> None:
    member, outsider = token_for("editor@demo.test"), token_for("boss@other.test")
    created = kipu_api.post("/api/workflows", json=demo_doc(), headers=member)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    before = _counts()
    item = {"caption": "Long cut #bread", "media": [{"url": "https://cdn.example/v.mp4"}], "duration_seconds": 90}
    out = kipu_api.post(f"/api/workflows/{wid}/preview", json={"item": item}, headers=token_for("viewer@demo.test"))
    assert out.status_code == 200, out.text
    body = out.json()
    steps = {s["step"]: s["outcome"] for s in body["steps"]}
    assert steps == {
        "skip_ads_and_text": "passed",
        "rewrite_for_bluesky": "rewritten",
        "long_or_short": "if_true",
        "cool_down": "waits",
        "team_review": "asks",
        "quick_pause": "not_reached",
        "publish_outbox": "publishes",
    }
    review = next(s for s in body["steps"] if s["step"] == "team_review")
    assert review["data"]["approvers"] == ["Owner <owner@demo.test>"]
    assert body["targets"][0]["platform"] == "outbox" and body["item"]["content_type"] == "video"
    assert _counts() == before  # nothing stored, nothing published
    assert not pg_demo_team["outbox"].exists() or not any(pg_demo_team["outbox"].iterdir())
    # Another team's workflow is missing; a bad item names its field.
    assert kipu_api.post(f"/api/workflows/{wid}/preview", json={"item": item}, headers=outsider).status_code == 404
    bad = kipu_api.post(f"/api/workflows/{wid}/preview", json={"item": {"captoin": "x"}}, headers=member)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "item", "captoin"]


def test_preview_of_an_unsaved_document_checks_it_against_the_store(kipu_api: TestClient) -> None:
    member = token_for("editor@demo.test")
    body = {
        "document": demo_doc(slug="draft"),
        "item": {"caption": "Short #bread", "media": [{"url": "https://c.example/p.jpg"}]},
    }
    out = kipu_api.post("/api/workflows/preview", json=body, headers=member)
    assert out.status_code == 200, out.text
    assert {s["step"]: s["outcome"] for s in out.json()["steps"]}["long_or_short"] == "if_false"
    wrong = demo_doc()
    wrong["steps"][-1]["connection_id"] = "outbox:nope"
    refused = kipu_api.post("/api/workflows/preview", json={**body, "document": wrong}, headers=member)
    assert refused.status_code == 422
    assert "'outbox:nope' is not a connection of team 'demo'" in refused.text
    with_other_team = kipu_api.post(
        "/api/workflows/preview", json={**body, "document": demo_doc(team="other")}, headers=member
    )
    assert with_other_team.status_code == 404


def test_kipu_workflow_test_prints_each_step_and_caption(
    pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kipu.cli import main

    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(demo_doc()))
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"caption": "Crumb shot #bread", "media": [{"url": "https://c.example/p.jpg"}]}))
    before = _counts()
    assert main(["workflow", "test", str(wf), "--item", str(item), "--at", "2026-03-29T00:30:00Z"]) == 0
    out = capsys.readouterr().out
    assert "nothing was published or stored" in out
    assert "quick_pause" in out and "waits until Sun 2026-03-29 01:30:01 CET (Europe/Berlin)" in out
    assert "-> outbox (outbox:demo):" in out and "| Crumb shot" in out
    assert "Outcome: would publish to 1 target(s)" in out
    assert _counts() == before
    assert main(["workflow", "test", str(wf), "--caption", "x", "--offline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"].startswith("filtered out by 'skip_ads_and_text'")
    assert main(["workflow", "test", str(wf), "--caption", "x", "--at", "2026-03-29T00:30:00"]) == 1
    assert "at: Input should have timezone info" in capsys.readouterr().err
