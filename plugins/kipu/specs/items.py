"""The content item: one post noticed on a source platform, carried in a run's conf and ``trigger_data``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kipu.specs.common import CleanText, UtcDateTime

ContentType = Literal["video", "image", "text", "carousel"]


class MediaRef(BaseModel):
    """A media file of an item, by URL or local path."""

    model_config = ConfigDict(extra="forbid")

    url: CleanText = Field(min_length=1)
    mime_type: CleanText | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    duration_seconds: float | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, ge=0)
    alt_text: CleanText | None = None

    @property
    def kind(self) -> str:
        return (self.mime_type or "").split("/", 1)[0]


class ContentItem(BaseModel):
    """A post on the source platform; ``platform_post_id`` is its stable identity there."""

    model_config = ConfigDict(extra="forbid")

    platform: CleanText = Field(min_length=1)
    platform_post_id: CleanText = Field(min_length=1, max_length=512)
    content_type: ContentType = "text"
    title: CleanText | None = None
    caption: CleanText = ""
    url: CleanText | None = None
    media: list[MediaRef] = Field(default_factory=list)
    hashtags: list[CleanText] = Field(default_factory=list)
    duration_seconds: float | None = Field(default=None, ge=0)
    published_at: UtcDateTime | None = None
    author: CleanText | None = None
