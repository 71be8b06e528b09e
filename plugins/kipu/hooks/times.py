"""Timestamps as platforms send them (ISO 8601 with ``Z``, ``+00:00`` or ``+0000``, or none), as aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime (one without an offset is UTC); None when absent or unreadable,
    so a platform's odd date never costs the item."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
