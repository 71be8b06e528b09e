"""YouTube's daily quota: units per call and uploads per day, counted before each call in a ledger that resets at
midnight Pacific Time (a connection's metadata by default, so every task and worker shares it)."""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from kipu.hooks.errors import NeedsReconnect, RateLimited

PACIFIC = ZoneInfo("America/Los_Angeles")  # quotas reset at midnight Pacific Time
# Units per call (developers.google.com/youtube/v3/determine_quota_cost). videos.insert has its own bucket of
# calls per day; projects still on the older single-bucket scheme set quota.insert_units (it was 1,600).
COSTS: Mapping[str, int] = {"channels.list": 1, "playlistItems.list": 1, "videos.list": 1}


def pacific_day(now: datetime | None = None) -> str:
    """The quota day (``YYYY-MM-DD`` in Pacific Time) that ``now`` falls in."""
    return (now or datetime.now(UTC)).astimezone(PACIFIC).date().isoformat()


def until_pacific_midnight(now: datetime | None = None) -> float:
    """Seconds until the next midnight Pacific Time, when YouTube resets daily quotas (DST-aware)."""
    now = (now or datetime.now(UTC)).astimezone(PACIFIC)
    reset = datetime.combine(now.date() + timedelta(days=1), clock(0), tzinfo=PACIFIC)
    return max(1.0, (reset - now).total_seconds())


def hours(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


@dataclass(frozen=True)
class QuotaPlan:
    """A project's daily allowance: ``units`` shared by most methods, ``inserts`` for videos.insert."""

    units_per_day: int = 10_000
    inserts_per_day: int = 100
    insert_units: int = 0

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> QuotaPlan:
        raw = metadata.get("quota") or {}
        return cls(**{k: int(v) for k, v in raw.items() if k in cls.__dataclass_fields__})

    def limits(self) -> dict[str, int]:
        return {"units": self.units_per_day, "inserts": self.inserts_per_day}

    def cost(self, op: str) -> dict[str, int]:
        if op == "videos.insert":
            return {"inserts": 1, "units": self.insert_units}
        return {"units": COSTS.get(op, 1)}


class QuotaSpent(RateLimited):
    """Kipu's own count says the call would pass the day's quota; nothing was sent."""


class QuotaLedger(ABC):
    """Quota used per project and Pacific day, by bucket. ``spend`` raises ``QuotaSpent`` instead of going over."""

    @abstractmethod
    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None: ...

    @abstractmethod
    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        """Record that YouTube said the bucket is empty (quotaExceeded), so later calls stop before sending."""

    @abstractmethod
    def used(self, project: str, day: str) -> dict[str, int]: ...


def _over(used: Mapping[str, int], cost: Mapping[str, int], limits: Mapping[str, int]) -> tuple[str, int] | None:
    for bucket, n in cost.items():
        if n and used.get(bucket, 0) + n > limits[bucket]:
            return bucket, used.get(bucket, 0)
    return None


class MemoryLedger(QuotaLedger):
    """In this process only: for credentials that are not stored (tests, one-off use)."""

    _used: ClassVar[dict[tuple[str, str, str], int]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def used(self, project: str, day: str) -> dict[str, int]:
        return {b: n for (p, d, b), n in self._used.items() if (p, d) == (project, day)}

    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None:
        with self._lock:
            over = _over(self.used(project, day), cost, limits)
            if over:
                raise _spent(over[0], over[1], limits[over[0]])
            for bucket, n in cost.items():
                self._used[(project, day, bucket)] = self._used.get((project, day, bucket), 0) + n

    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        with self._lock:
            key = (project, day, bucket)
            self._used[key] = max(self._used.get(key, 0), limit)

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._used.clear()


class ConnectionLedger(QuotaLedger):
    """Persisted in each YouTube connection's metadata (``youtube_quota``), so every task and worker sees it.

    A project's use is the sum over its YouTube connections; a spend locks the spending connection's row.
    """

    KEY = "youtube_quota"

    def __init__(self, connection_id: uuid.UUID) -> None:
        self.connection_id = connection_id

    def _totals(self, session: Any, project: str, day: str) -> dict[str, int]:
        from sqlalchemy import select

        from kipu.store.models import Connection

        totals: dict[str, int] = {}
        for meta in session.scalars(select(Connection.metadata_).where(Connection.platform == "youtube")):
            entry = (meta or {}).get(self.KEY) or {}
            if entry.get("project") == project and entry.get("day") == day:
                for bucket, n in (entry.get("used") or {}).items():
                    totals[bucket] = totals.get(bucket, 0) + int(n)
        return totals

    def _update(self, project: str, day: str, change: Any) -> None:
        from kipu.store.engine import session_scope
        from kipu.store.models import Connection

        with session_scope() as s:
            own = s.get(Connection, self.connection_id, with_for_update=True)
            if own is None:
                raise NeedsReconnect("the YouTube connection was deleted")
            entry = (own.metadata_ or {}).get(self.KEY) or {}
            mine = dict(entry.get("used") or {}) if (entry.get("project"), entry.get("day")) == (project, day) else {}
            change(mine, self._totals(s, project, day))
            # A new dict, so the JSON column is written (in-place changes are not tracked).
            own.metadata_ = {**(own.metadata_ or {}), self.KEY: {"project": project, "day": day, "used": mine}}

    def used(self, project: str, day: str) -> dict[str, int]:
        from kipu.store.engine import session_scope

        with session_scope() as s:
            return self._totals(s, project, day)

    def spend(self, project: str, day: str, cost: Mapping[str, int], limits: Mapping[str, int]) -> None:
        def change(mine: dict[str, int], totals: dict[str, int]) -> None:
            over = _over(totals, cost, limits)
            if over:
                raise _spent(over[0], over[1], limits[over[0]])
            for bucket, n in cost.items():
                mine[bucket] = mine.get(bucket, 0) + n

        self._update(project, day, change)

    def exhaust(self, project: str, day: str, bucket: str, limit: int) -> None:
        def change(mine: dict[str, int], totals: dict[str, int]) -> None:
            mine[bucket] = mine.get(bucket, 0) + max(0, limit - totals.get(bucket, 0))

        self._update(project, day, change)


def _spent(bucket: str, used: int, limit: int) -> QuotaSpent:
    wait = until_pacific_midnight()
    what = f"{limit} videos.insert calls" if bucket == "inserts" else f"{limit} units"
    return QuotaSpent(
        f"youtube: the project's daily quota of {what} is used up ({used} used); it resets at midnight "
        f"Pacific Time, in {hours(wait)}",
        wait,
    )


# -- options and snippet ----------------------------------------------------------------------------------------------
