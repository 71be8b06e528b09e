"""The publish options YouTube reads (title, privacy, category, tags, made for kids, publishAt), typed once."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class YouTubeOptions(BaseModel):
    """The publish step's config as YouTube reads it (``kipu.platforms.options``): the step's title, privacy,
    category, tags and made-for-kids flag, and from ``platform_options`` ``publish_at`` and ``notify_subscribers``."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    privacy: Literal["public", "unlisted", "private"] | None = None
    category_id: str = "22"  # People & Blogs
    tags: list[str] = Field(default_factory=list)
    made_for_kids: bool = False
    publish_at: AwareDatetime | None = None
    notify_subscribers: bool = True

    @field_validator("category_id", mode="before")
    @classmethod
    def _category(cls, value: Any) -> str:
        if not str(value).isdigit():
            raise ValueError(f"{value!r} is not a YouTube category id (digits, e.g. 22)")
        return str(value)
