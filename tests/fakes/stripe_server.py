"""A fake of the Stripe API contract that Kipu uses, for the ``stripe`` SDK pointed at it (``STRIPE_API_BASE``):
customers, Checkout Sessions (subscription mode) and Customer Portal sessions, with Stripe's error shapes (401 for a
bad key, 400 ``resource_missing`` naming the param). ``event`` and ``sign`` make webhook events signed the way
Stripe signs them (``Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.payload")``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.serve import FakeService


@dataclass
class StripeState:
    api_key: str = "sk_test_kipu"
    prices: dict[str, str] = field(default_factory=lambda: {"price_pro": "pro", "price_business": "business"})
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portals: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        body["param"] = param
    if code:
        body["code"] = code
    return JSONResponse({"error": body}, status_code=status)


def _nested(form: dict[str, str], prefix: str) -> dict[str, str]:
    """``metadata[team_id]=…`` → ``{"team_id": …}``."""
    return {k[len(prefix) + 1 : -1]: v for k, v in form.items() if k.startswith(prefix + "[") and k.count("[") == 1}


def build_app(st: StripeState, base: str) -> FastAPI:
    app = FastAPI()

    async def _form(request: Request) -> tuple[dict[str, str] | None, JSONResponse | None]:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {st.api_key}":
            return None, _error(401, "Invalid API Key provided: sk_test_****")
        return {k: str(v) for k, v in (await request.form()).items()}, None

    @app.post("/v1/customers")
    async def customers(request: Request) -> JSONResponse:
        form, error = await _form(request)
        if error:
            return error
        assert form is not None
        cid = "cus_" + secrets.token_hex(7)
        st.customers[cid] = {
            "id": cid,
            "object": "customer",
            "name": form.get("name"),
            "email": form.get("email"),
            "metadata": _nested(form, "metadata"),
        }
        return JSONResponse(st.customers[cid])

    @app.post("/v1/checkout/sessions")
    async def checkout(request: Request) -> JSONResponse:
        form, error = await _form(request)
        if error:
            return error
        assert form is not None
        if form.get("mode") != "subscription":
            return _error(400, "Invalid mode", "mode")
        for required in ("success_url", "line_items[0][price]"):
            if not form.get(required):
                return _error(400, f"Missing required param: {required}.", required, "parameter_missing")
        price = form["line_items[0][price]"]
        if price not in st.prices:
            return _error(400, f"No such price: '{price}'", "line_items[0][price]", "resource_missing")
        customer = form.get("customer")
        if customer and customer not in st.customers:
            return _error(400, f"No such customer: '{customer}'", "customer", "resource_missing")
        sid = "cs_test_" + secrets.token_hex(12)
        st.sessions[sid] = {
            "id": sid,
            "object": "checkout.session",
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": form.get("client_reference_id"),
            "metadata": _nested(form, "metadata"),
            "subscription_metadata": {
                k[len("subscription_data[metadata][") : -1]: v
                for k, v in form.items()
                if k.startswith("subscription_data[metadata][")
            },
            "price": price,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"{base}/c/pay/{sid}",
            "status": "open",
        }
        return JSONResponse(st.sessions[sid])

    @app.post("/v1/billing_portal/sessions")
    async def portal(request: Request) -> JSONResponse:
        form, error = await _form(request)
        if error:
            return error
        assert form is not None
        if form.get("customer") not in st.customers:
            return _error(400, f"No such customer: '{form.get('customer')}'", "customer", "resource_missing")
        made = {
            "id": "bps_" + secrets.token_hex(8),
            "object": "billing_portal.session",
            "customer": form["customer"],
            "return_url": form.get("return_url"),
            "url": f"{base}/p/session/{secrets.token_hex(8)}",
        }
        st.portals.append(made)
        return JSONResponse(made)

    return app


class StripeServer(FakeService):
    state: StripeState

    def __init__(self, **state: Any) -> None:
        super().__init__(StripeState(**state), build_app)

    def complete(self, session_id: str, created: int | None = None) -> dict[str, Any]:
        """The ``checkout.session.completed`` event Stripe sends once the customer paid."""
        s = self.state.sessions[session_id]
        sub = "sub_" + secrets.token_hex(7)
        obj = {
            "id": session_id,
            "object": "checkout.session",
            "customer": s["customer"],
            "subscription": sub,
            "client_reference_id": s["client_reference_id"],
            "metadata": s["metadata"],
            "payment_status": "paid",
            "status": "complete",
        }
        return event("checkout.session.completed", obj, created)


def event(kind: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "type": kind,
    }


def subscription(sub_id: str, customer: str, price: str, status: str, team_id: str | None = None) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": {"team_id": team_id} if team_id else {},
        "items": {
            "object": "list",
            "data": [{"id": "si_1", "price": {"id": price}, "current_period_end": int(time.time()) + 30 * 86400}],
        },
    }


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def signed(evt: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(evt).encode()
    return payload, {"Stripe-Signature": sign(payload, secret), "Content-Type": "application/json"}
