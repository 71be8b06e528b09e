"""Stripe, through the ``stripe`` SDK: Checkout Sessions for an upgrade, Customer Portal links, and webhook events
verified with the SDK's signature check, applied once per event id and never older over newer."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.billing.plans import PAID
from kipu.config import env_number
from kipu.store.models import BillingEvent, Team

HANDLED = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_failed",
)
ACTIVE = ("active", "trialing")
ENDED = ("canceled", "unpaid", "incomplete_expired")


class BillingUnavailable(Exception):
    """Billing is off or not configured (the message names the setting)."""


class BillingError(Exception):
    """Stripe refused or could not be reached; the message is Stripe's, never a key."""


class BadSignature(Exception):
    pass


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise BillingUnavailable(f"billing is not configured: {name} is not set")
    return value


def client() -> Any:
    import stripe

    base = os.environ.get("STRIPE_API_BASE", "").strip()  # a local fake of Stripe's API in tests
    return stripe.StripeClient(
        _setting("STRIPE_SECRET_KEY"), base_addresses={"api": base} if base else None, max_network_retries=2
    )


def price_for(plan: str) -> str:
    return _setting(f"STRIPE_PRICE_{plan.upper()}")


def plan_for_price(price_id: str | None) -> str | None:
    return next((p for p in PAID if os.environ.get(f"STRIPE_PRICE_{p.upper()}") == price_id), None)


def grace() -> timedelta:
    return timedelta(days=env_number("KIPU_BILLING_GRACE_DAYS", 7.0, minimum=0.0))


def _call(fn: Any, params: dict[str, Any]) -> Any:
    import stripe

    try:
        return fn(params=params)
    except stripe.StripeError as exc:
        message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
        raise BillingError(f"Stripe: {message}") from None


def checkout(session: Session, team: Team, plan: str, success_url: str, cancel_url: str, email: str | None) -> Any:
    """A Checkout Session (subscription mode) for ``plan``; the team's Stripe customer is made once and kept."""
    price = price_for(plan)
    api = client()
    if not team.billing_customer_id:
        customer = _call(
            api.v1.customers.create,
            {"name": team.name, **({"email": email} if email else {}), "metadata": {"team_id": str(team.id)}},
        )
        team.billing_customer_id = customer.id
        session.flush()
    meta = {"team_id": str(team.id), "plan": plan}
    return _call(
        api.v1.checkout.sessions.create,
        {
            "mode": "subscription",
            "customer": team.billing_customer_id,
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(team.id),
            "metadata": meta,
            "subscription_data": {"metadata": meta},
        },
    )


def portal(team: Team, return_url: str) -> Any:
    if not team.billing_customer_id:
        raise BillingUnavailable("the team has no Stripe customer yet: upgrade through checkout first")
    return _call(
        client().v1.billing_portal.sessions.create, {"customer": team.billing_customer_id, "return_url": return_url}
    )


def verify(payload: bytes, header: str) -> dict[str, Any]:
    """The event, if ``header`` is Stripe's valid signature of ``payload`` (the SDK's check, 5-minute tolerance)."""
    import stripe

    try:
        stripe.Webhook.construct_event(payload, header, _setting("STRIPE_WEBHOOK_SECRET"))
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise BadSignature(str(exc) or "the signature does not match") from None
    event = json.loads(payload)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadSignature("the body is not a Stripe event")
    return event


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _team_for(session: Session, kind: str, obj: dict[str, Any]) -> Team | None:
    meta = obj.get("metadata") or {}
    ids = [_uuid(obj.get("client_reference_id")), _uuid(meta.get("team_id"))]
    for team_id in ids:
        if team_id is not None and (team := session.get(Team, team_id, with_for_update=True)) is not None:
            return team
    if kind.startswith("customer.subscription.") and obj.get("id"):
        team = session.scalar(select(Team).where(Team.billing_subscription_id == str(obj["id"])).with_for_update())
        if team is not None:
            return team
    customer = obj.get("customer")
    if isinstance(customer, str):
        return session.scalar(select(Team).where(Team.billing_customer_id == customer).with_for_update())
    return None


def _period_end(sub: dict[str, Any]) -> datetime | None:
    items = ((sub.get("items") or {}).get("data") or [{}])[0]
    end = sub.get("current_period_end") or items.get("current_period_end")
    return datetime.fromtimestamp(int(end), UTC) if end else None


def _subscription(team: Team, sub: dict[str, Any], now: datetime) -> None:
    state = str(sub.get("status") or "")
    items = ((sub.get("items") or {}).get("data") or [{}])[0]
    plan = plan_for_price((items.get("price") or {}).get("id")) or (sub.get("metadata") or {}).get("plan")
    team.billing_subscription_id = str(sub.get("id") or team.billing_subscription_id or "") or None
    team.billing_period_end = _period_end(sub) or team.billing_period_end
    if state in ACTIVE:
        team.plan = plan if plan in PAID else team.plan
        team.billing_status, team.billing_grace_until = state, None
    elif state == "past_due":
        team.billing_status = "past_due"
        team.billing_grace_until = team.billing_grace_until or now + grace()
    elif state in ENDED:
        team.plan, team.billing_status, team.billing_grace_until = "free", "canceled", None


PAID_CHECKOUT = ("paid", "no_payment_required")


def _subscription_named(kind: str, obj: dict[str, Any]) -> str | None:
    """The subscription an event is about, if it names one."""
    if kind.startswith("customer.subscription."):
        sub = obj.get("id")
    elif kind.startswith("invoice."):
        parent = (
            ((obj.get("parent") or {}).get("subscription_details") or {}) if isinstance(obj.get("parent"), dict) else {}
        )
        sub = obj.get("subscription") or parent.get("subscription")
    else:
        return None
    return sub if isinstance(sub, str) and sub else None


def _apply(team: Team, kind: str, obj: dict[str, Any], now: datetime) -> None:
    if kind.startswith("checkout.session."):
        if obj.get("payment_status") not in PAID_CHECKOUT:  # a delayed payment: granted when it succeeds
            return
        plan = (obj.get("metadata") or {}).get("plan")
        team.plan = plan if plan in PAID else team.plan
        team.billing_status, team.billing_grace_until = "active", None
    elif kind == "customer.subscription.updated":
        _subscription(team, obj, now)
    elif kind == "customer.subscription.deleted":
        team.plan, team.billing_status, team.billing_grace_until = "free", "canceled", None
        team.billing_subscription_id = None
    elif kind == "invoice.payment_failed":
        team.billing_status = "past_due"
        team.billing_grace_until = team.billing_grace_until or now + grace()


def apply_event(session: Session, event: dict[str, Any], now: datetime | None = None) -> str:
    """``applied``, ``stale`` (older than what the team already reflects), ``ignored`` (unknown type or team) or
    ``duplicate`` (this id was processed before)."""
    now = now or datetime.now(UTC)
    if session.get(BillingEvent, event["id"]) is not None:
        return "duplicate"
    kind = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    created = datetime.fromtimestamp(int(event.get("created") or 0), UTC)
    team = _team_for(session, kind, obj) if kind in HANDLED and isinstance(obj, dict) else None
    if team is None:
        outcome = "ignored"
    else:
        newer = team.billing_event_at is None or created >= team.billing_event_at
        if kind.startswith("checkout.session."):  # ids are facts whatever the order; a newer checkout's wins
            team.billing_customer_id = team.billing_customer_id or obj.get("customer")
            if obj.get("subscription") and (newer or not team.billing_subscription_id):
                team.billing_subscription_id = str(obj["subscription"])
        named = _subscription_named(kind, obj)
        if named is not None and team.billing_subscription_id not in (None, named):
            outcome = "ignored"  # about a subscription the team no longer uses: it must not end the current one
        elif not newer:
            outcome = "stale"
        else:
            _apply(team, kind, obj, now)
            team.billing_event_at = created
            outcome = "applied"
    session.add(
        BillingEvent(id=event["id"], type=kind, team_id=team.id if team else None, outcome=outcome, created_at=created)
    )
    session.flush()
    return outcome
