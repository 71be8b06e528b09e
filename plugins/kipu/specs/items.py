"""The content item: one post noticed on a source platform, carried in a run's conf and ``trigger_data``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

ContentType = Literal["video", "image", "text", "carousel"]


class MediaRef(BaseModel):
    """A media file of an item, by URL or local path."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    mime_type: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    duration_seconds: float | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, ge=0)
    alt_text: str | None = None

    @property
    def kind(self) -> str:
        return (self.mime_type or "").split("/", 1)[0]


class ContentItem(BaseModel):
    """A post on the source platform; ``platform_post_id`` is its stable identity there."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(min_length=1)
    platform_post_id: str = Field(min_length=1, max_length=512)
    content_type: ContentType = "text"
    title: str | None = None
    caption: str = ""
    url: str | None = None
    media: list[MediaRef] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    duration_seconds: float | None = Field(default=None, ge=0)
    published_at: AwareDatetime | None = None
    author: str | None = None

    @field_validator("published_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value else value
