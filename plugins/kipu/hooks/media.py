"""Media bytes for upload, from a local path, ``file://`` or ``http(s)://``, with a size limit checked while reading."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import httpx

from kipu.hooks.base import Rejected, Transient


def read_media(url: str, max_bytes: int, platform: str) -> bytes:
    """The file's bytes; ``Rejected`` naming the limit if it is larger, ``Transient`` if it cannot be fetched now."""
    parsed = urlparse(url)
    too_big = f"{platform}: media {url} is over the limit of {max_bytes} bytes"
    if parsed.scheme in ("http", "https"):
        data = bytearray()
        try:
            with httpx.stream("GET", url, timeout=30, follow_redirects=True) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_bytes(1 << 16):
                    data += chunk
                    if len(data) > max_bytes:
                        raise Rejected(too_big)
        except httpx.HTTPError as exc:
            raise Transient(f"{platform}: media {url} cannot be fetched: {type(exc).__name__}") from None
        return bytes(data)
    path = Path(parsed.path if parsed.scheme == "file" else url)
    if not path.is_file():
        raise Rejected(f"{platform}: media file {path} does not exist")
    if path.stat().st_size > max_bytes:
        raise Rejected(too_big)
    return path.read_bytes()
