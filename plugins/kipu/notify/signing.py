"""Outgoing webhook signatures: ``Kipu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t." + body>``, one
``v1`` per valid secret (two while a rotated secret is still honoured), as Stripe does. ``verify`` is the receiver's
side, for tests and for docs/notifications.md."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

HEADER = "Kipu-Signature"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header_value(secrets_: Iterable[str], body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={signature(s, t, body)}" for s in secrets_)])


def verify(secret: str, header: str, body: bytes, now: float | None = None, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether ``header`` carries a valid signature of ``body`` by ``secret``, made within ``tolerance`` seconds."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = signature(secret, t, body)
    return any(k.strip() == "v1" and hmac.compare_digest(v.strip(), expected) for k, _, v in parts)
