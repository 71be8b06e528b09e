"""Delay targets: a duration in absolute UTC time, or the next HH:MM / weekday in the workflow's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kipu.specs.common import WEEKDAYS
from kipu.specs.steps import DelayConfig


def _local_to_utc(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``tz``, as UTC.

    A wall time in the spring-forward gap moves forward by the gap (02:30 becomes 03:30); a wall time
    that occurs twice in autumn means its first occurrence.
    """
    # fold=0 (PEP 495) reads a gap time with the offset before the change, which moves it forward,
    # and an ambiguous time as its first occurrence.
    return datetime.combine(day.date(), at, tzinfo=tz).astimezone(UTC)


def delay_target(config: DelayConfig, timezone: str, now: datetime) -> datetime:
    """When a delay that starts at ``now`` (aware) ends, in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    if config.delay_until_time is None and config.delay_until_day is None:
        return now + timedelta(seconds=config.total_seconds)
    tz = ZoneInfo(timezone)
    hh, mm = (int(p) for p in (config.delay_until_time or "00:00").split(":"))
    at = time(hh, mm)
    local_now = now.astimezone(tz)
    for offset in range(0, 8):
        day = local_now + timedelta(days=offset)
        if config.delay_until_day is not None and WEEKDAYS[day.weekday()] != config.delay_until_day:
            continue
        candidate = _local_to_utc(day, at, tz)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a weekday recurs within 8 days")  # pragma: no cover
