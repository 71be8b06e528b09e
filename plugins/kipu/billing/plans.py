"""The plans and their limits, in one place; what a team uses; and ``check``, which every path that adds a limited
thing calls (a ``PlanLimitReached`` is a 402 naming the limit and the use). Without a Stripe key every team is on
the unlimited ``self_hosted`` plan."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kipu.store.models import AIUsage, Connection, Post, Team, TeamMember, Workflow

LimitName = Literal["active_workflows", "connections", "posts_per_month", "members", "ai_daily_tokens"]
PlanName = Literal["free", "pro", "business", "self_hosted"]
PAID: tuple[str, ...] = ("pro", "business")


class Limits(BaseModel):
    """None is unlimited."""

    active_workflows: int | None
    connections: int | None
    posts_per_month: int | None
    members: int | None
    ai_daily_tokens: int | None


# The one place plan limits live. A team's ``plan_limits`` overrides single values (a deal, a support fix).
PLANS: dict[str, Limits] = {
    "free": Limits(active_workflows=3, connections=3, posts_per_month=100, members=2, ai_daily_tokens=20_000),
    "pro": Limits(active_workflows=25, connections=15, posts_per_month=2_000, members=5, ai_daily_tokens=200_000),
    "business": Limits(
        active_workflows=200, connections=100, posts_per_month=20_000, members=25, ai_daily_tokens=2_000_000
    ),
    "self_hosted": Limits(
        active_workflows=None, connections=None, posts_per_month=None, members=None, ai_daily_tokens=None
    ),
}
LABELS = {
    "active_workflows": "active workflows",
    "connections": "connected accounts",
    "posts_per_month": "posts this month",
    "members": "team members",
    "ai_daily_tokens": "AI tokens today",
}


class PlanLimitReached(Exception):
    """Adding this would pass the team's plan limit."""

    def __init__(self, limit: LimitName, allowed: int, used: int, plan: str, team_id: uuid.UUID | None = None) -> None:
        self.limit, self.allowed, self.used, self.plan, self.team_id = limit, allowed, used, plan, team_id
        super().__init__(
            f"the {plan} plan allows {allowed} {LABELS[limit]} and the team has {used}; "
            "upgrade the plan (POST /kipu/api/teams/{team}/billing/checkout) or free one up"
        )

    def tell(self) -> None:
        """Tell the team (once a month per limit), in a transaction of its own: the refused one was rolled back."""
        from kipu.store.engine import session_scope

        if self.team_id is None:
            return
        with session_scope() as session:
            team = session.get(Team, self.team_id)
            if team is not None:
                tell_limit(session, team, self.limit, self.allowed, self.used, datetime.now(UTC))

    def body(self) -> dict[str, object]:
        return {"detail": str(self), "limit": self.limit, "allowed": self.allowed, "used": self.used, "plan": self.plan}


def billing_enabled() -> bool:
    """Kipu bills through Stripe only when ``STRIPE_SECRET_KEY`` is set; a self-hosted Kipu has no limits."""
    return bool(os.environ.get("STRIPE_SECRET_KEY", "").strip())


def effective_plan(team: Team, now: datetime | None = None) -> str:
    """The plan whose limits hold now: ``self_hosted`` without billing; ``free`` once a failed payment's grace
    period is over."""
    if not billing_enabled():
        return "self_hosted"
    now = now or datetime.now(UTC)
    if team.billing_status == "past_due" and team.billing_grace_until and team.billing_grace_until < now:
        return "free"
    return team.plan if team.plan in ("free", *PAID) else "free"


def limits_for(team: Team, now: datetime | None = None) -> Limits:
    plan = effective_plan(team, now)
    base = PLANS[plan]
    if plan == "self_hosted" or not team.plan_limits:
        return base
    overrides = {k: v for k, v in team.plan_limits.items() if k in Limits.model_fields}
    return base.model_copy(update=overrides)


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def used(session: Session, team_id: uuid.UUID, limit: LimitName, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    if limit == "active_workflows":
        q = select(func.count()).where(Workflow.team_id == team_id, Workflow.status == "active")
    elif limit == "connections":
        q = select(func.count()).where(Connection.team_id == team_id)
    elif limit == "members":
        q = select(func.count()).where(TeamMember.team_id == team_id)
    elif limit == "posts_per_month":  # every target that reached (or is reaching) a platform this month
        q = select(func.count()).where(
            Post.team_id == team_id, Post.created_at >= month_start(now), Post.status != "failed"
        )
    else:
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
        q = select(func.coalesce(func.sum(AIUsage.tokens_in + AIUsage.tokens_out), 0)).where(
            AIUsage.team_id == team_id, AIUsage.created_at >= midnight
        )
    return int(session.scalar(q) or 0)


def usage(session: Session, team: Team, now: datetime | None = None) -> dict[str, int]:
    return {name: used(session, team.id, name, now) for name in Limits.model_fields}  # type: ignore[arg-type]


def check(session: Session, team_id: uuid.UUID | None, limit: LimitName, adding: int = 1) -> None:
    """Raise ``PlanLimitReached`` if adding ``adding`` would pass the limit (whoever catches it calls ``tell``)."""
    if team_id is None or not billing_enabled():
        return
    # Locked: two requests at once count one after the other, so they cannot both take the last place.
    team = session.get(Team, team_id, with_for_update=True)
    if team is None:
        return
    now = datetime.now(UTC)
    allowed = getattr(limits_for(team, now), limit)
    if allowed is None:
        return
    have = used(session, team_id, limit, now)
    if have + adding <= allowed:
        return
    raise PlanLimitReached(limit, allowed, have, effective_plan(team, now), team_id)


def tell_limit(session: Session, team: Team, limit: str, allowed: int, have: int, now: datetime) -> None:
    from kipu.notify.events import emit

    data = {"limit": LABELS.get(limit, limit), "allowed": allowed, "used": have, "plan": effective_plan(team, now)}
    emit(session, team.id, "plan.limit_reached", data, f"plan.limit_reached:{limit}:{now:%Y-%m}")
