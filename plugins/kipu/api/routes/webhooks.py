"""``/api/webhooks/{platform}``: every platform's webhook, dispatched to the handler its package declares
(``Platform.webhook``): Meta's signed deliveries (Facebook Pages, Instagram, Threads) and YouTube's WebSub. The
signature authenticates a call, not a token. What a delivery announces enters through the same record-then-start
path as a polled item."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from kipu import platforms
from kipu.api.errors import unprocessable
from kipu.webhooks import Webhook, WebhookRefused, enter

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
WebhookPlatform = Literal[platforms.names_with_webhooks()]  # type: ignore[valid-type]


def _handler(platform: str) -> Webhook:
    return platforms.load(platforms.get(platform).webhook or "")  # type: ignore[no-any-return]


def _refused(exc: WebhookRefused) -> HTTPException:
    if exc.status == 422:  # FastAPI's validation shape, as the schema says
        return unprocessable(str(exc), ("query",))
    return HTTPException(exc.status, str(exc))


@router.get("/{platform}", response_class=PlainTextResponse)
def verify_subscription(platform: WebhookPlatform, request: Request) -> str:
    """The platform's subscription check: the challenge echoed when the verify token (or topic) checks out."""
    try:
        return _handler(platform).verify(request.query_params)
    except WebhookRefused as exc:
        raise _refused(exc) from None


@router.post("/{platform}")
async def receive(platform: WebhookPlatform, request: Request) -> dict[str, Any]:
    """A delivery: its signature checked in constant time (unsigned 401, wrong 403); what it announces is recorded
    once and started for every workflow watching the account. Counts, never content."""
    body = await request.body()  # bounded at the door (api/guard.py) once the signature header was seen
    handler = _handler(platform)
    try:
        delivery = handler.receive(request.headers, body)
    except WebhookRefused as exc:
        raise _refused(exc) from None
    return await run_in_threadpool(enter, platform, delivery)
