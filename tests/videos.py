"""Real, tiny video files for tests, encoded with PyAV (MPEG-4 in MP4), so probing reads true properties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from kipu.hooks.base import PublishRequest
from kipu.specs.items import MediaRef


def make_video(path: Path, seconds: float = 2.0, width: int = 72, height: int = 128, fps: int = 10) -> Path:
    """An MP4 of ``seconds`` at ``width``x``height`` (portrait 9:16 by default)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(max(1, round(seconds * fps))):
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def video_request(path: Path | str, caption: str, **options: Any) -> PublishRequest:
    """A fresh publish request for one local video file, with platform ``options``."""
    return PublishRequest(
        idempotency_key=str(uuid.uuid4()),
        content_type="video",
        caption=caption,
        media=[MediaRef(url=str(path), mime_type="video/mp4")],
        options=options,
        created_at=datetime.now(UTC),
    )
