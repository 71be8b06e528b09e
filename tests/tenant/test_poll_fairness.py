"""One team's many failing or hanging sources never delay another team's poll: a cycle takes the teams in turn and
no team holds more than half of its slots (a failing source never advances ``last_checked_at``, so it sorted as
most overdue and took the slots first, cycle after cycle)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kipu.hooks.http import Limits
from kipu.poll.due import due_sources
from kipu.poll.engine import run_cycle
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection, PollCursor
from kipu.store.workflows import save_workflow
from sqlalchemy import select, update

from tests.fakes.platform_server import PlatformServer
from tests.helpers import demo_doc


@pytest.fixture
def host() -> Iterator[PlatformServer]:
    with PlatformServer() as server:
        yield server


def watch(host: PlatformServer, team: str, name: str) -> str:
    with session_scope() as s:
        upsert_connection(s, find_team(s, team), "feed", name, metadata={"url": host.feed_url(name)})
        doc = demo_doc(slug=f"watch_{name}", name=f"Watch {name}", team=team)
        doc["trigger"] = {
            "type": "poll",
            "connection_id": f"feed:{name}",
            "platform": "feed",
            "poll_interval_minutes": 1,
        }
        if team == "other":  # a minimal workflow of the other team: it publishes to its own outbox
            doc["steps"] = [st for st in doc["steps"] if st.get("connection_id") == "outbox:demo"]
            doc["steps"][0]["connection_id"] = "outbox:theirs"
            doc["steps"][0].pop("depends_on", None)
        return str(save_workflow(s, doc).id)


def shift(s, by: timedelta) -> None:  # type: ignore[no-untyped-def]
    for cur in s.scalars(select(PollCursor)):
        cur.last_checked_at = cur.last_checked_at - by
    s.flush()


def cycle(limits: Limits, timeout: float):  # type: ignore[no-untyped-def]
    with session_scope() as s:
        sources = due_sources(s, datetime.now(UTC) + timedelta(minutes=2))
    return asyncio.run(run_cycle(sources, limits=limits, source_timeout=timeout))


def test_one_teams_failing_sources_take_every_slot_before_another_teams(
    pg_demo_team: dict, host: PlatformServer
) -> None:
    # Scaled down: 4 global slots stand for the default 200 (100 per platform); 8 hanging feeds stand for one
    # business team's 100 feed connections (or 34 free teams of one person); 0.5 s timeout for the default 30 s.
    limits, timeout = Limits(global_concurrency=4), 0.5
    hostile = [watch(host, "demo", f"hostile{i}") for i in range(8)]
    watch(host, "other", "victim")
    host.source("victim")
    assert cycle(limits, timeout).fetched == 9  # every cursor starts
    for i in range(8):
        host.source(f"hostile{i}").mode = "slow"  # hang past the timeout: an error, the cursor does not move
    with session_scope() as s:
        shift(s, timedelta(minutes=5))
    assert cycle(limits, timeout).failed == 8
    with session_scope() as s:  # a minute later: the 60 s back-off is over, every source is due again
        s.execute(update(Connection).values(poll_backoff_until=None))
        shift(s, timedelta(minutes=1))
        order = [src.workflow_ids[0] for src in due_sources(s, datetime.now(UTC))]
    assert set(order[:8]) != set(hostile) and order[1] not in hostile  # the teams in turn

    first_hit: list[float] = []
    started = time.monotonic()

    def watcher() -> None:
        while not first_hit and time.monotonic() - started < 30:
            if host.source("victim").hits >= 3:
                first_hit.append(time.monotonic() - started)
            time.sleep(0.01)

    t = threading.Thread(target=watcher)
    t.start()
    cycle(limits, timeout)
    t.join()
    assert first_hit and first_hit[0] < 0.5, (
        f"the other team's only source waited {first_hit[0]:.1f}s (default timeouts: minutes) behind one team's "
        "hanging sources"
    )
