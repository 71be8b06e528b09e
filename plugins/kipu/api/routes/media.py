"""``/api/media``: the media library. Uploads stream to the local media folder (or S3 with the amazon provider),
checked for MIME type and size; beyond the limit the answer is 413 and nothing is kept."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from kipu.api.auth import CallerDep
from kipu.config import kipu_home
from kipu.store.engine import session_scope
from kipu.store.models import Media, MediaFolder

router = APIRouter(prefix="/media", tags=["media"])
ALLOWED = {"image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/quicktime", "video/webm"}
CHUNK = 1 << 20


def max_bytes() -> int:
    return int(os.environ.get("KIPU_MEDIA_MAX_BYTES", 512 * 1024 * 1024))


class MediaOut(BaseModel):
    id: uuid.UUID
    folder_id: uuid.UUID | None
    filename: str
    mime_type: str | None
    size_bytes: int | None
    url: str
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


def _out(m: Media) -> MediaOut:
    return MediaOut(
        id=m.id,
        folder_id=m.folder_id,
        filename=m.filename,
        mime_type=m.mime_type,
        size_bytes=m.size_bytes,
        url=m.storage_path if "://" in m.storage_path else Path(m.storage_path).as_uri(),
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
def list_media(caller: CallerDep, team: str, folder_id: uuid.UUID | None = None) -> list[MediaOut]:
    team_id = caller.team(team, "viewer")
    _folder(team_id, folder_id)
    with session_scope() as s:
        query = select(Media).where(Media.team_id == team_id, Media.folder_id == folder_id).order_by(Media.created_at)
        return [_out(m) for m in s.scalars(query)]


@router.post("/folders", response_model=FolderOut, status_code=status.HTTP_201_CREATED)
def create_folder(body: FolderBody, caller: CallerDep) -> FolderOut:
    team_id = caller.team(body.team, "member")
    _folder(team_id, body.parent_id)
    with session_scope() as s:
        folder = MediaFolder(id=uuid.uuid4(), team_id=team_id, parent_id=body.parent_id, name=body.name)
        s.add(folder)
        return FolderOut(id=folder.id, name=folder.name, parent_id=folder.parent_id)


@router.post("/upload", response_model=MediaOut, status_code=status.HTTP_201_CREATED)
async def upload(
    request: Request, caller: CallerDep, team: str, file: UploadFile, folder_id: uuid.UUID | None = None
) -> MediaOut:
    """Multipart upload of one file (field ``file``). 415 for a type outside the allow-list, 413 beyond the limit."""
    team_id = caller.team(team, "member")
    _folder(team_id, folder_id)
    limit = max_bytes()
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"the upload is over the limit of {limit} bytes")
    mime = (file.content_type or "").split(";")[0].strip().lower()
    if mime not in ALLOWED:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{mime or 'no type'} is not one of {sorted(ALLOWED)}"
        )
    name = Path(file.filename or "upload").name[:200] or "upload"
    media_id = uuid.uuid4()
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
                        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"the upload is over the limit of {limit} bytes"
                    )
                out.write(chunk)
        final = folder / f"{media_id}-{name}"
        shutil.move(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # nothing partial is kept
        raise
    with session_scope() as s:
        media = Media(
            id=media_id,
            team_id=team_id,
            folder_id=folder_id,
            filename=name,
            storage_path=str(final),
            mime_type=mime,
            size_bytes=size,
        )
        s.add(media)
        s.flush()
        return _out(media)
