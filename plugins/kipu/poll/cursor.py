"""A poll workflow's cursor: which fetched items are new and where the cursor moves (pure, so it is easy to test),
and its home, the ``poll_cursors`` table (runtime state, apart from the workflow's configuration)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kipu.specs.items import ContentItem
from kipu.store.models import PollCursor


@dataclass(frozen=True)
class Cursor:
    last_post_id: str | None = None
    last_checked_at: datetime | None = None
    polling_since: datetime | None = None


def load(session: Session, workflow_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Cursor]:
    """The cursors of these workflows (a workflow never polled has none)."""
    ids = list(workflow_ids)
    if not ids:
        return {}
    c = PollCursor.__table__
    rows = session.execute(select(c).where(c.c.workflow_id.in_(ids)))
    return {r.workflow_id: Cursor(r.last_post_id, r.last_checked_at, r.polling_since) for r in rows}


def save(session: Session, cursors: dict[uuid.UUID, Cursor]) -> None:
    """Write cursors in the caller's transaction: one upsert for all of them."""
    if not cursors:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(PollCursor.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workflow_id"],
        set_={k: stmt.excluded[k] for k in ("last_post_id", "last_checked_at", "polling_since")},
    )
    session.execute(stmt, [{"workflow_id": wf_id, **asdict(cur)} for wf_id, cur in cursors.items()])


def forget(session: Session, workflow_id: uuid.UUID) -> None:
    """Start from now at the next poll (a new source, or a workflow activated again): history is never replayed."""
    session.execute(delete(PollCursor).where(PollCursor.workflow_id == workflow_id))


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
