"""Delay targets in the workflow's time zone, correct across DST changes; everything stored in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kipu.schedule import delay_target
from kipu.specs.steps import DelayConfig


def cfg(**kw: object) -> DelayConfig:
    return DelayConfig.model_validate(kw)


def test_duration_is_absolute_time_even_across_dst() -> None:
    # 2026-03-29 01:00 UTC is when Europe/Berlin springs forward.
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert delay_target(cfg(duration_minutes=60), "Europe/Berlin", now) == now + timedelta(hours=1)


def test_until_time_later_today() -> None:
    now = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 07:00 in Berlin (CET, +1)
    assert delay_target(cfg(delay_until_time="09:00"), "Europe/Berlin", now) == datetime(2026, 11, 25, 8, tzinfo=UTC)


def test_until_time_already_passed_means_tomorrow() -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert delay_target(cfg(delay_until_time="09:00"), "Europe/Berlin", now) == datetime(2026, 11, 26, 8, tzinfo=UTC)


# Each case: the wall time asked for, in a zone, across a DST change; the expected UTC target.
DST_CASES = [
    # Berlin moves +1 -> +2 at 02:00 on 2026-03-29; 09:00 that day is 07:00 UTC.
    (
        "spring forward day",
        "Europe/Berlin",
        datetime(2026, 3, 28, 12, tzinfo=UTC),
        "09:00",
        datetime(2026, 3, 29, 7, tzinfo=UTC),
    ),
    # 02:30 does not exist that day; it becomes 03:30 CEST = 01:30 UTC.
    (
        "time in the spring gap moves forward",
        "Europe/Berlin",
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        "02:30",
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    ),
    # Berlin goes back +2 -> +1 at 03:00 on 2026-10-25; 09:00 that day is 08:00 UTC.
    (
        "autumn back day",
        "Europe/Berlin",
        datetime(2026, 10, 24, 12, tzinfo=UTC),
        "09:00",
        datetime(2026, 10, 25, 8, tzinfo=UTC),
    ),
    # 02:30 happens twice on 2026-10-25; the first is 02:30 CEST = 00:30 UTC.
    (
        "ambiguous autumn time is its first occurrence",
        "Europe/Berlin",
        datetime(2026, 10, 24, 22, tzinfo=UTC),
        "02:30",
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
    ),
    # New York springs forward on 2026-03-08: 09:00 EDT = 13:00 UTC (not 14:00).
    (
        "US spring forward",
        "America/New_York",
        datetime(2026, 3, 7, 20, tzinfo=UTC),
        "09:00",
        datetime(2026, 3, 8, 13, tzinfo=UTC),
    ),
]


@pytest.mark.parametrize("case,zone,now,at,expected", DST_CASES, ids=[c[0] for c in DST_CASES])
def test_until_time_across_dst(case: str, zone: str, now: datetime, at: str, expected: datetime) -> None:
    assert delay_target(cfg(delay_until_time=at), zone, now) == expected


@pytest.mark.parametrize(
    "day,expected",
    [
        ("wednesday", datetime(2026, 12, 1, 23, 0, tzinfo=UTC)),  # today's midnight has passed: next week
        ("thursday", datetime(2026, 11, 25, 23, 0, tzinfo=UTC)),
        ("monday", datetime(2026, 11, 29, 23, 0, tzinfo=UTC)),
    ],
)
def test_until_weekday_starts_at_local_midnight(day: str, expected: datetime) -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, 13:00 in Berlin
    assert delay_target(cfg(delay_until_day=day), "Europe/Berlin", now) == expected


def test_weekday_and_time_across_the_autumn_change() -> None:
    # From Friday 2026-10-23, "Monday 09:00" in Berlin is after the change: 08:00 UTC.
    now = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    target = delay_target(cfg(delay_until_day="monday", delay_until_time="09:00"), "Europe/Berlin", now)
    assert target == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        delay_target(cfg(duration_minutes=1), "UTC", datetime(2026, 1, 1))
