"""The AI cache and usage ledger in the store: identical requests are not paid twice; budgets and team totals."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kipu.ai.prompts import PROMPT_VERSION
from kipu.store.models import AICacheEntry, AIUsage, Team


def cache_key(purpose: str, model: str, payload: dict[str, Any]) -> str:
    """A hash of (text, config, model) and the prompt version."""
    blob = json.dumps({"p": purpose, "m": model, "v": PROMPT_VERSION, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_get(session: Session, key: str) -> dict[str, Any] | None:
    entry = session.get(AICacheEntry, key)
    return dict(entry.response) if entry else None


def cache_put(session: Session, key: str, model: str, response: dict[str, Any]) -> None:
    session.merge(AICacheEntry(key=key, model=model, response=response))


def record_usage(
    session: Session,
    *,
    team_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    purpose: str,
    model: str,
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
    cached: bool,
) -> None:
    session.add(
        AIUsage(
            id=uuid.uuid4(),
            team_id=team_id,
            workflow_run_id=run_id,
            purpose=purpose,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost_usd,
            cached=cached,
        )
    )


def tokens_today(session: Session, team_id: uuid.UUID, now: datetime) -> int:
    """Tokens (in + out) the team used since 00:00 UTC today."""
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    used = session.scalar(
        select(func.coalesce(func.sum(AIUsage.tokens_in + AIUsage.tokens_out), 0)).where(
            AIUsage.team_id == team_id, AIUsage.created_at >= midnight
        )
    )
    return int(used or 0)


def team_budget(session: Session, team_id: uuid.UUID, default: int | None) -> int | None:
    """The team's own budget, else the connection's default, held to the plan's daily AI limit."""
    from kipu.billing.plans import limits_for

    team = session.get(Team, team_id)
    own = team.ai_daily_token_budget if team and team.ai_daily_token_budget is not None else default
    plan = limits_for(team).ai_daily_tokens if team is not None else None
    return min((b for b in (own, plan) if b is not None), default=None)


def team_totals(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per team: calls, cache hits, tokens in and out, estimated cost."""
    query = (
        select(
            Team.slug,
            func.count(AIUsage.id),
            func.sum(func.cast(AIUsage.cached, type_=AIUsage.tokens_in.type)),
            func.coalesce(func.sum(AIUsage.tokens_in), 0),
            func.coalesce(func.sum(AIUsage.tokens_out), 0),
            func.coalesce(func.sum(AIUsage.cost_usd), 0.0),
        )
        .join(Team, Team.id == AIUsage.team_id, isouter=True)
        .where(AIUsage.purpose != "reserved")  # a call in flight holds budget, but is no call yet
        .group_by(Team.slug)
        .order_by(Team.slug)
    )
    if since is not None:
        query = query.where(AIUsage.created_at >= since)
    return [
        {
            "team": slug,
            "calls": calls,
            "cache_hits": int(hits or 0),
            "tokens_in": int(tin),
            "tokens_out": int(tout),
            "cost_usd": round(float(cost), 8),
        }
        for slug, calls, hits, tin, tout, cost in session.execute(query)
    ]
