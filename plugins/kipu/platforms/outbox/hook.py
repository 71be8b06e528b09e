"""The ``outbox`` target: each published post becomes ``<key>.json`` plus its media in a folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from kipu.hooks.base import PublishRequest, PublishResult, TargetHook
from kipu.hooks.media import open_media
from kipu.store.types import utcnow

MAX_MEDIA_BYTES = 2 * 1024**3


class OutboxHook(TargetHook):
    """Writes atomically (temp file, then rename), so a post exists completely or not at all."""

    platform: ClassVar[str] = "outbox"

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    @classmethod
    def from_connection(cls, conn: Any) -> OutboxHook:
        from kipu.config import kipu_home

        return cls(Path((conn.metadata_ or {}).get("path") or kipu_home() / "outbox" / conn.platform_user_id))

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        key = request.idempotency_key
        path = self._path(key)
        if not path.exists():
            return None
        return PublishResult(platform_post_id=key, url=path.resolve().as_uri())

    def _copy_media(self, url: str, dest: Path) -> None:
        """Through the one media reader (egress guard, library media, size limit); copied in chunks."""
        with open_media(url, MAX_MEDIA_BYTES, "outbox") as media:
            shutil.copyfile(media.path, dest)

    def publish(self, request: PublishRequest) -> PublishResult:
        self.folder.mkdir(parents=True, exist_ok=True)
        key = request.idempotency_key
        media_dir = self.folder / key
        media_dir.mkdir(exist_ok=True)
        files = []
        for i, media in enumerate(request.media):
            name = f"{i:02d}_{Path(urlparse(media.url).path).name or 'media'}"
            self._copy_media(media.url, media_dir / name)
            files.append({"file": f"{key}/{name}", "mime_type": media.mime_type, "alt_text": media.alt_text})
        if not files:
            media_dir.rmdir()
        document = {
            "id": key,
            "published_at": utcnow().isoformat(),
            "content_type": request.content_type,
            "title": request.title,
            "caption": request.caption,
            "link": request.link,
            "media": files,
            "options": request.options,
        }
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, ensure_ascii=False, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path(key))
        return PublishResult(platform_post_id=key, url=self._path(key).resolve().as_uri())
