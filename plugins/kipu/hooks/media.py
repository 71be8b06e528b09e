"""Media for publishing: streamed with size limits checked while reading, served to platforms that fetch by URL as
short-lived presigned S3 URLs, and probed before upload.

Item media are untrusted: an ``http(s)`` URL is fetched through the egress guard, and a team's own media are named
``kipu-media:<id>`` and resolved from its media library by ``library_media``. A local path or an ``s3://`` URL is
never taken from an item (only the demo and the tests allow them, with ``KIPU_EGRESS_ALLOW_PRIVATE``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlparse

import httpx

from kipu import egress
from kipu.config import env_number
from kipu.hooks.base import Rejected, Transient
from kipu.specs.items import MediaRef

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from sqlalchemy.orm import Session

CHUNK = 1 << 20
PRESIGN_SECONDS = 3600
LIBRARY_SCHEME = "kipu-media"
# Storage paths that ``library_media`` resolved for the request being published: the only local paths and s3://
# objects media reading may touch.
_TRUSTED: ContextVar[frozenset[str]] = ContextVar("kipu_trusted_media", default=frozenset())


def library_ref(media_id: uuid.UUID | str) -> str:
    """How an item names a media-library item: ``kipu-media:<id>``."""
    return f"{LIBRARY_SCHEME}:{media_id}"


def not_in_library(session: Session, team_id: uuid.UUID | None, urls: list[str]) -> list[int]:
    """The positions of the ``kipu-media:`` references among ``urls`` that are not media of this team's library
    (another team's answers like a missing one): a manual item is refused at once, not at its publish step."""
    from sqlalchemy import select

    from kipu.store.models import Media

    wanted: dict[int, uuid.UUID | None] = {}
    for i, url in enumerate(urls):
        if urlparse(url).scheme == LIBRARY_SCHEME:
            try:
                wanted[i] = uuid.UUID(url.split(":", 1)[1])
            except ValueError:
                wanted[i] = None
    ids = {v for v in wanted.values() if v is not None}
    have = set(session.scalars(select(Media.id).where(Media.id.in_(ids), Media.team_id == team_id))) if ids else set()
    return [i for i, media_id in wanted.items() if media_id not in have]


@contextmanager
def library_media(team_id: uuid.UUID | str | None, media: list[MediaRef]) -> Iterator[list[MediaRef]]:
    """The media with every ``kipu-media:<id>`` replaced by where the team's library keeps it; inside the block those
    storage paths may be read. Another team's media (or a missing one) is refused like a missing one."""
    from kipu.store.engine import session_scope
    from kipu.store.models import Media

    resolved: list[MediaRef] = []
    trusted: set[str] = set()
    ids: dict[str, uuid.UUID] = {}
    for m in media:
        if urlparse(m.url).scheme == LIBRARY_SCHEME:
            try:
                ids[m.url] = uuid.UUID(m.url.split(":", 1)[1])
            except ValueError:
                raise Rejected(f"media {m.url[:80]} is not a media library reference (kipu-media:<id>)") from None
    rows: dict[uuid.UUID, tuple[str, str | None]] = {}
    if ids:
        with session_scope() as s:
            query = s.query(Media.id, Media.storage_path, Media.mime_type)
            rows = {i: (p, t) for i, p, t in query.filter(Media.id.in_(ids.values()), Media.team_id == team_id)}
    for m in media:
        if m.url not in ids:
            resolved.append(m)
            continue
        row = rows.get(ids[m.url])
        if row is None:
            raise Rejected(f"media {m.url} is not in this team's media library")
        trusted.add(row[0])
        resolved.append(m.model_copy(update={"url": row[0], "mime_type": m.mime_type or row[1]}))
    token = _TRUSTED.set(_TRUSTED.get() | trusted)
    try:
        yield resolved
    finally:
        _TRUSTED.reset(token)


def _require_trusted(url: str, platform: str) -> None:
    """Local paths and s3:// objects only from the team's media library (or in the demo and the tests)."""
    if url in _TRUSTED.get() or egress.allow_private():
        return
    raise Rejected(
        f"{platform}: media {_shown(url)} is refused: item media must be an http(s) URL or a media library item "
        f"({LIBRARY_SCHEME}:<id>); local paths and s3:// are never taken from an item"
    )


def _shown(url: str) -> str:
    """The URL for messages, without its query: a presigned URL's signature never reaches an error or a log."""
    return egress.shown_url(url)


def _too_big(platform: str, url: str, max_bytes: int) -> Rejected:
    return Rejected(f"{platform}: media {_shown(url)} is over the limit of {max_bytes} bytes")


@contextmanager
def _s3_errors(platform: str, url: str) -> Iterator[None]:
    """botocore errors in Kipu's taxonomy: a missing object or a refused access is final, the rest may pass."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise Rejected(f"{platform}: media {_shown(url)} does not exist in S3 ({code})") from None
        if status == 403 or code in ("403", "AccessDenied"):
            raise Rejected(
                f"{platform}: S3 refused access to media {_shown(url)} ({code}): check the kipu_media_s3 connection"
            ) from None
        raise Transient(f"{platform}: media {_shown(url)} cannot be reached in S3 now ({code})") from None
    except BotoCoreError as exc:
        raise Transient(f"{platform}: media {_shown(url)} cannot be reached in S3 now ({type(exc).__name__})") from None


@dataclass(frozen=True)
class MediaFile:
    """An opened media file on local disk: read in ranges and chunks, never whole."""

    path: Path
    size: int
    mime_type: str | None = None

    def chunks(self, chunk_size: int = CHUNK, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in pieces of at most ``chunk_size``."""
        end = self.size if end is None else min(end, self.size)
        with self.path.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                data = fh.read(min(chunk_size, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def read_range(self, offset: int, length: int) -> bytes:
        """One slice (an upload chunk); callers keep ``length`` bounded."""
        with self.path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def open(self) -> IO[bytes]:
        return self.path.open("rb")


def s3_bucket() -> str | None:
    """The media bucket, when Kipu stores media in S3 (``KIPU_MEDIA_S3_BUCKET``)."""
    return os.environ.get("KIPU_MEDIA_S3_BUCKET") or None


def s3_hook() -> S3Hook:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=os.environ.get("KIPU_MEDIA_S3_CONN_ID", "kipu_media_s3"))


def fetch_seconds() -> float:
    """A remote media file's whole download, wall clock: ``KIPU_MEDIA_FETCH_SECONDS``, 900. Each read has its own
    timeout; a server that sends a byte at a time passes every one and would hold a worker slot, shared by all
    teams, for as long as it likes."""
    return env_number("KIPU_MEDIA_FETCH_SECONDS", 900.0, minimum=1.0)


def _spool(chunks: Iterator[bytes], url: str, max_bytes: int, platform: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="kipu-media-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(platform, url, max_bytes)
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


@contextmanager
def open_media(url: str, max_bytes: int, platform: str, mime_type: str | None = None) -> Iterator[MediaFile]:
    """The media as a local file: remote media is spooled to a temporary file in chunks (bounded memory).

    ``Rejected`` names the limit when the file is larger; ``Transient`` when it cannot be fetched now.
    """
    parsed = urlparse(url)
    spooled: Path | None = None
    if parsed.scheme not in ("http", "https"):
        _require_trusted(url, platform)
    try:
        if parsed.scheme in ("http", "https"):
            try:
                with (
                    egress.client(timeout=60, deadline=fetch_seconds()) as client,
                    client.stream("GET", url) as resp,
                ):
                    resp.raise_for_status()
                    spooled = _spool(resp.iter_bytes(CHUNK), url, max_bytes, platform)
            except httpx.HTTPStatusError as exc:
                code = exc.response.status_code
                # A missing or forbidden file stays so: retrying it would only delay the failure.
                if 400 <= code < 500 and code not in (408, 425, 429):
                    raise Rejected(f"{platform}: media {_shown(url)} cannot be fetched: HTTP {code}") from None
                raise Transient(f"{platform}: media {_shown(url)} cannot be fetched now: HTTP {code}") from None
            except httpx.TimeoutException:
                raise Transient(
                    f"{platform}: media {_shown(url)} was not fetched within {fetch_seconds():g} s"
                ) from None
            except httpx.HTTPError as exc:
                raise Transient(f"{platform}: media {_shown(url)} cannot be fetched: {type(exc).__name__}") from None
            path = spooled
        elif parsed.scheme == "s3":
            with _s3_errors(platform, url):
                obj = s3_hook().get_key(parsed.path.lstrip("/"), bucket_name=parsed.netloc)
                if obj.content_length > max_bytes:
                    raise _too_big(platform, url, max_bytes)
                body = obj.get()["Body"]
                try:
                    spooled = _spool(iter(lambda: body.read(CHUNK), b""), url, max_bytes, platform)
                finally:
                    body.close()
            path = spooled
        else:
            path = Path(parsed.path if parsed.scheme == "file" else url)
            if not path.is_file():
                raise Rejected(f"{platform}: media file {path} does not exist")
            if path.stat().st_size > max_bytes:
                raise _too_big(platform, url, max_bytes)
        yield MediaFile(path, path.stat().st_size, mime_type)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


def read_media(url: str, max_bytes: int, platform: str) -> bytes:
    """The whole file, for small media only (images): video goes through ``open_media``."""
    with open_media(url, max_bytes, platform) as media:
        return media.path.read_bytes()


def public_url(url: str, platform: str, expires: int = PRESIGN_SECONDS) -> str:
    """A URL the platform can fetch: ``http(s)`` as is, ``s3://`` presigned, a local file staged to the media bucket
    (streamed) and presigned. Without a bucket a local file cannot be fetched, and the error says what to set."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        egress.check_url(url)
        return url
    _require_trusted(url, platform)
    if parsed.scheme == "s3":
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
    else:
        bucket = s3_bucket()
        if bucket is None:
            raise Rejected(
                f"{platform} fetches media from a public URL and {url} is a local file: set KIPU_MEDIA_S3_BUCKET "
                "(and the kipu_media_s3 connection) so Kipu can serve it as a presigned S3 URL, or use an https URL"
            )
        path = Path(parsed.path if parsed.scheme == "file" else url)
        if not path.is_file():
            raise Rejected(f"{platform}: media file {path} does not exist")
        digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
        key = f"kipu-staging/{digest.hexdigest()[:32]}/{path.name}"
        hook = s3_hook()
        with _s3_errors(platform, f"s3://{bucket}/{key}"):
            if not hook.check_for_key(key, bucket_name=bucket):
                hook.load_file(str(path), key, bucket_name=bucket, replace=True)  # boto3 multipart: streamed
    return _presign(s3_hook(), bucket, key, expires)


def _presign(hook: S3Hook, bucket: str, key: str, expires: int) -> str:
    """A presigned GET, signed locally (no request). botocore still presigns S3 in us-east-1 with Signature
    Version 2, which S3 refuses for buckets created after 2020-06-24: SigV4 unless the connection's
    ``config_kwargs`` choose a signature version."""
    from botocore.config import Config

    client = hook.get_client_type(
        region_name=hook.region_name, config=Config(signature_version="s3v4").merge(hook.config)
    )
    return str(
        client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires, HttpMethod="GET"
        )
    )


SNIFF_BYTES = 8192
# Types that share one container: an iPhone .mov is ISO BMFF like an .mp4, and WebM is Matroska.
_FAMILIES = (
    {"video/mp4", "video/quicktime", "video/x-m4v"},
    {"video/webm", "video/x-matroska", "application/x-matroska"},
)


def sniffed_types(head: bytes) -> set[str]:
    """The MIME types the first bytes of a file could be, from its magic bytes (puremagic)."""
    import puremagic

    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return set()
    found = {m.mime_type for m in matches if m.mime_type}
    for family in _FAMILIES:
        if found & family:
            found |= family
    return found


def content_mismatch(head: bytes, declared: str) -> str | None:
    """Why ``head`` is not a ``declared`` file (empty, or other magic bytes), or None when it is one."""
    if not head:
        return "the file is empty"
    found = sniffed_types(head)
    if declared in found:
        return None
    what = ", ".join(sorted(found)[:3]) if found else "no known media type"
    return f"the content is {what}, not the declared {declared}"


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    width: int
    height: int
    size: int

    @property
    def aspect_ratio(self) -> float:
        return self.width / self.height if self.height else 0.0


@dataclass(frozen=True)
class VideoLimits:
    """One platform's video limits (PLATFORMS.md); ``None`` means no limit."""

    max_bytes: int | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None

    def violations(self, info: VideoInfo, platform: str) -> list[str]:
        out: list[str] = []
        if self.max_bytes is not None and info.size > self.max_bytes:
            out.append(f"{platform} video is {info.size} bytes, over the limit of {self.max_bytes}")
        if self.max_duration is not None and info.duration > self.max_duration:
            out.append(f"{platform} video is {info.duration:.1f}s long, over the limit of {self.max_duration:g}s")
        if self.min_duration is not None and info.duration < self.min_duration:
            out.append(f"{platform} video is {info.duration:.1f}s long, under the minimum of {self.min_duration:g}s")
        ratio = info.aspect_ratio
        if self.min_aspect is not None and ratio < self.min_aspect:
            out.append(f"{platform} video aspect ratio {ratio:.3f} is under the minimum of {self.min_aspect:.3f}")
        if self.max_aspect is not None and ratio > self.max_aspect:
            out.append(f"{platform} video aspect ratio {ratio:.3f} is over the maximum of {self.max_aspect:.3f}")
        return out


def probe_video(path: Path) -> VideoInfo:
    """Duration, frame size and file size read from the container with PyAV (FFmpeg's libraries)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise Rejected(f"media {path.name} has no video stream")
            # FFmpeg opens a still image as a one-frame "video" (image2, png_pipe, jpeg_pipe...): not a video.
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise Rejected(f"media {path.name} is a still image ({container.format.name}), not a video")
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.FFmpegError as exc:
        raise Rejected(f"media {path.name} is not a readable video: {exc}") from None
    return VideoInfo(duration=float(duration), width=int(width), height=int(height), size=path.stat().st_size)


def check_video(url: str, limits: VideoLimits, platform: str) -> list[str]:
    """The limits a video breaks, probed before any platform call; a remote video is checked by its platform."""
    if urlparse(url).scheme in ("http", "https", "s3"):
        return []
    try:
        with open_media(url, limits.max_bytes or (1 << 62), platform) as media:
            return limits.violations(probe_video(media.path), platform)
    except Rejected as exc:
        return [str(exc)]
