"""Meta's webhooks (Facebook Pages, Instagram, Threads): the subscription check and signed deliveries.

``GET`` answers ``hub.mode=subscribe`` with ``hub.challenge`` when ``hub.verify_token`` matches; ``POST`` needs
``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret), compared in constant time. A signed
delivery is Meta's, but its shape is still checked piece by piece: an entry or change of an unexpected shape is
skipped and logged, never a 500 (Meta would retry it for hours).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kipu.specs.items import ContentItem
from kipu.webhooks import Delivery, WebhookRefused, app_setting, check_signature, same_token

log = logging.getLogger(__name__)
KINDS = {"photo": "image", "video": "video", "reel": "video"}


class MetaWebhook:
    def __init__(self, platform: str) -> None:
        self.platform = platform

    def verify(self, query: Mapping[str, str]) -> str:
        challenge = query.get("hub.challenge", "")
        expected = app_setting(self.platform, "verify_token")
        if query.get("hub.mode") != "subscribe" or not same_token(query.get("hub.verify_token"), expected):
            raise WebhookRefused(403, "the verify token does not match")
        if len(challenge) > 1000:
            raise WebhookRefused(422, "hub.challenge is longer than 1000 characters")
        return challenge

    def receive(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        header = headers.get("x-hub-signature-256", "")
        if not header.startswith("sha256="):
            raise WebhookRefused(401, "X-Hub-Signature-256 is required")
        check_signature(header, body, app_setting(self.platform, "secret"), "X-Hub-Signature-256")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookRefused(400, "the body is not JSON") from None
        return Delivery(items_of(self.platform, payload))


def items_of(platform: str, payload: Any) -> list[tuple[str, ContentItem]]:
    """``(account id, item)`` for every new post in a payload (``feed`` adds; media for Instagram and Threads)."""
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
            content_type=KINDS.get(str(value.get("item", "")), "text"),  # type: ignore[arg-type]
            caption=str(value.get("message") or value.get("text") or ""),
            url=link if isinstance(link, str) else None,
            published_at=when,
        )
    except ValidationError:
        return None


FACEBOOK = MetaWebhook("facebook")
INSTAGRAM = MetaWebhook("instagram")
THREADS = MetaWebhook("threads")
