"""kipu_poll starts at most 500 pending runs a cycle, the teams in turn: one team's backlog (200 workflows watching
a feed of 200 new entries is 40,000 runs) never delays another team's new item by cycles, as oldest-first did."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from kipu.ingest import enter
from kipu.poll.start import start_pending
from kipu.specs.items import ContentItem
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from kipu.store.workflows import save_workflow

from tests.helpers import demo_doc


def _workflow(team: str, slug: str) -> uuid.UUID:
    with session_scope() as s:
        doc = demo_doc(slug=slug, name=slug, team=team)
        doc["trigger"] = {"type": "manual"}
        if team == "other":
            doc["steps"] = [
                {"id": "publish", "type": "publish", "connection_id": "outbox:theirs", "platform": "outbox"}
            ]
        return save_workflow(s, doc).id


def test_another_teams_backlog_does_not_delay_a_new_item_by_cycles(pg_demo_team: dict) -> None:
    hostile, victim = _workflow("demo", "flood"), _workflow("other", "mine")
    with session_scope() as s:  # scaled down: 600 pending runs stand for a cycle's 40,000
        wf = s.get(Workflow, hostile)
        enter(s, wf, [ContentItem(platform="feed", platform_post_id=f"p{i}", caption="x") for i in range(600)], "poll")
    with session_scope() as s:
        (mine,) = enter(
            s, s.get(Workflow, victim), [ContentItem(platform="feed", platform_post_id="v", caption="hi")], "poll"
        )
    started: list[str] = []
    start_pending(lambda dag_id, run_id, conf: started.append(conf["workflow_run_id"]) or True, now=datetime.now(UTC))
    assert str(mine.workflow_run_id) in started, (
        f"kipu_poll started {len(started)} runs of one team this cycle and none of the other team's"
    )
