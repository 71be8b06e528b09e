"""Meta webhook deliveries as Meta sends them: a Page ``feed`` change, signed with the app secret
(``X-Hub-Signature-256``, HMAC-SHA256 of the body). Used by the webhook tests and ``bench/e2e.py``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time


def signed(body: bytes, secret: str) -> dict[str, str]:
    """The headers Meta sends with ``body``."""
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"}


def page_post(page: str, post_id: str, message: str, item: str = "status", created_time: int | None = None) -> bytes:
    """The body announcing one new post on ``page`` (now, unless ``created_time`` is given)."""
    when = int(time.time()) if created_time is None else created_time
    value = {"item": item, "verb": "add", "post_id": post_id, "message": message, "created_time": when}
    entry = {"id": page, "time": when, "changes": [{"field": "feed", "value": value}]}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


def page_delivery(page: str, post_id: str, message: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A signed delivery of one new post on ``page``: ``(body, headers)``."""
    body = page_post(page, post_id, message)
    return body, signed(body, secret)
