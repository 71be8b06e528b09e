"""``/api/webhooks/{platform}``: Meta's webhooks (Facebook Pages, Instagram, Threads), signature-verified, starting
runs through the same record-then-start path as polling. The signature authenticates the call, not a token.

``GET`` answers the subscription check (``hub.mode``, ``hub.verify_token``, ``hub.challenge``); ``POST`` checks
``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret) in constant time: an unsigned call is 401,
a wrongly signed one 403, and neither records anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import select

from kipu.specs.items import ContentItem
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Workflow

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)
META = Literal["facebook", "instagram", "threads"]
MAX_BODY = 1024 * 1024


def _app_setting(platform: str, what: str) -> str | None:
    """The app secret (``secret``) or verify token (``verify_token``): Airflow connection ``kipu_<platform>_app``
    (password / extra.verify_token), else ``KIPU_<PLATFORM>_APP_SECRET`` / ``KIPU_<PLATFORM>_VERIFY_TOKEN``."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(f"kipu_{platform}_app")
        value = conn.password if what == "secret" else (conn.extra_dejson or {}).get("verify_token")
        if value:
            return str(value)
    except Exception as exc:  # not configured in Airflow: the environment
        log.debug("no Airflow connection kipu_%s_app (%s); reading the environment", platform, type(exc).__name__)
    env = "APP_SECRET" if what == "secret" else "VERIFY_TOKEN"
    return os.environ.get(f"KIPU_{platform.upper()}_{env}")


@router.get("/{platform}", response_class=PlainTextResponse)
def verify_subscription(
    platform: META,
    mode: str = Query(alias="hub.mode"),
    token: str = Query(alias="hub.verify_token"),
    challenge: str = Query(alias="hub.challenge", max_length=1000),
) -> str:
    expected = _app_setting(platform, "verify_token")
    if mode != "subscribe" or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the verify token does not match")
    return challenge


def items_of(platform: str, payload: Any) -> list[tuple[str, ContentItem]]:
    """``(account id, item)`` for every new post in a Meta webhook payload (``feed`` adds; media for IG/Threads).

    A signed delivery is Meta's, but its shape is still checked piece by piece: an entry or change of an unexpected
    shape is skipped and logged, never a 500 (Meta would retry it for hours)."""
    out: list[tuple[str, ContentItem]] = []
    skipped = 0
    entries = payload.get("entry") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list) or not isinstance(entry.get("id"), str | int):
            skipped += 1
            continue
        account = str(entry["id"])[:200]
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                skipped += 1
                continue
            item = _item(platform, value)
            if item is None:
                skipped += value.get("verb", "add") == "add"
                continue
            out.append((account, item))
    if skipped:
        log.warning("%s webhook: skipped %d entries or changes of an unexpected shape", platform, skipped)
    return out


def _item(platform: str, value: dict[str, Any]) -> ContentItem | None:
    """The item one change announces, or None (not an added post, or a shape Kipu cannot read)."""
    post_id = value.get("post_id") or value.get("media_id") or value.get("id")
    if value.get("verb", "add") != "add" or not isinstance(post_id, str | int) or isinstance(post_id, bool):
        return None
    kind = {"photo": "image", "video": "video", "reel": "video"}.get(str(value.get("item", "")), "text")
    created = value.get("created_time")
    try:
        when = datetime.fromtimestamp(int(created), UTC) if str(created or "").isdigit() else None
    except (OverflowError, OSError, ValueError):
        when = None  # a time no calendar holds: the item still counts, without it
    link = value.get("link") or value.get("permalink")
    try:
        return ContentItem(
            platform=platform,
            platform_post_id=str(post_id),
            content_type=kind,  # type: ignore[arg-type]
            caption=str(value.get("message") or value.get("text") or ""),
            url=link if isinstance(link, str) else None,
            published_at=when,
        )
    except ValidationError:
        return None


def _watchers(session: Any, platform: str) -> dict[str, list[Any]]:
    """Account id -> the active webhook workflows watching it; read once per delivery, not per item."""
    accounts = {
        (c.team_id, ref): c.platform_user_id
        for c in session.scalars(select(Connection).where(Connection.platform == platform))
        for ref in (str(c.id), f"{platform}:{c.platform_user_id}")
    }
    out: dict[str, list[Any]] = {}
    for wf_id, team_id, cfg in session.execute(
        select(Workflow.id, Workflow.team_id, Workflow.trigger_config).where(Workflow.status == "active")
    ):
        account = (
            accounts.get((team_id, (cfg or {}).get("connection_id"))) if (cfg or {}).get("type") == "webhook" else None
        )
        if account is not None:
            out.setdefault(account, []).append(wf_id)
    return out


@router.post("/{platform}")
async def receive(platform: META, request: Request) -> dict[str, int]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"webhook bodies are limited to {MAX_BODY} bytes")
    signature = request.headers.get("x-hub-signature-256", "")
    if not signature.startswith("sha256="):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-Hub-Signature-256 is required")
    secret = _app_setting(platform, "secret")
    expected = "sha256=" + hmac.new((secret or "").encode(), body, hashlib.sha256).hexdigest()
    if not secret or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the signature does not match")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from None
    counts = {"recorded": 0, "duplicates": 0, "started": 0}
    with session_scope() as s:
        watchers = _watchers(s, platform)
    for account, item in items_of(platform, payload):
        if not watchers.get(account):
            continue
        record_and_start(watchers[account], item, counts)
    return counts


def record_and_start(workflow_ids: list[Any], item: ContentItem, counts: dict[str, int]) -> None:
    """Record the item for every watching workflow (once, whatever repeats), then start each new run."""
    from kipu.api.starter import AirflowStarter
    from kipu.ingest import record_item, start

    with session_scope() as s:
        recorded = [record_item(s, s.get(Workflow, wid), item, source="webhook") for wid in workflow_ids]
    for rec in recorded:
        counts["recorded" if rec.created else "duplicates"] += 1
        try:
            with session_scope() as s:
                counts["started"] += bool(start(AirflowStarter(), s, rec))
        except Exception as exc:  # recorded: kipu_poll's reconciler starts it
            log.warning("starting %s failed (%s); kipu_poll will start it", rec.workflow_run_id, type(exc).__name__)
