"""Trigger configs (poll, webhook, manual) with the seed's fields and filters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, TypeAdapter, model_validator

from kipu.specs.common import ContentKind, Platform, Strict


class TriggerFilters(Strict):
    """Checked before a run exists: an item that fails becomes a ``skipped`` run row."""

    hashtags_include: list[str] = Field(default_factory=list)
    hashtags_exclude: list[str] = Field(default_factory=list)
    keywords_include: list[str] = Field(default_factory=list)
    keywords_exclude: list[str] = Field(default_factory=list)
    content_type: ContentKind | None = None
    min_duration_seconds: float | None = Field(default=None, ge=0)
    max_duration_seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _range(self) -> TriggerFilters:
        lo, hi = self.min_duration_seconds, self.max_duration_seconds
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_duration_seconds ({lo}) is greater than max_duration_seconds ({hi})")
        return self


LEGACY_CURSOR_KEYS = ("last_post_id", "last_checked_at", "polling_since")


class PollTrigger(Strict):
    type: Literal["poll"] = "poll"
    connection_id: str = Field(min_length=1)
    platform: Platform
    poll_interval_minutes: int = Field(default=5, ge=1, le=1440)
    filters: TriggerFilters = Field(default_factory=TriggerFilters)
    # The first poll starts from now; ``last_n`` replays the newest ``backfill_count`` items.
    backfill: Literal["none", "last_n"] = "none"
    backfill_count: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _no_cursor(cls, data: Any) -> Any:
        """Files exported before the cursor had its own table carry it here; it is runtime state, not config."""
        if isinstance(data, dict) and any(k in data for k in LEGACY_CURSOR_KEYS):
            return {k: v for k, v in data.items() if k not in LEGACY_CURSOR_KEYS}
        return data


class WebhookTrigger(Strict):
    type: Literal["webhook"] = "webhook"
    connection_id: str = Field(min_length=1)
    platform: Platform
    webhook_url: str | None = Field(default=None, max_length=2048)
    # Write-only: stored encrypted, shown as REDACTED in every document Kipu gives out; rotate it to see a new one.
    webhook_secret: SecretStr | None = Field(default=None, max_length=4096)
    filters: TriggerFilters = Field(default_factory=TriggerFilters)


class ManualTrigger(Strict):
    type: Literal["manual"] = "manual"
    platform: Platform | None = None
    filters: TriggerFilters = Field(default_factory=TriggerFilters)


TriggerSpec = Annotated[PollTrigger | WebhookTrigger | ManualTrigger, Field(discriminator="type")]

_TRIGGER: TypeAdapter[PollTrigger | WebhookTrigger | ManualTrigger] = TypeAdapter(TriggerSpec)


def parse_trigger(config: object) -> PollTrigger | WebhookTrigger | ManualTrigger:
    """A stored ``trigger_config`` as its model (raises pydantic's ValidationError)."""
    return _TRIGGER.validate_python(config)
