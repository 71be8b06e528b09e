"""``/api/teams/{team}/usage`` and ``/billing``: the team's plan, limits and use; Stripe Checkout and the Customer
Portal (owners); and ``/api/webhooks/stripe``, signed by Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from kipu.api.auth import CallerDep
from kipu.billing import stripe_billing
from kipu.billing.plans import Limits, billing_enabled, effective_plan, limits_for, usage
from kipu.notify.events import airflow_url
from kipu.store.engine import session_scope
from kipu.store.models import Team, Workflow, WorkflowRun

router = APIRouter(tags=["plans and billing"])
UNAVAILABLE = {
    409: {
        "description": "billing is off (self-hosted), the team has no Stripe customer yet, or (checkout) it pays"
        " already (the portal changes plans)"
    }
}
UPSTREAM = {502: {"description": "Stripe refused or could not be reached; Stripe's message is passed on"}}


class UsageOut(BaseModel):
    plan: str = Field(description="the plan the team pays for")
    effective_plan: str = Field(description="whose limits hold now (self_hosted: no billing, no limits)")
    billing_enabled: bool
    billing_status: str
    billing_grace_until: datetime | None
    billing_period_end: datetime | None
    limits: Limits = Field(description="null is unlimited")
    usage: dict[str, int]
    held_items: int = Field(description="items waiting as held_by_plan for the monthly post limit")
    held_release: str


def own_page(url: str | None) -> str | None:
    """A return address from Stripe must be a page of this Kipu: Stripe's page is no open redirect to elsewhere."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    mine, given = urlsplit(airflow_url()), urlsplit(url)
    if (given.scheme, given.netloc.lower()) != (mine.scheme, mine.netloc.lower()):
        raise ValueError(f"must be a page of this Kipu, under {mine.scheme}://{mine.netloc}/")
    return url


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Literal["pro", "business"]
    success_url: str | None = Field(
        None, max_length=2048, pattern=r"^https?://", description="default: Kipu's UI; a page of this Kipu"
    )
    cancel_url: str | None = Field(None, max_length=2048, pattern=r"^https?://", description="a page of this Kipu")

    _own = field_validator("success_url", "cancel_url")(own_page)


class PortalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: str | None = Field(None, max_length=2048, pattern=r"^https?://", description="a page of this Kipu")

    _own = field_validator("return_url")(own_page)


class RedirectOut(BaseModel):
    url: str = Field(description="send the browser here")
    id: str


class WebhookOut(BaseModel):
    received: bool = True
    outcome: str = Field(description="applied, stale, ignored or duplicate")


@router.get("/teams/{team}/usage", response_model=UsageOut)
def team_usage(team: str, caller: CallerDep) -> UsageOut:
    """The team's plan, its limits and what it uses now (viewers and up)."""
    team_id = caller.team(team, "viewer")
    now = datetime.now(UTC)
    with session_scope() as s:
        row = s.get(Team, team_id)
        assert row is not None
        held = s.scalar(
            select(func.count())
            .select_from(WorkflowRun)
            .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
            .where(Workflow.team_id == team_id, WorkflowRun.status == "held_by_plan")
        )
        return UsageOut(
            plan=row.plan,
            effective_plan=effective_plan(row, now),
            billing_enabled=billing_enabled(),
            billing_status=row.billing_status,
            billing_grace_until=row.billing_grace_until,
            billing_period_end=row.billing_period_end,
            limits=limits_for(row, now),
            usage=usage(s, row, now),
            held_items=int(held or 0),
            held_release=row.held_release,
        )


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


@router.post("/teams/{team}/billing/checkout", response_model=RedirectOut, responses={**UNAVAILABLE, **UPSTREAM})
def checkout(team: str, body: CheckoutIn, caller: CallerDep) -> RedirectOut:
    """A Stripe Checkout Session to upgrade to ``plan`` (owners); the plan changes when Stripe says it is paid."""
    team_id = caller.team(team, "owner")
    if not billing_enabled():
        raise HTTPException(status.HTTP_409_CONFLICT, "billing is off: a self-hosted Kipu has no plan limits")
    back = airflow_url("/kipu/billing")
    try:
        with session_scope() as s:
            row = s.get(Team, team_id)
            assert row is not None
            if row.billing_subscription_id and row.billing_status in ("active", "trialing", "past_due"):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"the team already pays for {row.plan}: change or cancel it in the billing portal "
                    f"(POST /kipu/api/teams/{team}/billing/portal); a second checkout would bill twice",
                )
            made = stripe_billing.checkout(
                s, row, body.plan, body.success_url or f"{back}?upgraded=1", body.cancel_url or back, caller.email
            )
            return RedirectOut(url=made.url, id=made.id)
    except stripe_billing.BillingUnavailable as exc:
        raise _unavailable(exc) from None
    except stripe_billing.BillingError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None


@router.post("/teams/{team}/billing/portal", response_model=RedirectOut, responses={**UNAVAILABLE, **UPSTREAM})
def portal(team: str, caller: CallerDep, body: PortalIn | None = None) -> RedirectOut:
    """A Stripe Customer Portal link: invoices, payment method, cancel (owners)."""
    team_id = caller.team(team, "owner")
    try:
        with session_scope() as s:
            row = s.get(Team, team_id)
            assert row is not None
            made = stripe_billing.portal(row, (body and body.return_url) or airflow_url("/kipu/billing"))
            return RedirectOut(url=made.url, id=made.id)
    except stripe_billing.BillingUnavailable as exc:
        raise _unavailable(exc) from None
    except stripe_billing.BillingError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None


@router.post(
    "/webhooks/stripe",
    response_model=WebhookOut,
    responses={400: {"description": "the Stripe-Signature does not match"}, **UNAVAILABLE},
)
async def stripe_webhook(request: Request) -> WebhookOut:
    """Stripe's events, verified with the SDK (400 if not), applied once per event id; unknown ones acknowledged."""
    from starlette.concurrency import run_in_threadpool

    payload = await request.body()  # the door guard has capped it, and required the signature header
    try:
        event = stripe_billing.verify(payload, request.headers.get("stripe-signature", ""))
    except stripe_billing.BadSignature as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid Stripe signature: {exc}") from None
    except stripe_billing.BillingUnavailable as exc:
        raise _unavailable(exc) from None

    def apply() -> str:
        try:
            with session_scope() as s:
                return stripe_billing.apply_event(s, event)
        except IntegrityError:  # the same event, processed by a concurrent delivery
            return "duplicate"

    return WebhookOut(outcome=await run_in_threadpool(apply))
