"""Instagram's publish options, typed once: Reels on the feed too, a cover, and a first comment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InstagramOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    share_to_feed: bool | None = None  # a Reel also appears on the profile grid
    cover_url: str | None = Field(default=None, max_length=2048)
    thumb_offset: int | None = Field(default=None, ge=0)  # milliseconds into the Reel
    first_comment: str | None = Field(default=None, max_length=2200)
