"""TikTok's publish options: Direct Post or an inbox draft, the source, privacy and the disclosure and interaction
flags, typed once (``kipu.platforms.options`` reads them from a publish step's config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PrivacyLevel = Literal["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"]


class TikTokOptions(BaseModel):
    """The publish step's TikTok flags (``platform_options`` or ``platform_options.tiktok``); unknown keys fail.

    Interactions default to disabled: TikTok's UX guidelines forbid turning them on for the creator by default.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["direct", "draft"] = "direct"
    source: Literal["FILE_UPLOAD", "PULL_FROM_URL"] = "FILE_UPLOAD"
    privacy_level: PrivacyLevel | None = None
    disable_comment: bool = True
    disable_duet: bool = True
    disable_stitch: bool = True
    video_cover_timestamp_ms: int | None = Field(default=None, ge=0)
    brand_content_toggle: bool = False  # "Paid partnership": promotes a third party
    brand_organic_toggle: bool = False  # "Promotional content": promotes the creator's own business
    is_aigc: bool = False  # AI-generated content label

    @model_validator(mode="after")
    def _branded_is_not_private(self) -> TikTokOptions:
        if self.brand_content_toggle and self.privacy_level == "SELF_ONLY":
            raise ValueError(
                "brand_content_toggle (paid partnership) cannot be combined with privacy_level SELF_ONLY: TikTok "
                "does not allow branded content to be private; choose another privacy_level"
            )
        return self
