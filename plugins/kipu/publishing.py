"""Delivering one post intent to its platform, exactly once: ask first, check the limits, then publish.

The publish step and the API's manual retry (``POST /kipu/api/posts/{id}/publish``) both go through ``deliver``.
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.hooks.base import NeedsReconnect, PublishRequest, PublishResult, Rejected, TargetHook
from kipu.hooks.media import library_media
from kipu.specs.items import ContentItem, MediaRef
from kipu.specs.steps import PublishConfig
from kipu.store.accounts import flag_reconnect
from kipu.store.engine import session_scope
from kipu.store.models import Connection, Post, WorkflowRun, WorkflowStep
from kipu.store.posts import mark_awaiting, mark_failed, mark_published

log = logging.getLogger(__name__)


class LimitExceeded(Rejected):
    """The post breaks a platform limit; checked before any call, never retried."""


def remember_ref(post_id: uuid.UUID, ref: str) -> None:
    """Store the platform's handle on the intent at once, in its own transaction."""
    with session_scope() as s:
        post = s.get(Post, post_id, with_for_update=True)
        if post is not None:
            post.metadata_ = {**(post.metadata_ or {}), "publish_ref": ref}


def deliver(hook: TargetHook, request: PublishRequest, team_id: uuid.UUID | None = None) -> PublishResult:
    """The post as published: found (an earlier attempt landed) or published now, after the limits pass.

    The team's ``kipu-media:<id>`` items are resolved from its media library here, and only here may their storage
    paths be read; any other media is fetched through the egress guard."""
    try:
        post_id = uuid.UUID(request.idempotency_key)
    except ValueError:
        post_id = None
    if post_id is not None:
        hook.on_accepted = lambda ref: remember_ref(post_id, ref)
    with library_media(team_id, request.media) as media:
        request = request.model_copy(update={"media": media})
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
        if result is not None and result.awaiting:
            mark_awaiting(s, post, result.publish_ref)
            return
        if result is not None:
            mark_published(s, post, result.platform_post_id or "", result.url)
            return
        assert error is not None
        mark_failed(s, post, f"{type(error).__name__}: {error}")
        if isinstance(error, NeedsReconnect) and post.connection_id:
            conn = s.get(Connection, post.connection_id)
            if conn is not None:
                flag_reconnect(s, conn, str(error))


def caption_for(config: PublishConfig, platform: str, item: ContentItem, captions: dict[str, str]) -> str:
    """The caption a target gets: the step's custom one, the original, this platform's rewrite, else the latest
    rewrite (which the limit check holds to this platform's rules)."""
    if config.custom_caption is not None:
        return config.custom_caption
    if config.use_original_caption:
        return item.caption
    if platform in captions:
        return captions[platform]
    return next(reversed(captions.values()), item.caption)


def build_request(
    *,
    key: str,
    content_type: str,
    caption: str,
    config: PublishConfig,
    item: ContentItem | None,
    media_urls: list[str] | None = None,
    link: str | None = None,
    created_at: datetime | None = None,
    publish_ref: str | None = None,
) -> PublishRequest:
    """The one publish request builder. The media (with their types and alt text), the title and the link are the
    item's; the options are the step's config, read by the target platform's options model when it publishes."""
    if item is not None:
        media = list(item.media)
    else:  # an intent without its run (written by hand): its URLs, typed by their names
        media = [MediaRef(url=u, mime_type=mimetypes.guess_type(u)[0]) for u in media_urls or []]
    return PublishRequest(
        idempotency_key=key,
        content_type=content_type or "text",  # type: ignore[arg-type]
        caption=caption,
        title=config.title or (item.title if item else None),
        media=media,
        link=item.url if item is not None else link,
        options=config.model_dump(mode="json", exclude_none=True, exclude={"custom_caption"}),
        created_at=created_at,
        publish_ref=publish_ref,
        schedule_at=config.schedule_at,
    )


def request_for(session: Session, post: Post) -> PublishRequest:
    """What a stored intent stands for, the same for the first publish, a retry and the settling of a post in
    moderation: the intent's caption with its step's config and its run's item (``build_request``)."""
    step = session.get(WorkflowStep, post.step_id) if post.step_id else None
    run = session.get(WorkflowRun, post.workflow_run_id) if post.workflow_run_id else None
    item = ContentItem.model_validate(run.trigger_data) if run is not None and run.trigger_data else None
    meta = post.metadata_ or {}
    return build_request(
        key=str(post.id),
        content_type=post.content_type or "text",
        caption=post.caption or "",
        config=PublishConfig.model_validate(dict((step.config or {}).get("config") or {}) if step else {}),
        item=item,
        media_urls=list(post.media_urls or []),
        link=meta.get("source_url"),
        created_at=post.created_at,
        publish_ref=meta.get("publish_ref"),
    )


def _hook_and_request(post_id: uuid.UUID) -> tuple[Post, TargetHook, PublishRequest]:
    from kipu.platforms import target_hook

    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post is not None
        conn = s.get(Connection, post.connection_id) if post.connection_id else None
        if conn is None:
            raise NeedsReconnect("the post's connection no longer exists")
        s.expunge(post)
        return post, target_hook(conn), request_for(s, post)


def _complete_run(run_id: uuid.UUID | None) -> None:
    """A partially published run is complete once every target is."""
    if run_id is None:
        return
    with session_scope() as s:
        posts = s.query(Post).filter(Post.workflow_run_id == run_id).all()
        run = s.get(WorkflowRun, run_id)
        if run is not None and posts and all(p.status == "published" for p in posts):
            run.status, run.error_message = "completed", None


def retry_post(post_id: uuid.UUID) -> dict[str, Any]:
    """Publish (or confirm) one stored intent again, for its target only; returns its new state."""
    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post is not None
        if post.status == "published":
            return {"status": "published", "already": True}
    post, hook, request = _hook_and_request(post_id)
    try:
        result = deliver(hook, request, post.team_id)
    except Exception as exc:
        record_outcome(post_id, None, exc)
        raise
    record_outcome(post_id, result, None)
    if result.awaiting:
        return {"status": "awaiting_moderation", "already": False, "platform_post_id": None, "url": None}
    _complete_run(post.workflow_run_id)
    return {"status": "published", "already": False, "platform_post_id": result.platform_post_id, "url": result.url}


def settle_awaiting(limit: int = 500) -> dict[str, int]:
    """Ask the platform about every post awaiting its moderation; record the ones that became final."""
    with session_scope() as s:
        ids = list(
            s.scalars(
                select(Post.id).where(Post.status == "awaiting_moderation").order_by(Post.created_at).limit(limit)
            )
        )
    report = {"checked": 0, "published": 0, "failed": 0, "awaiting": 0, "errors": 0}
    for post_id in ids:
        report["checked"] += 1
        try:
            post, hook, request = _hook_and_request(post_id)
            result = hook.find_published(request)
        except Rejected as exc:  # the platform refused it in moderation: final, and the reason is kept
            record_outcome(post_id, None, exc)
            report["failed"] += 1
            continue
        except Exception as exc:  # the platform is unavailable now; the next run asks again
            log.warning("post %s: could not ask %s: %s", post_id, type(exc).__name__, exc)
            report["errors"] += 1
            continue
        if result is None or result.awaiting:
            report["awaiting"] += 1
            continue
        record_outcome(post_id, result, None)
        _complete_run(post.workflow_run_id)
        report["published"] += 1
    return report
