"""Digests and deliveries: events become one delivery per channel per window, and deliveries are sent with short
timeouts in parallel, retried with backoff, and logged per attempt. Runs in the ``kipu_notify`` DAG, never in a
publish task, so a slow receiver cannot hold up a post."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kipu.config import env_number
from kipu.egress import EgressRefused
from kipu.notify import render
from kipu.notify.channels import signing_secrets, target_url
from kipu.notify.events import emit
from kipu.notify.signing import HEADER, header_value
from kipu.store.crypto import TokenDecryptError
from kipu.store.engine import session_scope
from kipu.store.models import NotificationAttempt, NotificationChannel, NotificationDelivery, NotificationEvent

log = logging.getLogger(__name__)
MAX_EVENTS_PER_DELIVERY = 500
MAX_EVENTS_PER_PASS = 5000  # per team; the rest waits for the next pass
CLAIM_LIMIT = 100  # deliveries per pass
LEASE = timedelta(minutes=5)  # a claimed delivery is due again after this if the sender died mid-send
SMTP_CONN_ID = "kipu_smtp"


def window() -> timedelta:
    """How long a team's first event waits for others to join its digest: ``KIPU_NOTIFY_WINDOW_SECONDS``, 60."""
    return timedelta(seconds=env_number("KIPU_NOTIFY_WINDOW_SECONDS", 60.0, minimum=0.0))


def max_attempts() -> int:
    return int(env_number("KIPU_NOTIFY_MAX_ATTEMPTS", 12, minimum=1))


def timeout() -> float:
    """Each connect, write and read of a send: ``KIPU_NOTIFY_TIMEOUT_SECONDS``, 10."""
    return env_number("KIPU_NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1)


def deadline() -> float:
    """A whole HTTP send, wall clock: a receiver that answers one byte at a time passes every read timeout."""
    return 3 * timeout()


def backoff(attempt: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour: 12 attempts span about 6 hours."""
    return timedelta(seconds=min(30 * 2 ** (attempt - 1), 3600))


def event_json(e: NotificationEvent) -> dict[str, Any]:
    return {"id": str(e.id), "type": e.kind, "created_at": e.created_at.isoformat(), "data": e.data}


def batch(session: Session, now: datetime, wait: timedelta | None = None) -> int:
    """Group each team's undispatched events into one delivery per subscribed channel once the team's oldest one
    has waited ``wait``; returns the deliveries made."""
    wait = window() if wait is None else wait
    ev = NotificationEvent
    teams = session.scalars(
        select(ev.team_id)
        .where(ev.dispatched_at.is_(None))
        .group_by(ev.team_id)
        .having(func.min(ev.created_at) <= now - wait)
    ).all()
    made = 0
    for team_id in teams:
        events = session.scalars(
            select(ev)
            .where(ev.team_id == team_id, ev.dispatched_at.is_(None), ev.created_at <= now)
            .order_by(ev.created_at, ev.id)
            .limit(MAX_EVENTS_PER_PASS)
            .with_for_update(skip_locked=True)
        ).all()
        channels = session.scalars(
            select(NotificationChannel).where(NotificationChannel.team_id == team_id, NotificationChannel.enabled)
        ).all()
        for ch in channels:
            mine = [str(e.id) for e in events if e.kind in ch.events]
            for start in range(0, len(mine), MAX_EVENTS_PER_DELIVERY):
                chunk = mine[start : start + MAX_EVENTS_PER_DELIVERY]
                session.add(_delivery(team_id, ch.id, chunk, now))
                made += 1
        for e in events:
            e.dispatched_at = now
    return made


def _delivery(team_id: uuid.UUID, channel_id: uuid.UUID, event_ids: list[str], now: datetime) -> NotificationDelivery:
    return NotificationDelivery(
        id=uuid.uuid4(),
        team_id=team_id,
        channel_id=channel_id,
        event_ids=event_ids,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


class PendingTest(Exception):
    """The channel's last test is not sent yet."""


def queue_test(session: Session, channel: NotificationChannel, now: datetime | None = None) -> NotificationDelivery:
    """A test event for one channel, due at once (no digest window); one at a time per channel, so tests cannot
    flood a receiver, fill the queue or mail recipients without end."""
    session.execute(select(NotificationChannel.id).where(NotificationChannel.id == channel.id).with_for_update())
    waiting = session.scalars(
        select(NotificationDelivery.event_ids).where(
            NotificationDelivery.channel_id == channel.id, NotificationDelivery.status == "pending"
        )
    ).all()
    ids = [uuid.UUID(i) for event_ids in waiting for i in event_ids or []]
    if ids and session.scalar(
        select(func.count()).where(NotificationEvent.id.in_(ids), NotificationEvent.kind == "test")
    ):
        raise PendingTest(f"the channel's last test is not delivered yet (retried up to {max_attempts()} times)")
    now = now or datetime.now(UTC)
    key = f"test:{channel.id}:{uuid.uuid4()}"
    emit(session, channel.team_id, "test", {"message": f"A test notification for channel '{channel.name}'"}, key)
    session.flush()
    event = session.scalars(select(NotificationEvent).where(NotificationEvent.key == key)).one()
    event.dispatched_at = now
    delivery = _delivery(channel.team_id, channel.id, [str(event.id)], now)
    session.add(delivery)
    session.flush()
    return delivery


@dataclass
class Job:
    delivery_id: str
    team_id: str
    attempt: int
    kind: str
    url: str | None = field(repr=False)  # a Slack webhook URL is a credential
    recipients: list[str]
    secrets: list[str] = field(repr=False)
    events: list[dict[str, Any]]


@dataclass
class Result:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    duration_ms: int = 0


def claim(now: datetime, limit: int = CLAIM_LIMIT) -> list[Job]:
    """Due deliveries, leased in a short transaction (sending happens outside it)."""
    jobs: list[Job] = []
    nd = NotificationDelivery
    is_due = (nd.status == "pending") & (nd.next_attempt_at <= now)
    # The teams in turn: each team's oldest, then each one's second, ...; a team alone still gets the whole pass, and
    # one team's backlog never holds up another's (a window function takes no row locks: the outer select does).
    rank = func.row_number().over(partition_by=nd.team_id, order_by=(nd.next_attempt_at, nd.id)).label("rank")
    ranked = select(nd.id, nd.next_attempt_at, rank).where(is_due).subquery()
    fair = select(ranked.c.id).order_by(ranked.c.rank, ranked.c.next_attempt_at)
    with session_scope() as s:
        ids = list(s.scalars(fair.limit(limit)))
        due = s.scalars(
            select(nd).where(nd.id.in_(ids), is_due).order_by(nd.next_attempt_at).with_for_update(skip_locked=True)
        ).all()
        for d in due:
            ch = s.get(NotificationChannel, d.channel_id)
            if ch is None or not ch.enabled:
                d.status, d.last_error, d.next_attempt_at = "failed", "the channel was disabled", None
                continue
            try:
                url, secrets = target_url(ch), signing_secrets(ch, now) if ch.kind == "webhook" else []
            except TokenDecryptError:  # one channel's settings never stop the others' deliveries
                d.status, d.next_attempt_at = "failed", None
                d.last_error = "the channel's settings cannot be decrypted with ENCRYPTION_KEY: save the channel again"
                log.error("notification channel %s: %s", ch.id, d.last_error)
                continue
            d.next_attempt_at = now + LEASE
            ids = [uuid.UUID(i) for i in d.event_ids]
            events = s.scalars(
                select(NotificationEvent).where(NotificationEvent.id.in_(ids)).order_by(NotificationEvent.created_at)
            ).all()
            jobs.append(
                Job(
                    delivery_id=str(d.id),
                    team_id=str(d.team_id),
                    attempt=d.attempts + 1,
                    kind=ch.kind,
                    url=url,
                    recipients=list(ch.recipients or []),
                    secrets=secrets,
                    events=[event_json(e) for e in events],
                )
            )
    return jobs


def _send_email(job: Job) -> Result:
    import os

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=os.environ.get("KIPU_SMTP_CONN_ID", SMTP_CONN_ID)) as hook:
        hook.send_email_smtp(
            to=job.recipients,
            subject=render.subject(job.events),
            html_content=render.html_body(job.events),
            from_email=hook.from_email or os.environ.get("KIPU_NOTIFY_FROM", "kipu@localhost"),
            custom_headers={"X-Kipu-Delivery": job.delivery_id},
        )
    return Result(ok=True)


async def _send_http(job: Job, http: httpx.AsyncClient) -> Result:
    assert job.url is not None
    if job.kind == "slack":
        body = json.dumps({"text": render.text(job.events)}).encode()
        headers = {"Content-Type": "application/json"}
    else:
        body = render.webhook_body(job.delivery_id, job.team_id, job.events)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Kipu-Webhooks/1",
            "Kipu-Delivery": job.delivery_id,
            HEADER: header_value(job.secrets, body),
        }
    # Only the status: a receiver's body is not ours to read (it could be endless) nor to store.
    async with http.stream("POST", job.url, content=body, headers=headers) as response:
        code = response.status_code
    if 200 <= code < 300:
        return Result(ok=True, status_code=code)
    return Result(ok=False, status_code=code, error=f"HTTP {code}")


async def send(job: Job, http: httpx.AsyncClient) -> Result:
    """Never raises: every outcome is a Result for the delivery log. An HTTP send ends by ``deadline()`` whatever
    the receiver does; e-mail goes to the operator's own SMTP server."""
    started = time.monotonic()
    try:
        if job.kind == "email":
            result = await asyncio.to_thread(_send_email, job)
        else:
            async with asyncio.timeout(deadline()):
                result = await _send_http(job, http)
    except EgressRefused as exc:
        result = Result(ok=False, error=str(exc), permanent=True)
    except httpx.TimeoutException:
        result = Result(ok=False, error=f"timed out after {timeout():g} s")
    except TimeoutError:
        result = Result(ok=False, error=f"no whole answer within {deadline():g} s")
    except httpx.HTTPError as exc:
        result = Result(ok=False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    except Exception as exc:  # SMTP and anything else: logged per attempt, retried
        result = Result(ok=False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def record(job: Job, result: Result, now: datetime) -> str:
    """The attempt in the log and the delivery's next state: delivered, pending (retry at backoff) or failed."""
    with session_scope() as s:
        d = s.get(NotificationDelivery, uuid.UUID(job.delivery_id))
        if d is None or d.status != "pending":
            return "gone"
        d.attempts = job.attempt
        s.add(
            NotificationAttempt(
                id=uuid.uuid4(),
                delivery_id=d.id,
                number=job.attempt,
                at=now,
                ok=result.ok,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
            )
        )
        if result.ok:
            d.status, d.delivered_at, d.next_attempt_at, d.last_error = "delivered", now, None, None
        elif result.permanent or job.attempt >= max_attempts():
            d.status, d.next_attempt_at, d.last_error = "failed", None, result.error
        else:
            d.next_attempt_at, d.last_error = now + backoff(job.attempt), result.error
        return d.status


def dispatch(now: datetime | None = None, wait: timedelta | None = None, workers: int = 8) -> dict[str, int]:
    """One pass: digest what has waited long enough, then send every due delivery."""
    from kipu import egress

    now = now or datetime.now(UTC)
    with session_scope() as s:
        made = batch(s, now, wait)
    jobs = claim(now)
    outcome: dict[str, int] = {"batched": made, "sent": len(jobs), "delivered": 0, "pending": 0, "failed": 0}
    if not jobs:
        return outcome

    async def send_all() -> None:
        gate = asyncio.Semaphore(max(1, workers))
        async with egress.async_client(timeout=httpx.Timeout(timeout()), follow_redirects=False) as http:

            async def one(job: Job) -> None:
                async with gate:
                    result = await send(job, http)
                state = await asyncio.to_thread(record, job, result, now)  # as each ends: none waits for another
                outcome[state] = outcome.get(state, 0) + 1
                if not result.ok:
                    log.warning("delivery %s (%s) attempt %d: %s", job.delivery_id, job.kind, job.attempt, result.error)

            await asyncio.gather(*(one(job) for job in jobs))

    asyncio.run(send_all())
    return outcome
