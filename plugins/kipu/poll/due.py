"""Which poll triggers are due, grouped by connected account so one fetch serves every workflow watching it."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from itertools import zip_longest

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.specs.triggers import PollTrigger, parse_trigger
from kipu.store.models import Connection, PollCursor, Workflow

log = logging.getLogger(__name__)

# Sources spread over time: each poll is due somewhere in [0.9, 1.1] x its interval after the last one.
JITTER = 0.1
# Connections in these states are not polled until the user reconnects them.
NOT_POLLED = ("needs_reconnect", "revoked")
# kipu_poll's schedule.
ENGINE_CYCLE = timedelta(minutes=1)


class Source(BaseModel):
    """One account to fetch in this cycle, and the workflows that watch it."""

    connection_id: str
    platform: str
    workflow_ids: list[str]
    team_id: str | None = None


def jitter_factor(workflow_id: str, last_checked: datetime) -> float:
    """A stable factor in [1 - JITTER, 1 + JITTER] for this workflow and this cursor."""
    digest = hashlib.blake2b(f"{workflow_id}|{last_checked.isoformat()}".encode(), digest_size=4).digest()
    return 1 - JITTER + 2 * JITTER * int.from_bytes(digest, "big") / 0xFFFFFFFF


def is_due(workflow_id: str, trigger: PollTrigger, last_checked: datetime | None, now: datetime) -> bool:
    """Due at the engine cycle nearest to the jittered interval: without the half-cycle of slack, a 1-minute source
    checked 61 s ago would wait for the next cycle, and be polled every two minutes instead of every one."""
    if last_checked is None:
        return True
    interval = timedelta(minutes=trigger.poll_interval_minutes) * jitter_factor(workflow_id, last_checked)
    return last_checked + interval - ENGINE_CYCLE / 2 <= now


def due_sources(session: Session, now: datetime, limit: int = 10_000) -> list[Source]:
    """Active poll workflows that are due, grouped by their resolved connection, most overdue first."""
    w, pc = Workflow.__table__, PollCursor.__table__
    rows = session.execute(
        select(w.c.id, w.c.team_id, w.c.trigger_config, pc.c.last_checked_at)
        .outerjoin(pc, pc.c.workflow_id == w.c.id)
        .where(w.c.status == "active")
    )
    c = Connection.__table__
    conns = session.execute(
        select(c.c.id, c.c.team_id, c.c.platform, c.c.platform_user_id, c.c.status, c.c.poll_backoff_until)
    )
    by_ref: dict[tuple[uuid.UUID | None, str], tuple] = {}
    by_id: dict[str, tuple] = {}
    for row in conns:
        by_ref[(row[1], f"{row[2]}:{row[3]}")] = row
        by_id[str(row[0])] = row
    groups: dict[str, Source] = {}
    overdue: dict[str, datetime] = {}
    for wf_id, team_id, config, last_checked in rows:
        if not config or config.get("type") != "poll":
            continue
        try:
            trigger = parse_trigger(config)
        except ValidationError as exc:  # the factory shows the error DAG; polling just leaves it out
            log.warning("workflow %s has an invalid poll trigger: %s", wf_id, exc.errors()[0]["msg"])
            continue
        assert isinstance(trigger, PollTrigger)
        if not is_due(str(wf_id), trigger, last_checked, now):
            continue
        conn = by_id.get(trigger.connection_id) or by_ref.get((team_id, trigger.connection_id))
        if conn is None or conn[1] != team_id:
            log.warning("workflow %s polls %s, which is not a connection of its team", wf_id, trigger.connection_id)
            continue
        if conn[4] in NOT_POLLED or (conn[5] is not None and conn[5] > now):
            continue
        key = str(conn[0])
        src = groups.setdefault(key, Source(connection_id=key, platform=conn[2], workflow_ids=[], team_id=str(team_id)))
        src.workflow_ids.append(str(wf_id))
        since = last_checked or datetime.min.replace(tzinfo=now.tzinfo)
        overdue[key] = min(overdue.get(key, since), since)
    # The teams in turn, each team's most overdue first: one team's many sources (failing ones sort as most overdue,
    # cycle after cycle) never take every slot before another team's first source.
    by_team: dict[str | None, list[Source]] = {}
    for src in sorted(groups.values(), key=lambda s: overdue[s.connection_id]):
        by_team.setdefault(src.team_id, []).append(src)
    ordered = [src for turn in zip_longest(*by_team.values()) for src in turn if src is not None]
    return ordered[:limit]
