"""Which hook serves which platform, built from a stored connection (metadata and decrypted tokens)."""

from __future__ import annotations

import importlib
from pathlib import Path

from kipu.config import kipu_home
from kipu.hooks.base import Rejected, SourceHook, TargetHook
from kipu.hooks.platform import PlatformHook
from kipu.store.models import Connection


class PlatformNotSupported(Rejected):
    """Kipu has no hook for this platform yet."""


# Social platforms: one hook class each, imported when first needed.
PLATFORM_HOOKS: dict[str, str] = {
    "bluesky": "kipu.hooks.bluesky.BlueskyHook",
    "x": "kipu.hooks.x.XHook",
    "linkedin": "kipu.hooks.linkedin.LinkedInHook",
    "pinterest": "kipu.hooks.pinterest.PinterestHook",
    "instagram": "kipu.hooks.instagram.InstagramHook",
    "facebook": "kipu.hooks.facebook.FacebookPageHook",
    "threads": "kipu.hooks.threads.ThreadsHook",
    "tiktok": "kipu.hooks.tiktok.TikTokHook",
    "youtube": "kipu.hooks.youtube.YouTubeHook",
}


def hook_class(platform: str) -> type[PlatformHook]:
    module, _, name = PLATFORM_HOOKS[platform].rpartition(".")
    return getattr(importlib.import_module(module), name)


def platform_hook(conn: Connection) -> PlatformHook:
    """The platform's hook with the connection's decrypted credentials (in memory only)."""
    from kipu.auth.tokens import credentials_of

    return hook_class(conn.platform)(credentials_of(conn))


def source_hook(conn: Connection) -> SourceHook:
    meta = conn.metadata_ or {}
    if conn.platform == "feed":
        from kipu.hooks.feed import FeedHook

        return FeedHook(meta.get("url") or conn.platform_user_id)
    if conn.platform in PLATFORM_HOOKS:
        return platform_hook(conn)
    raise PlatformNotSupported(f"watching {conn.platform} accounts is not supported yet")


def target_hook(conn: Connection) -> TargetHook:
    meta = conn.metadata_ or {}
    if conn.platform == "outbox":
        from kipu.hooks.outbox import OutboxHook

        folder = meta.get("path") or str(kipu_home() / "outbox" / conn.platform_user_id)
        return OutboxHook(Path(folder))
    if conn.platform in PLATFORM_HOOKS:
        return platform_hook(conn)
    raise PlatformNotSupported(f"publishing to {conn.platform} is not supported yet")
