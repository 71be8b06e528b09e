"""Plans and Stripe billing through Airflow's API server app, on PostgreSQL, with the ``stripe`` SDK pointed at a
local fake of Stripe's API and webhooks signed the way Stripe signs them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kipu.billing.plans import PlanLimitReached, effective_plan
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import BillingEvent, NotificationEvent, Team, Workflow
from kipu.store.workflows import save_workflow
from sqlalchemy import func, select

from tests.fakes.stripe_server import StripeServer, event, signed, subscription
from tests.helpers import demo_doc

API = "/kipu/api"
WHSEC = "whsec_test_kipu_billing"


@pytest.fixture
def stripe_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeServer]:
    with StripeServer() as fake:
        monkeypatch.setenv("STRIPE_SECRET_KEY", fake.state.api_key)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WHSEC)
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        monkeypatch.setenv("STRIPE_PRICE_PRO", "price_pro")
        monkeypatch.setenv("STRIPE_PRICE_BUSINESS", "price_business")
        yield fake


def team_row() -> Team:
    with session_scope() as s:
        return find_team(s, "demo")


def set_team(**values: Any) -> None:
    with session_scope() as s:
        team = find_team(s, "demo")
        for k, v in values.items():
            setattr(team, k, v)


def hook(api: Any, evt: dict[str, Any]) -> Any:
    payload, headers = signed(evt, WHSEC)
    return api.post(f"{API}/webhooks/stripe", content=payload, headers=headers)


def test_without_a_stripe_key_every_team_is_self_hosted_and_unlimited(api: Any, roles: dict) -> None:
    usage = api.get(f"{API}/teams/demo/usage", headers=roles["viewer"]).json()
    assert usage["effective_plan"] == "self_hosted" and usage["billing_enabled"] is False
    assert set(usage["limits"].values()) == {None}
    assert usage["usage"]["members"] == 3 and usage["usage"]["connections"] == 2
    off = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=roles["owner"])
    assert off.status_code == 409 and "self-hosted" in off.json()["detail"]


def test_the_free_plan_limits_are_enforced_with_402_naming_limit_and_use(
    api: Any, roles: dict, stripe_fake: StripeServer
) -> None:
    set_team(plan_limits={"active_workflows": 1})  # one place overrides a single value for this team
    first = api.post(f"{API}/workflows", json=demo_doc(slug="one"), headers=roles["member"])
    assert first.status_code == 201, first.text
    second = api.post(f"{API}/workflows", json=demo_doc(slug="two"), headers=roles["member"])
    assert second.status_code == 402
    body = second.json()
    assert body["limit"] == "active_workflows" and body["allowed"] == 1 and body["used"] == 1
    assert body["plan"] == "free" and "allows 1 active workflows and the team has 1" in body["detail"]
    paused = api.post(f"{API}/workflows", json=demo_doc(slug="two", status="paused"), headers=roles["member"])
    assert paused.status_code == 201  # a paused workflow costs nothing
    again = api.post(f"{API}/workflows/{paused.json()['id']}/activate", headers=roles["member"])
    assert again.status_code == 402 and again.json()["limit"] == "active_workflows"

    # free: 2 members, the team has 3 (seeded before billing); inviting one more is refused
    member = api.post(
        f"{API}/teams/demo/invitations", json={"email": "new@demo.test", "role": "viewer"}, headers=roles["owner"]
    )
    assert member.status_code == 402 and member.json()["used"] == 3 and member.json()["allowed"] == 2
    with session_scope() as s, pytest.raises(PlanLimitReached, match="allows 3 connected accounts and the team has"):
        team = find_team(s, "demo")
        upsert_connection(s, team, "feed", "a")  # 3rd connection: allowed
        s.flush()
        upsert_connection(s, team, "feed", "b")  # 4th: refused
    usage = api.get(f"{API}/teams/demo/usage", headers=roles["viewer"]).json()
    assert usage["effective_plan"] == "free" and usage["limits"]["active_workflows"] == 1
    assert usage["usage"]["active_workflows"] == 1 and usage["limits"]["posts_per_month"] == 100
    with session_scope() as s:
        kinds = {
            e.data["limit"]
            for e in s.scalars(select(NotificationEvent).where(NotificationEvent.kind == "plan.limit_reached"))
        }
    assert kinds == {"active workflows", "team members"}  # told once per limit per month
    refused = api.patch(f"{API}/teams/demo", json={"plan": "business"}, headers=roles["owner"])
    assert refused.status_code == 409 and "checkout" in refused.json()["detail"]


def test_checkout_portal_and_webhooks_change_the_plan_once_and_in_order(
    api: Any, roles: dict, stripe_fake: StripeServer
) -> None:
    made = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=roles["owner"])
    assert made.status_code == 200, made.text
    session = stripe_fake.state.sessions[made.json()["id"]]
    assert made.json()["url"] == session["url"] and session["price"] == "price_pro"
    team = team_row()
    assert session["customer"] == team.billing_customer_id and session["client_reference_id"] == str(team.id)
    assert stripe_fake.state.customers[team.billing_customer_id]["metadata"] == {"team_id": str(team.id)}
    assert session["subscription_metadata"] == {"team_id": str(team.id), "plan": "pro"}
    assert (
        api.post(
            f"{API}/teams/demo/billing/checkout",
            json={"plan": "pro"},
            headers=roles["member"],
        ).status_code
        == 403
    )

    done = stripe_fake.complete(made.json()["id"], created=1_000)
    assert hook(api, done).json() == {"received": True, "outcome": "applied"}
    assert hook(api, done).json()["outcome"] == "duplicate"  # Stripe redelivers: nothing changes twice
    team = team_row()
    assert team.plan == "pro" and team.billing_status == "active" and team.billing_subscription_id
    assert effective_plan(team) == "pro"

    sub = team.billing_subscription_id
    deleted = event(
        "customer.subscription.deleted", subscription(sub, team.billing_customer_id, "price_pro", "canceled"), 3_000
    )
    late = event(
        "customer.subscription.updated", subscription(sub, team.billing_customer_id, "price_business", "active"), 2_000
    )
    assert hook(api, deleted).json()["outcome"] == "applied"
    assert hook(api, late).json()["outcome"] == "stale"  # older than what the team reflects: ignored
    assert team_row().plan == "free" and team_row().billing_status == "canceled"

    portal = api.post(f"{API}/teams/demo/billing/portal", headers=roles["owner"])
    assert portal.status_code == 200 and portal.json()["url"].startswith(stripe_fake.url)
    assert stripe_fake.state.portals[0]["customer"] == team.billing_customer_id

    unknown = hook(api, event("customer.created", {"id": "cus_x", "object": "customer"}, 4_000))
    assert unknown.status_code == 200 and unknown.json()["outcome"] == "ignored"
    payload, headers = signed(done, "whsec_wrong")
    bad = api.post(f"{API}/webhooks/stripe", content=payload, headers=headers)
    assert bad.status_code == 400 and "signature" in bad.json()["detail"]
    unsigned = api.post(f"{API}/webhooks/stripe", content=payload, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    with session_scope() as s:
        outcomes = sorted(e.outcome for e in s.scalars(select(BillingEvent)))
    assert outcomes == ["applied", "applied", "ignored", "stale"]


def test_a_failed_payment_starts_a_grace_period_then_free_limits(
    api: Any, roles: dict, stripe_fake: StripeServer
) -> None:
    set_team(plan="business", billing_status="active", billing_customer_id="cus_grace", billing_subscription_id="sub_g")
    stripe_fake.state.customers["cus_grace"] = {"id": "cus_grace", "object": "customer"}
    failed = event("invoice.payment_failed", {"id": "in_1", "object": "invoice", "customer": "cus_grace"}, 5_000)
    assert hook(api, failed).json()["outcome"] == "applied"
    team = team_row()
    assert team.billing_status == "past_due" and team.plan == "business"
    assert team.billing_grace_until is not None
    assert timedelta(days=6) < team.billing_grace_until - datetime.now(UTC) <= timedelta(days=7)
    assert effective_plan(team) == "business"  # during the grace the plan holds
    assert effective_plan(team, team.billing_grace_until + timedelta(seconds=1)) == "free"
    paid = event("customer.subscription.updated", subscription("sub_g", "cus_grace", "price_business", "active"), 6_000)
    assert hook(api, paid).json()["outcome"] == "applied"
    assert team_row().billing_status == "active" and team_row().billing_grace_until is None


def test_stripe_refusals_are_named_not_5xx_crashes(
    api: Any, roles: dict, stripe_fake: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_PRICE_PRO", "price_gone")
    missing = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=roles["owner"])
    assert missing.status_code == 502 and "No such price: 'price_gone'" in missing.json()["detail"]
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_wrong")
    wrong = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "business"}, headers=roles["owner"])
    assert wrong.status_code == 502 and "Invalid API Key" in wrong.json()["detail"]
    assert "sk_test_wrong" not in wrong.text
    monkeypatch.delenv("STRIPE_PRICE_BUSINESS")
    unset = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "business"}, headers=roles["owner"])
    assert unset.status_code == 409 and "STRIPE_PRICE_BUSINESS is not set" in unset.json()["detail"]
    no_customer = api.post(f"{API}/teams/demo/billing/portal", headers=roles["owner"])
    assert no_customer.status_code == 409


def test_two_activations_at_once_cannot_both_take_the_last_active_workflow(
    api: Any, roles: dict, stripe_fake: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kipu.billing import plans

    with session_scope() as s:
        find_team(s, "demo").plan_limits = {"active_workflows": 1}
        ids = [save_workflow(s, demo_doc(slug=f"race-{i}", status="paused")).id for i in range(2)]
    barrier = threading.Barrier(2, timeout=3)
    real_used = plans.used

    def used(session: Any, team_id: Any, limit: str, now: Any = None) -> int:
        n = real_used(session, team_id, limit, now)
        if limit == "active_workflows":
            try:
                barrier.wait()  # both requests have counted before either commits
            except threading.BrokenBarrierError:
                pass  # one waited on a lock instead: fine
        return n

    monkeypatch.setattr(plans, "used", used)
    codes: list[int] = []

    def activate(wf_id: Any) -> None:
        codes.append(api.post(f"{API}/workflows/{wf_id}/activate", headers=roles["member"]).status_code)

    threads = [threading.Thread(target=activate, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with session_scope() as s:
        active = s.scalar(
            select(func.count()).where(Workflow.team_id == find_team(s, "demo").id, Workflow.status == "active")
        )
    assert sorted(codes) == [200, 402], codes
    assert active == 1


def test_a_paying_team_cannot_check_out_twice_and_an_old_subscription_never_ends_the_new_one(
    api: Any, roles: dict, stripe_fake: StripeServer
) -> None:
    # Two checkouts started in two tabs before either is paid: both complete, so two live subscriptions.
    pro = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=roles["owner"])
    business = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "business"}, headers=roles["owner"])
    assert pro.status_code == business.status_code == 200
    assert hook(api, stripe_fake.complete(pro.json()["id"], created=1_000)).json()["outcome"] == "applied"
    old_sub = team_row().billing_subscription_id
    assert hook(api, stripe_fake.complete(business.json()["id"], created=2_000)).json()["outcome"] == "applied"
    team = team_row()
    assert team.plan == "business" and team.billing_subscription_id != old_sub  # the newer checkout's
    # Cancelling the old one in the portal, or its failed invoice, must not take the paid business plan away.
    old = subscription(old_sub, team.billing_customer_id, "price_pro", "canceled", str(team.id))
    assert hook(api, event("customer.subscription.deleted", old, 3_000)).json()["outcome"] == "ignored"
    invoice = {"id": "in_old", "customer": team.billing_customer_id, "subscription": old_sub}
    assert hook(api, event("invoice.payment_failed", invoice, 3_100)).json()["outcome"] == "ignored"
    team = team_row()
    assert (team.plan, team.billing_status) == ("business", "active")
    # Now paying: a third checkout is refused, and the portal is the way to change plans.
    third = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=roles["owner"])
    assert third.status_code == 409 and "billing portal" in third.json()["detail"]


def test_an_unpaid_checkout_does_not_grant_the_paid_plan(api: Any, roles: dict, stripe_fake: StripeServer) -> None:
    """A delayed payment method completes the Checkout Session with payment_status "unpaid"; the plan must wait for
    the payment (async_payment_succeeded / the subscription becoming active)."""
    made = api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "business"}, headers=roles["owner"])
    done = stripe_fake.complete(made.json()["id"], created=1_000)
    done["data"]["object"]["payment_status"] = "unpaid"
    hook(api, done)
    assert team_row().plan != "business" and team_row().billing_subscription_id is not None
    paid = event(
        "checkout.session.async_payment_succeeded", {**done["data"]["object"], "payment_status": "paid"}, 2_000
    )
    assert hook(api, paid).json()["outcome"] == "applied"
    assert (team_row().plan, team_row().billing_status) == ("business", "active")


def test_checkout_return_urls_stay_on_kipu(api: Any, roles: dict, stripe_fake: StripeServer) -> None:
    """success_url / cancel_url (and the portal's return_url) take any http(s) host: a checkout.stripe.com link that
    lands on any site."""
    out = api.post(
        f"{API}/teams/demo/billing/checkout",
        json={"plan": "pro", "success_url": "https://evil.example/login", "cancel_url": "http://evil.example/"},
        headers=roles["owner"],
    )
    assert out.status_code == 422, out.text
    assert {d["loc"][-1] for d in out.json()["detail"]} == {"success_url", "cancel_url"}
    assert "must be a page of this Kipu" in out.text
    ours = api.post(
        f"{API}/teams/demo/billing/checkout",
        json={"plan": "pro", "success_url": "http://localhost:8080/kipu/ui/workflows?upgraded=1"},
        headers=roles["owner"],
    )
    assert ours.status_code == 200, ours.text
    portal = api.post(
        f"{API}/teams/demo/billing/portal", json={"return_url": "https://evil.example/"}, headers=roles["owner"]
    )
    assert portal.status_code == 422, portal.text
