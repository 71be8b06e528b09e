"""Which hook serves which platform, built from a stored connection (metadata and decrypted tokens)."""

from __future__ import annotations

from pathlib import Path

from kipu.config import kipu_home
from kipu.hooks.base import Rejected, SourceHook, TargetHook
from kipu.store.models import Connection


class PlatformNotSupported(Rejected):
    """Kipu has no hook for this platform yet."""


def source_hook(conn: Connection) -> SourceHook:
    meta = conn.metadata_ or {}
    if conn.platform == "feed":
        from kipu.hooks.feed import FeedHook

        return FeedHook(meta.get("url") or conn.platform_user_id)
    raise PlatformNotSupported(f"watching {conn.platform} accounts is not supported yet")


def target_hook(conn: Connection) -> TargetHook:
    meta = conn.metadata_ or {}
    if conn.platform == "outbox":
        from kipu.hooks.outbox import OutboxHook

        folder = meta.get("path") or str(kipu_home() / "outbox" / conn.platform_user_id)
        return OutboxHook(Path(folder))
    raise PlatformNotSupported(f"publishing to {conn.platform} is not supported yet")
