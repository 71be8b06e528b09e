"""Delivering one post intent to its platform, exactly once: ask first, check the limits, then publish.

The publish step and the API's manual retry (``POST /kipu/api/posts/{id}/publish``) both go through ``deliver``.
"""

from __future__ import annotations

import mimetypes
import uuid
from typing import Any

from kipu.hooks.base import NeedsReconnect, PublishRequest, PublishResult, Rejected, TargetHook
from kipu.specs.items import MediaRef
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Post, WorkflowRun, WorkflowStep
from kipu.store.posts import mark_failed, mark_published


class LimitExceeded(Rejected):
    """The post breaks a platform limit; checked before any call, never retried."""


def deliver(hook: TargetHook, request: PublishRequest) -> PublishResult:
    """The post as published: found (an earlier attempt landed) or published now, after the limits pass."""
    existing = hook.find_published(request)
    if existing is not None:
        return existing
    problems = hook.check(request)
    if problems:
        raise LimitExceeded("; ".join(problems))
    return hook.publish(request)


def record_outcome(post_id: uuid.UUID, result: PublishResult | None, error: Exception | None) -> None:
    """Complete the intent; a ``NeedsReconnect`` also flags the connection for the user."""
    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post is not None
        if result is not None:
            mark_published(s, post, result.platform_post_id, result.url)
            return
        assert error is not None
        mark_failed(s, post, f"{type(error).__name__}: {error}")
        if isinstance(error, NeedsReconnect) and post.connection_id:
            conn = s.get(Connection, post.connection_id)
            if conn is not None:
                conn.status, conn.last_error = "needs_reconnect", str(error)[:500]


def retry_post(post_id: uuid.UUID) -> dict[str, Any]:
    """Publish (or confirm) one stored intent again, for its target only; returns its new state."""
    from kipu.hooks.registry import target_hook

    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post is not None
        if post.status == "published":
            return {"status": "published", "already": True}
        conn = s.get(Connection, post.connection_id) if post.connection_id else None
        if conn is None:
            raise NeedsReconnect("the post's connection no longer exists")
        hook = target_hook(conn)
        step = s.get(WorkflowStep, post.step_id) if post.step_id else None
        meta = post.metadata_ or {}
        request = PublishRequest(
            idempotency_key=str(post.id),
            content_type=post.content_type or "text",  # type: ignore[arg-type]
            caption=post.caption or "",
            media=[MediaRef(url=u, mime_type=mimetypes.guess_type(u)[0]) for u in post.media_urls or []],
            link=meta.get("source_url"),
            options=dict((step.config or {}).get("config") or {}) if step else {},
            created_at=post.created_at,
        )
        run_id = post.workflow_run_id
    try:
        result = deliver(hook, request)
    except Exception as exc:
        record_outcome(post_id, None, exc)
        raise
    record_outcome(post_id, result, None)
    if run_id is not None:  # a partially published run is complete once every target is
        with session_scope() as s:
            posts = s.query(Post).filter(Post.workflow_run_id == run_id).all()
            run = s.get(WorkflowRun, run_id)
            if run is not None and posts and all(p.status == "published" for p in posts):
                run.status, run.error_message = "completed", None
    return {"status": "published", "already": False, "platform_post_id": result.platform_post_id, "url": result.url}
