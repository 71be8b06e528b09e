"""Which fetched items are new for one workflow, and where its cursor moves; pure, so it is easy to test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kipu.specs.items import ContentItem
from kipu.specs.triggers import PollTrigger


@dataclass(frozen=True)
class Cursor:
    last_post_id: str | None = None
    last_checked_at: datetime | None = None
    polling_since: datetime | None = None

    @classmethod
    def of(cls, trigger: PollTrigger) -> Cursor:
        return cls(trigger.last_post_id, trigger.last_checked_at, trigger.polling_since)

    def as_config(self) -> dict[str, Any]:
        """The cursor's keys in ``workflows.trigger_config``."""
        return {
            "last_post_id": self.last_post_id,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "polling_since": self.polling_since.isoformat() if self.polling_since else None,
        }


def select_new(
    items: list[ContentItem], cursor: Cursor, now: datetime, backfill: str = "none", backfill_count: int = 0
) -> tuple[list[ContentItem], Cursor]:
    """New items (oldest first) and the next cursor. ``items`` is the source's recent posts, oldest first.

    The first poll (no ``polling_since``) replays nothing unless ``backfill='last_n'``. Afterwards an item is new
    if it comes after ``last_post_id`` and was not published before polling began, so an old post that is edited
    (and moves to the top of a feed) is not new. Items already recorded are excluded later by the unique key.
    """
    newest = items[-1].platform_post_id if items else cursor.last_post_id
    if cursor.polling_since is None:
        replay = items[-backfill_count:] if backfill == "last_n" and backfill_count > 0 else []
        return replay, Cursor(newest, now, now)
    ids = [i.platform_post_id for i in items]
    since = cursor.polling_since
    if cursor.last_post_id in ids:
        after = items[ids.index(cursor.last_post_id) + 1 :]
        new = [i for i in after if i.published_at is None or i.published_at > since]
    else:  # the cursor post rolled off or was deleted: only dated posts from after polling began can be new
        new = [i for i in items if i.published_at is not None and i.published_at > since]
    return new, Cursor(newest, now, since)
