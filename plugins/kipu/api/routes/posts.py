"""``/api/posts`` and ``/api/teams``: post history with filters and cursor pagination; the caller's teams."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from functools import lru_cache

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy import Select, and_, bindparam, or_, select

from kipu.api.auth import CallerDep
from kipu.api.errors import unprocessable
from kipu.specs.common import UtcQueryDateTime, to_utc
from kipu.store.engine import read_all, session_scope
from kipu.store.models import Post, Team, WorkflowRun

router = APIRouter(tags=["posts"])


class PostOut(BaseModel):
    id: uuid.UUID
    team: str | None
    workflow_id: uuid.UUID | None
    workflow_run_id: uuid.UUID | None
    connection_id: uuid.UUID | None
    platform: str
    status: str | None
    caption: str | None
    platform_post_id: str | None
    url: str | None
    error: str | None
    created_at: datetime
    published_at: datetime | None


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


def _cursor(created: datetime, post_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{post_id}".encode()).decode()


def _uncursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor holds; anything Kipu did not write (no time zone, out of range) is a 422."""
    try:
        when, post_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
        return to_utc(parsed), uuid.UUID(post_id)
    except (ValueError, UnicodeDecodeError):
        raise unprocessable("invalid cursor: pass next_cursor as the API returned it", ("query", "cursor")) from None


@router.get("/posts", response_model=PostPage)
async def list_posts(
    caller: CallerDep,
    team: str | None = None,
    status_: str | None = Query(None, alias="status"),
    platform: str | None = None,
    workflow_id: uuid.UUID | None = None,
    since: UtcQueryDateTime | None = None,
    until: UtcQueryDateTime | None = None,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> PostPage:
    """Newest first. ``next_cursor`` continues where the page ended, stable under concurrent inserts."""
    teams = [await run_in_threadpool(caller.team, team, "viewer")] if team else caller.team_ids
    params: dict[str, object] = {
        "teams": teams,
        "status": status_,
        "platform": platform,
        "workflow_id": workflow_id,
        "since": since,
        "until": until,
        "limit": limit + 1,
    }
    if cursor:
        params["when"], params["last"] = _uncursor(cursor)
    query = _list_query(frozenset(k for k, v in params.items() if v is not None and k != "limit"))
    # On the event loop with an asyncio driver: no thread-pool hop and no GIL hand-offs between request threads.
    rows = await read_all(query, params)
    more = len(rows) > limit
    rows = rows[:limit]
    page = {
        "items": [dict(zip(LIST_FIELDS, row, strict=True)) for row in rows],
        "next_cursor": _cursor(rows[-1][11], rows[-1][0]) if more else None,
    }
    # Serialized in Rust by pydantic-core (UUIDs and datetimes as PostOut's would be), with no model pass.
    return Response(to_json(page), media_type="application/json")  # type: ignore[return-value]


# The columns of _list_query, in order, as PostOut names them.
LIST_FIELDS = (
    "id",
    "team",
    "workflow_id",
    "workflow_run_id",
    "connection_id",
    "platform",
    "status",
    "caption",
    "platform_post_id",
    "url",
    "error",
    "created_at",
    "published_at",
)


@lru_cache(maxsize=128)
def _list_query(filters: frozenset[str]) -> Select:
    """The list statement for one combination of filters, built once: values are bound at execution."""
    # Core columns, not ORM entities, and no second validation pass: this is the API's hottest read.
    p, t, r = Post.__table__, Team.__table__, WorkflowRun.__table__
    cols = (
        p.c.id,
        t.c.slug,
        r.c.workflow_id,
        p.c.workflow_run_id,
        p.c.connection_id,
        p.c.platform,
        p.c.status,
        p.c.caption,
        p.c.platform_post_id,
        p.c.platform_url,
        p.c.error_message,
        p.c.created_at,
        p.c.published_at,
    )
    query = (
        select(*cols)
        .select_from(p.join(t, t.c.id == p.c.team_id).outerjoin(r, r.c.id == p.c.workflow_run_id))
        .where(p.c.team_id.in_(bindparam("teams", expanding=True)))
    )
    if "status" in filters:
        query = query.where(p.c.status == bindparam("status"))
    if "platform" in filters:
        query = query.where(p.c.platform == bindparam("platform"))
    if "workflow_id" in filters:
        query = query.where(r.c.workflow_id == bindparam("workflow_id"))
    if "since" in filters:
        query = query.where(p.c.created_at >= bindparam("since"))
    if "until" in filters:
        query = query.where(p.c.created_at < bindparam("until"))
    if "when" in filters:
        when, last = bindparam("when"), bindparam("last")
        query = query.where(or_(p.c.created_at < when, and_(p.c.created_at == when, p.c.id < last)))
    return query.order_by(p.c.created_at.desc(), p.c.id.desc()).limit(bindparam("limit"))


def _out(p: Post, team: str | None, workflow_id: uuid.UUID | None) -> PostOut:
    return PostOut(
        id=p.id,
        team=team,
        workflow_id=workflow_id,
        workflow_run_id=p.workflow_run_id,
        connection_id=p.connection_id,
        platform=p.platform,
        status=p.status,
        caption=p.caption,
        platform_post_id=p.platform_post_id,
        url=p.platform_url,
        error=p.error_message,
        created_at=p.created_at,
        published_at=p.published_at,
    )


@router.get("/posts/{post_id}", response_model=PostOut)
def get_post(post_id: uuid.UUID, caller: CallerDep) -> PostOut:
    with session_scope() as s:
        row = s.execute(
            select(Post, Team.slug, WorkflowRun.workflow_id)
            .join(Team, Team.id == Post.team_id, isouter=True)
            .outerjoin(WorkflowRun, WorkflowRun.id == Post.workflow_run_id)
            .where(Post.id == post_id)
        ).first()
        team_id = row[0].team_id if row else None
        caller.require(team_id, "viewer", f"post {post_id}")
        assert row is not None
        return _out(*row)


class RetryOut(BaseModel):
    post: PostOut
    already_published: bool


@router.post("/posts/{post_id}/publish", response_model=RetryOut)
def publish_post(post_id: uuid.UUID, caller: CallerDep) -> RetryOut:
    """Publish one target again (or confirm it landed): only this post, never the run's other targets."""
    from kipu.hooks.base import PlatformError, Rejected, Transient
    from kipu.publishing import retry_post

    with session_scope() as s:
        post = s.get(Post, post_id)
        team_id = post.team_id if post else None
    caller.require(team_id, "member", f"post {post_id}")
    try:
        outcome = retry_post(post_id)
    except Rejected as exc:  # the platform (or a limit) refused it: the post keeps the reason
        raise unprocessable(str(exc), ("path", "post_id")) from None
    except Transient as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except PlatformError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return RetryOut(post=get_post(post_id, caller), already_published=bool(outcome.get("already")))
