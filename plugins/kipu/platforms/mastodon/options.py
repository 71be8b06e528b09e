"""Mastodon's publish options, typed once: who sees the status, its content warning, and its language."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MastodonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # public, unlisted (not in public timelines), private (followers only) or direct (mentioned accounts only).
    visibility: Literal["public", "unlisted", "private", "direct"] | None = None
    # A content warning shown before the text (the status is collapsed behind it); it counts toward the limit.
    spoiler_text: str | None = Field(default=None, max_length=500)
    sensitive: bool | None = None  # hide the media behind a warning
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$", description="ISO 639 code, e.g. en")
