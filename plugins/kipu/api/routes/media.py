"""``/api/media``: the media library. Uploads stream to the local media folder, or with ``KIPU_MEDIA_S3_BUCKET`` to S3
through the amazon provider's S3Hook (multipart, bounded memory), checked for MIME type and size; beyond the limit the
answer is 413 and nothing is kept. S3 media are served as short-lived presigned URLs (docs/media.md)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from kipu.api.auth import CallerDep, load_owned
from kipu.api.errors import unprocessable
from kipu.config import env_number, kipu_home
from kipu.hooks.media import SNIFF_BYTES, content_mismatch, library_ref, s3_bucket, s3_hook
from kipu.store.engine import session_scope
from kipu.store.models import Media, MediaFolder

log = logging.getLogger(__name__)

router = APIRouter(prefix="/media", tags=["media"])
ALLOWED = {"image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/quicktime", "video/webm"}
CHUNK = 1 << 20


SIGV4_MAX_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL can live


def max_bytes() -> int:
    return env_number("KIPU_MEDIA_MAX_BYTES", 512 * 1024 * 1024, minimum=1)


def url_seconds() -> int:
    """Lifetime of the presigned URLs handed out for S3 media (``KIPU_MEDIA_URL_SECONDS``, 15 minutes)."""
    return max(1, min(env_number("KIPU_MEDIA_URL_SECONDS", 900), SIGV4_MAX_SECONDS))


class MediaOut(BaseModel):
    id: uuid.UUID
    folder_id: uuid.UUID | None
    filename: str
    mime_type: str | None
    size_bytes: int | None
    storage_path: str = Field(description="Where the bytes live: a local path, or s3://bucket/key")
    ref: str = Field(description="How an item names this media to publish it: kipu-media:<id> (this team only)")
    url: str = Field(description="A URL to read the media: a presigned https URL for S3, else the ref")
    url_expires_at: datetime | None = Field(description="When a presigned url stops working; null if it does not")
    created_at: datetime


class FolderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str
    name: str = Field(min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None


class FolderOut(BaseModel):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None


class _TooBig(Exception):
    """Raised by the upload reader once more than the limit has been read."""


def _unavailable(what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"media storage (S3) is unavailable: {what}; check the kipu_media_s3 connection",
    )


class _Presigner:
    """Presigned GET URLs for one request: one boto3 client signs them all locally (no request per URL)."""

    def __init__(self) -> None:
        self._client: Any = None
        self.seconds = url_seconds()

    def __call__(self, storage_path: str) -> str:
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(storage_path)
        try:
            if self._client is None:
                hook = s3_hook()
                # SigV4 as in kipu.hooks.media._presign: botocore signs us-east-1 with SigV2, which new buckets refuse.
                config = Config(signature_version="s3v4").merge(hook.config)
                self._client = hook.get_client_type(region_name=hook.region_name, config=config)
            params = {"Bucket": parsed.netloc, "Key": parsed.path.lstrip("/")}
            return str(self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.seconds))
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(f"cannot sign a URL ({type(exc).__name__})") from None


def _out(m: Media, presign: _Presigner | None = None) -> MediaOut:
    url, expires = m.storage_path, None
    if m.storage_path.startswith("s3://"):
        presign = presign or _Presigner()
        # X-Amz-Date is whole seconds, taken at signing (after this): the URL lives at least until ``expires``.
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=presign.seconds)
        url = presign(m.storage_path)
    else:
        url = library_ref(m.id)  # a local file has no URL anyone outside the server could read
    return MediaOut(
        ref=library_ref(m.id),
        id=m.id,
        folder_id=m.folder_id,
        filename=m.filename,
        mime_type=m.mime_type,
        size_bytes=m.size_bytes,
        storage_path=m.storage_path,
        url=url,
        url_expires_at=expires,
        created_at=m.created_at,
    )


def _folder(team_id: uuid.UUID, folder_id: uuid.UUID | None) -> None:
    if folder_id is None:
        return
    with session_scope() as s:
        folder = s.get(MediaFolder, folder_id)
        if folder is None or folder.team_id != team_id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"folder {folder_id} not found")


@router.get("", response_model=list[MediaOut])
def list_media(
    caller: CallerDep,
    response: Response,
    team: str,
    folder_id: uuid.UUID | None = None,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> list[MediaOut]:
    """A folder's media, oldest first, a page at a time; ``X-Kipu-Next-Offset`` names the next page when there is
    one (a library grows without bound, a response must not)."""
    team_id = caller.team(team, "viewer")
    _folder(team_id, folder_id)
    with session_scope() as s:
        query = (
            select(Media)
            .where(Media.team_id == team_id, Media.folder_id == folder_id)
            .order_by(Media.created_at, Media.id)
            .offset(offset)
            .limit(limit + 1)
        )
        rows = list(s.scalars(query))
        if len(rows) > limit:
            response.headers["X-Kipu-Next-Offset"] = str(offset + limit)
        presign = _Presigner()
        return [_out(m, presign) for m in rows[:limit]]


@router.get("/folders", response_model=list[FolderOut])
def list_folders(caller: CallerDep, team: str) -> list[FolderOut]:
    """The team's media folders (viewers and up)."""
    team_id = caller.team(team, "viewer")
    with session_scope() as s:
        rows = s.scalars(select(MediaFolder).where(MediaFolder.team_id == team_id).order_by(MediaFolder.name))
        return [FolderOut(id=f.id, name=f.name, parent_id=f.parent_id) for f in rows]


@router.get("/{media_id}", response_model=MediaOut)
def get_media(media_id: uuid.UUID, caller: CallerDep) -> MediaOut:
    """One media item; for S3 media ``url`` is a fresh presigned URL valid ``KIPU_MEDIA_URL_SECONDS``."""
    return _out(load_owned(caller, Media, media_id, "viewer", "media"))


@router.post("/folders", response_model=FolderOut, status_code=status.HTTP_201_CREATED)
def create_folder(body: FolderBody, caller: CallerDep) -> FolderOut:
    team_id = caller.team(body.team, "member")
    _folder(team_id, body.parent_id)
    with session_scope() as s:
        folder = MediaFolder(id=uuid.uuid4(), team_id=team_id, parent_id=body.parent_id, name=body.name)
        s.add(folder)
        return FolderOut(id=folder.id, name=folder.name, parent_id=folder.parent_id)


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
                "additionalProperties": False,
            }
        }
    },
}


@router.post(
    "/upload",
    response_model=MediaOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload(request: Request, caller: CallerDep, team: str, folder_id: uuid.UUID | None = None) -> MediaOut:
    """Multipart upload of one file (field ``file``). 415 for a type outside the allow-list, 413 beyond the limit.
    The role, the team and the folder are checked before a byte of the body is read."""
    team_id = await run_in_threadpool(caller.team, team, "member")
    await run_in_threadpool(_folder, team_id, folder_id)
    form = await one_file_form(request)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise unprocessable("a file part named 'file' is required", ("body", "file"))
        return await _store(file, team_id, folder_id)
    finally:
        await form.close()


async def one_file_form(request: Request) -> FormData:
    """The multipart body as one file part and no other field (Starlette keeps each part in memory up to 1 MiB, and
    would allow 1,000); anything else is a 422 at ``body.file``."""
    try:
        return await request.form(max_files=1, max_fields=0)
    except (MultiPartException, StarletteHTTPException) as exc:  # Starlette turns its own into a 400
        if isinstance(exc, StarletteHTTPException) and exc.status_code != 400:
            raise
        why = exc.message if isinstance(exc, MultiPartException) else exc.detail
        raise unprocessable(f"one file part named 'file' and nothing else ({why})", ("body", "file")) from None


async def _store(file: UploadFile, team_id: uuid.UUID, folder_id: uuid.UUID | None) -> MediaOut:
    limit = max_bytes()  # the door (api/guard.py) refused a body over it, with its multipart headers, already
    mime = (file.content_type or "").split(";")[0].strip().lower()
    if mime not in ALLOWED:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{mime or 'no type'} is not one of {sorted(ALLOWED)}"
        )
    if file.size is not None and file.size > limit:  # known once the multipart body is parsed
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the upload is over the limit of {limit} bytes")
    head = await file.read(SNIFF_BYTES)
    if not head:
        raise unprocessable("the file is empty", ("body", "file"))
    mismatch = content_mismatch(head, mime)
    if mismatch is not None:  # an executable or a page declared as an image is refused, whatever it is named
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, mismatch)
    await file.seek(0)
    name = _bounded("".join(ch for ch in Path(file.filename or "upload").name if ch.isprintable())) or "upload"
    media_id = uuid.uuid4()
    bucket = s3_bucket()
    if bucket is not None:
        key = f"media/{team_id}/{media_id}/{name}"
        size = await run_in_threadpool(_upload_s3, file.file, bucket, key, mime, limit)
        try:
            # In a thread: the answer's presigned URL needs a boto3 client, which is slow to build.
            return await run_in_threadpool(
                _record, media_id, team_id, folder_id, name, f"s3://{bucket}/{key}", mime, size
            )
        except BaseException:
            await run_in_threadpool(_delete_s3, bucket, key)  # no object without its row
            raise
    folder = kipu_home() / "media" / str(team_id)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, f"the upload is over the limit of {limit} bytes"
                    )
                out.write(chunk)
        final = folder / f"{media_id}-{name}"
        shutil.move(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # nothing partial is kept
        raise
    return _record(media_id, team_id, folder_id, name, str(final), mime, size)


def _bounded(name: str, limit: int = 200) -> str:
    """``name`` within ``limit`` UTF-8 bytes, its suffix kept: it is part of a file name on disk, whose limit is 255
    bytes, not characters."""
    if len(name.encode()) <= limit:
        return name
    suffix = Path(name).suffix[:16]
    stem = name[: len(name) - len(suffix)] if suffix else name
    return stem.encode()[: limit - len(suffix.encode())].decode("utf-8", "ignore") + suffix


def _record(
    media_id: uuid.UUID,
    team_id: uuid.UUID,
    folder_id: uuid.UUID | None,
    name: str,
    storage_path: str,
    mime: str,
    size: int,
) -> MediaOut:
    with session_scope() as s:
        media = Media(
            id=media_id,
            team_id=team_id,
            folder_id=folder_id,
            filename=name,
            storage_path=storage_path,
            mime_type=mime,
            size_bytes=size,
        )
        s.add(media)
        s.flush()
        return _out(media)


class _LimitedReader:
    """A forward-only view of the spooled upload that counts bytes and stops past ``limit``. Without ``seek`` boto3
    streams it as a non-seekable source: parts of ``multipart_chunksize`` (8 MiB), never the whole file in memory."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw, self._limit, self.size = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        want = self._limit - self.size + 1 if size is None or size < 0 else size
        data = self._raw.read(want)
        self.size += len(data)
        if self.size > self._limit:
            raise _TooBig
        return data


def _upload_s3(raw: IO[bytes], bucket: str, key: str, mime: str, limit: int) -> int:
    """Stream the upload to ``s3://bucket/key`` with the S3Hook's client and transfer config; the size uploaded.

    Over the limit: 413, and the multipart upload is aborted by boto3 (s3transfer's failure cleanup)."""
    from botocore.exceptions import BotoCoreError, ClientError

    reader = _LimitedReader(raw, limit)
    try:
        hook = s3_hook()
        hook.get_conn().upload_fileobj(
            reader, bucket, key, ExtraArgs={"ContentType": mime}, Config=hook.transfer_config
        )
    except _TooBig:
        _delete_s3(bucket, key)
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the upload is over the limit of {limit} bytes"
        ) from None
    except (BotoCoreError, ClientError) as exc:
        log.warning("media upload to s3://%s/%s failed: %s", bucket, key, type(exc).__name__)
        _delete_s3(bucket, key)
        raise _unavailable(f"the upload failed ({type(exc).__name__})") from None
    return reader.size


def _delete_s3(bucket: str, key: str) -> None:
    """Best effort: an object whose upload or row failed is removed (deleting a missing key is not an error)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_hook().get_conn().delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        log.warning("could not remove s3://%s/%s after a failed upload: %s", bucket, key, type(exc).__name__)
