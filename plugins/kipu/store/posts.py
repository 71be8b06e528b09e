"""Publish intents: a ``posts`` row is written before the platform is called and completed after."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kipu.store.models import Post
from kipu.store.types import utcnow


def claim_intent(
    session: Session,
    *,
    team_id: uuid.UUID | None,
    run_id: uuid.UUID,
    step_id: uuid.UUID,
    connection_id: uuid.UUID,
    platform: str,
    content_type: str,
    caption: str,
    media_urls: list[str],
    metadata: dict[str, Any] | None = None,
) -> Post:
    """The intent row of this (run, step, target), created in state ``publishing`` if absent."""
    key = (Post.workflow_run_id == run_id, Post.step_id == step_id, Post.connection_id == connection_id)
    post = session.scalar(select(Post).where(*key))
    if post is None:
        post = Post(
            id=uuid.uuid4(),
            team_id=team_id,
            workflow_run_id=run_id,
            step_id=step_id,
            connection_id=connection_id,
            platform=platform,
            content_type=content_type,
            caption=caption,
            media_urls=media_urls,
            status="publishing",
            metadata_=metadata or {},
        )
        try:
            with session.begin_nested():
                session.add(post)
        except IntegrityError:
            post = session.scalars(select(Post).where(*key)).one()
    if post.status != "published":
        post.status = "publishing"
        post.caption = caption
        post.attempts = (post.attempts or 0) + 1
    session.flush()
    return post


def mark_published(session: Session, post: Post, platform_post_id: str, url: str | None) -> None:
    post.status = "published"
    post.platform_post_id = platform_post_id
    post.platform_url = url
    post.published_at = post.published_at or utcnow()
    post.error_message = None
    session.flush()


def mark_awaiting(session: Session, post: Post, publish_ref: str | None) -> None:
    """Accepted by the platform, final after its moderation; ``publish_ref`` is how to ask about it later."""
    post.status = "awaiting_moderation"
    post.metadata_ = {**(post.metadata_ or {}), "publish_ref": publish_ref}
    post.error_message = None
    session.flush()


def mark_failed(session: Session, post: Post, error: str) -> None:
    post.status = "failed"
    post.error_message = error[:4000]
    session.flush()


def posts_for_run(session: Session, run_id: uuid.UUID) -> list[Post]:
    return list(session.scalars(select(Post).where(Post.workflow_run_id == run_id).order_by(Post.created_at)))
