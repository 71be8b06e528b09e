"""One poll cycle: fetch every due source concurrently, then record new items and advance cursors atomically.

Runs inside the triggerer (``KipuPollTrigger``): network waits hold no worker slot. Store writes run in a thread,
in batches; each source's items and cursor commit together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kipu.hooks.base import AuthExpired, NeedsReconnect, PlatformError, RateLimited, SourceHook, Transient
from kipu.hooks.http import LimitedClient, Limits
from kipu.ingest import Entry, enter_batch
from kipu.poll import cursor as cursor_store
from kipu.poll.cursor import Cursor, select_new
from kipu.poll.due import Source
from kipu.specs.items import ContentItem
from kipu.specs.triggers import PollTrigger, parse_trigger
from kipu.store.accounts import tell_reconnect
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Workflow

log = logging.getLogger(__name__)

# Newest posts read per source and cycle; more than this many new posts between two polls would drop the oldest,
# so it sits well above what an account posts in a poll interval (hooks clamp it to their API's page size).
FETCH_LIMIT = 200
DEFAULT_BACKOFF = timedelta(seconds=60)


class CycleReport(BaseModel):
    """What one cycle did; small and free of secrets, so it can travel in a TriggerEvent and XCom."""

    sources: int = 0
    fetched: int = 0
    failed: int = 0
    rate_limited: int = 0
    new_runs: int = 0
    skipped_runs: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = Field(default_factory=dict)


@dataclass
class SourceContext:
    source: Source
    hook: SourceHook | None
    token_key: str
    error: PlatformError | None = None
    watchers: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Outcome:
    source: Source
    items: list[ContentItem] | None = None
    error: PlatformError | None = None


def load_contexts(sources: list[Source]) -> dict[str, SourceContext]:
    """Hooks for every source, built from their connections (tokens decrypted in memory only)."""
    from kipu.platforms import source_hook

    ids = [uuid.UUID(s.connection_id) for s in sources]
    out: dict[str, SourceContext] = {}
    with session_scope() as session:
        conns = {str(c.id): c for c in session.scalars(select(Connection).where(Connection.id.in_(ids)))}
        for src in sources:
            conn = conns.get(src.connection_id)
            ctx = SourceContext(src, None, src.connection_id, watchers=[uuid.UUID(w) for w in src.workflow_ids])
            try:
                if conn is None:
                    raise NeedsReconnect(f"connection {src.connection_id} no longer exists")
                ctx.hook = source_hook(conn)
            except PlatformError as exc:
                ctx.error = exc
            out[src.connection_id] = ctx
    return out


async def fetch_one(ctx: SourceContext, http: LimitedClient) -> Outcome:
    """Fetch one source; every failure becomes this source's outcome and never escapes."""
    if ctx.error is not None or ctx.hook is None:
        return Outcome(ctx.source, error=ctx.error or NeedsReconnect("no hook"))
    try:
        items = await ctx.hook.fetch_posts(http, None, FETCH_LIMIT)
    except PlatformError as exc:
        return Outcome(ctx.source, error=exc)
    except Exception as exc:  # a hook bug must cost only its own source
        log.exception("polling %s failed", ctx.source.connection_id)
        return Outcome(ctx.source, error=Transient(f"{ctx.source.platform}: {type(exc).__name__}"))
    return Outcome(ctx.source, items=items)


def _health(outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The connection columns this outcome sets."""
    if outcome.error is None:
        return {"status": "healthy", "last_error": None, "last_checked_at": now, "poll_backoff_until": None}
    err = outcome.error
    message = str(err)[:500]
    if isinstance(err, (AuthExpired, NeedsReconnect)):
        # Refresh belongs to the hooks issue; until then an expired token asks the user to reconnect.
        return {"status": "needs_reconnect", "last_error": message, "last_checked_at": now}
    wait = timedelta(seconds=err.retry_after) if isinstance(err, RateLimited) and err.retry_after else DEFAULT_BACKOFF
    status = "rate_limited" if isinstance(err, RateLimited) else "error"
    return {"status": status, "last_error": message, "last_checked_at": now, "poll_backoff_until": now + wait}


def record_batch(session: Session, batch: list[tuple[SourceContext, Outcome]], now: datetime) -> Counter[str]:
    """Every source of the batch in the caller's transaction: new runs (the one item entry, ``ingest``), advanced
    cursors, connection health. A handful of statements per batch, not per source: this is what lets one cycle
    cover thousands of sources."""
    w, c = Workflow.__table__, Connection.__table__
    watched = [wf for ctx, outcome in batch if outcome.items is not None for wf in ctx.watchers]
    configs = {}
    if watched:
        query = select(w.c.id, w.c.trigger_config, w.c.status, w.c.dag_id).where(w.c.id.in_(watched))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()  # an edit saved meanwhile waits, then wins over a stale cursor
        configs = {row.id: row for row in session.execute(query)}
    cursors = cursor_store.load(session, configs)
    entries: list[Entry] = []
    moved: dict[uuid.UUID, Cursor] = {}
    for ctx, outcome in batch:
        for wf_id in ctx.watchers if outcome.items is not None else []:
            row = configs.get(wf_id)
            if row is None or row.status != "active" or (row.trigger_config or {}).get("type") != "poll":
                continue  # paused, inactive or edited away from polling since the cycle began
            trigger = parse_trigger(row.trigger_config)
            assert isinstance(trigger, PollTrigger) and outcome.items is not None
            new, moved[wf_id] = select_new(
                outcome.items, cursors.get(wf_id, Cursor()), now, trigger.backfill, trigger.backfill_count
            )
            entries.append(Entry(wf_id, row.dag_id or "", trigger.filters, new))
    entered = enter_batch(session, entries, "poll", now)
    cursor_store.save(session, moved)
    healthy = [uuid.UUID(ctx.source.connection_id) for ctx, o in batch if o.error is None]
    if healthy:
        session.execute(update(c).where(c.c.id.in_(healthy)).values(**_health(Outcome(batch[0][0].source), now)))
    for ctx, outcome in batch:
        if outcome.error is not None:
            health = _health(outcome, now)
            conn_id = uuid.UUID(ctx.source.connection_id)
            session.execute(update(c).where(c.c.id == conn_id).values(**health))
            if health["status"] == "needs_reconnect" and (conn := session.get(Connection, conn_id)) is not None:
                tell_reconnect(session, conn, health["last_error"])
    counts: Counter[str] = Counter()
    for one in entered:
        if one.created:
            counts["skipped_runs" if one.status == "skipped" else "new_runs"] += 1
    return counts


def write_batch(batch: list[tuple[SourceContext, Outcome]], now: datetime) -> Counter[str]:
    """A batch in one transaction; if it fails, each source alone, so one bad source loses nothing of the others."""
    try:
        with session_scope() as session:
            return record_batch(session, batch, now)
    except Exception:
        log.warning("a batch of %d sources failed to record; recording them one by one", len(batch))
    counts: Counter[str] = Counter()
    for one in batch:
        try:
            with session_scope() as session:
                counts.update(record_batch(session, [one], now))
        except Exception:
            log.exception("recording source %s failed; it will be fetched again", one[0].source.connection_id)
            counts["write_failed"] += 1
    return counts


async def run_cycle(
    sources: list[Source],
    *,
    limits: Limits | None = None,
    source_timeout: float = 30.0,
    batch_size: int = 200,
    now: datetime | None = None,
    client: LimitedClient | None = None,
) -> CycleReport:
    """Fetch every source concurrently (bounded by ``limits``) and record the outcomes in batches as they land."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    report = CycleReport(sources=len(sources))
    contexts = await asyncio.to_thread(load_contexts, sources)
    queue: asyncio.Queue[tuple[SourceContext, Outcome] | None] = asyncio.Queue()
    totals: Counter[str] = Counter()

    async def writer() -> None:
        done = False
        while not done:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < batch_size:
                batch.append(queue.get_nowait())
            if batch[-1] is None:
                batch.pop()
                done = True
            if batch:
                totals.update(await asyncio.to_thread(write_batch, batch, now))  # type: ignore[arg-type]

    # With other teams in the cycle, no team holds more than half of its slots: the rest always serves the others.
    slots = (limits or Limits()).global_concurrency
    share = slots if len({c.source.team_id for c in contexts.values()}) <= 1 else max(1, slots // 2)
    team_slots: dict[str | None, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(share))

    async def one(ctx: SourceContext, http: LimitedClient) -> None:
        async with team_slots[ctx.source.team_id]:
            outcome = await fetch_one(ctx, http)
        if outcome.error is None:
            report.fetched += 1
        else:
            report.failed += 1
            report.rate_limited += isinstance(outcome.error, RateLimited)
            name = type(outcome.error).__name__
            report.errors[name] = report.errors.get(name, 0) + 1
        await queue.put((ctx, outcome))

    write_task = asyncio.create_task(writer())
    try:
        async with client or LimitedClient(limits, request_timeout=source_timeout) as http:
            await asyncio.gather(*(one(ctx, http) for ctx in contexts.values()))
    finally:
        await queue.put(None)
        await write_task
    report.new_runs = totals["new_runs"]
    report.skipped_runs = totals["skipped_runs"]
    if totals["write_failed"]:
        report.errors["write_failed"] = totals["write_failed"]
    report.seconds = round(time.monotonic() - started, 3)
    return report
