"""The content item: one post noticed on a source platform, carried in a run's conf and ``trigger_data``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kipu.specs.common import CleanText, UtcDateTime

ContentType = Literal["video", "image", "text", "carousel"]


class MediaRef(BaseModel):
    """A media file of an item, by URL or local path."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # stored as JSON, which has no such number

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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # stored as JSON, which has no such number

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


MANUAL_PLATFORM = "manual"


MAX_CAPTION = 65_536  # characters of a hand-made item's caption


class ManualItem(BaseModel):
    """An item given by hand (the API, ``kipu workflow run``, Airflow's Trigger form): a caption and optional media
    are enough. Kipu assigns its identity; the same ``idempotency_key`` for the same workflow is the same item, so a
    retried request never runs it twice. A full content item (naming its ``platform`` and ``platform_post_id``) is
    accepted too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # stored as JSON, which has no such number

    # Bounded (the longest platform caption is Facebook's 63,206 characters), so an item costs its steps in
    # proportion to what a platform could publish, not to the request body's limit.
    caption: CleanText = Field(default="", max_length=MAX_CAPTION)
    title: CleanText | None = Field(default=None, max_length=2_000)
    content_type: ContentType | None = Field(default=None, description="default: from the media (video, image)")
    media: list[MediaRef] = Field(default_factory=list, max_length=20)
    hashtags: list[Annotated[CleanText, Field(max_length=140)]] = Field(default_factory=list, max_length=100)
    url: CleanText | None = Field(default=None, max_length=2_048)
    duration_seconds: float | None = Field(default=None, ge=0)
    idempotency_key: CleanText | None = Field(default=None, min_length=1, max_length=200)
    platform: CleanText | None = Field(default=None, min_length=1)
    platform_post_id: CleanText | None = Field(default=None, min_length=1, max_length=512)
    published_at: UtcDateTime | None = None
    author: CleanText | None = Field(default=None, max_length=200)

    def to_item(self, fallback_id: str) -> ContentItem:
        """The content item: its own id, else one from the idempotency key, else ``fallback_id`` (per request)."""
        media = [m if m.mime_type else m.model_copy(update={"mime_type": _guess_type(m.url)}) for m in self.media]
        kinds = [m.kind for m in media]
        images = kinds.count("image")
        inferred = "video" if "video" in kinds else "carousel" if images > 1 else "image" if images else "text"
        key = f"key:{self.idempotency_key}" if self.idempotency_key else None
        return ContentItem(
            platform=self.platform or MANUAL_PLATFORM,
            platform_post_id=self.platform_post_id or key or fallback_id,
            content_type=self.content_type or inferred,  # type: ignore[arg-type]
            title=self.title,
            caption=self.caption,
            url=self.url,
            media=media,
            hashtags=self.hashtags,
            duration_seconds=self.duration_seconds,
            published_at=self.published_at,
            author=self.author,
        )


def _guess_type(url: str) -> str | None:
    import mimetypes

    return mimetypes.guess_type(url.split("?", 1)[0])[0]


def given_item(data: object, fallback_id: str) -> ContentItem:
    """A hand-given item (a run's conf, a file) as a content item; pydantic's ``ValidationError`` names the field."""
    return ManualItem.model_validate(data).to_item(fallback_id)
