"""Pinterest's publish options, typed once: the board to pin to (else the connection's ``board_id``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PinterestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    board_id: str | None = Field(default=None, min_length=1, max_length=64)
