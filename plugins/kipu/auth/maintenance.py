"""Daily connection care: refresh tokens that expire soon, flag the ones that need the user, report them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from kipu.auth.tokens import expiring
from kipu.hooks.base import NeedsReconnect, PlatformError
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Team

log = logging.getLogger(__name__)


def refresh_expiring(within: timedelta = timedelta(hours=48), now: datetime | None = None) -> dict[str, Any]:
    """Refresh every stored token that expires within ``within``; counts only, never tokens."""
    from kipu.platforms import account_hook, has_tokens

    now = now or datetime.now(UTC)
    report: dict[str, Any] = {"checked": 0, "refreshed": 0, "needs_reconnect": 0, "failed": 0, "errors": []}
    for conn_id in expiring(now, within):
        report["checked"] += 1
        with session_scope() as s:
            conn = s.get(Connection, conn_id)
            if conn is None or not has_tokens(conn.platform):
                continue
            hook, label = account_hook(conn), f"{conn.platform}:{conn.platform_username or conn.platform_user_id}"
        try:
            hook.refresh()
            report["refreshed"] += 1
        except NeedsReconnect as exc:
            report["needs_reconnect"] += 1
            report["errors"].append(f"{label}: {exc}")
        except PlatformError as exc:  # the platform is down today: tomorrow's run tries again
            report["failed"] += 1
            report["errors"].append(f"{label}: {exc}")
            log.warning("refreshing %s failed: %s", label, exc)
    return report


def needing_reconnect() -> list[dict[str, Any]]:
    """Connections the user must re-authorise, with why; what the UI and the API show."""
    with session_scope() as s:
        rows = s.execute(
            select(Connection, Team.slug)
            .join(Team, Team.id == Connection.team_id, isouter=True)
            .where(Connection.status == "needs_reconnect")
            .order_by(Team.slug, Connection.platform)
        )
        return [
            {
                "connection_id": str(c.id),
                "team": slug,
                "platform": c.platform,
                "account": c.platform_username or c.platform_user_id,
                "reason": c.last_error,
            }
            for c, slug in rows
        ]
