"""Step configs for every step type: publish, ai_rewrite, filter, condition, delay and approval."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from kipu.specs.common import ConditionSet, Platform, StepKey, Strict, Tone, UtcDateTime, Weekday

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# The longest delay: a year. A longer one is a mistake, and the target must stay a computable date.
MAX_DELAY_SECONDS = 366 * 24 * 3600


class StepBase(Strict):
    id: StepKey
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.id.replace("_", " ")


class PublishTarget(Strict):
    connection_id: str = Field(min_length=1)
    platform: Platform


class PublishConfig(Strict):
    use_original_caption: bool = False
    custom_caption: str | None = Field(default=None, max_length=100_000)
    schedule_at: UtcDateTime | None = None
    # YouTube
    title: str | None = None
    privacy: Literal["public", "unlisted", "private"] | None = None
    category_id: int | None = None
    tags: list[str] | None = None
    made_for_kids: bool | None = None
    # Instagram
    share_to_feed: bool | None = None
    # Platform-specific flags the platform hooks read (TikTok disclosure, LinkedIn visibility, ...).
    platform_options: dict[str, Any] = Field(default_factory=dict)


class PublishStep(StepBase):
    type: Literal["publish"] = "publish"
    connection_id: str = Field(min_length=1)
    platform: Platform
    # Kipu: more targets published by the same step, each with its own posts row and retry.
    additional_targets: list[PublishTarget] = Field(default_factory=list)
    config: PublishConfig = Field(default_factory=PublishConfig)

    @property
    def targets(self) -> list[PublishTarget]:
        return [
            PublishTarget(connection_id=self.connection_id, platform=self.platform),
            *self.additional_targets,
        ]


class AIRewriteConfig(Strict):
    target_platform: Platform
    tone: Tone = "casual"
    max_length: int | None = Field(default=None, gt=0, le=100_000)
    include_hashtags: bool = True
    include_emojis: bool = True
    custom_instructions: str | None = Field(default=None, max_length=2000)
    # Kipu: generate this many relevant hashtags (AI when configured, else from the text) for the caption.
    generate_hashtags: int | None = Field(default=None, ge=1, le=30)


class AIRewriteStep(StepBase):
    type: Literal["ai_rewrite"] = "ai_rewrite"
    config: AIRewriteConfig


class FilterStep(StepBase):
    type: Literal["filter"] = "filter"
    config: ConditionSet


class ConditionConfig(ConditionSet):
    if_true_steps: list[StepKey] = Field(default_factory=list)
    if_false_steps: list[StepKey] = Field(default_factory=list)


class ConditionStep(StepBase):
    type: Literal["condition"] = "condition"
    config: ConditionConfig


class DelayConfig(Strict):
    """A duration, or until a time of day and/or a weekday in the workflow's time zone."""

    duration_minutes: float | None = None
    # Kipu: seconds for short waits (tests, demos); added to duration_minutes.
    duration_seconds: float | None = None
    delay_until_time: str | None = None
    delay_until_day: Weekday | None = None

    @field_validator("duration_minutes", "duration_seconds")
    @classmethod
    def _non_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"{value!r} is negative; a delay must be >= 0")
        return value

    @field_validator("delay_until_time")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None and not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a valid HH:MM time")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> DelayConfig:
        has_duration = self.duration_minutes is not None or self.duration_seconds is not None
        has_until = self.delay_until_time is not None or self.delay_until_day is not None
        if has_duration and has_until:
            raise ValueError("give either a duration or delay_until_time/delay_until_day, not both")
        if not has_duration and not has_until:
            raise ValueError("give duration_minutes, duration_seconds, delay_until_time or delay_until_day")
        if self.total_seconds > MAX_DELAY_SECONDS:
            raise ValueError(
                f"the delay is {self.total_seconds:g} seconds, over the limit of {MAX_DELAY_SECONDS} (366 days)"
            )
        return self

    @property
    def total_seconds(self) -> float:
        return (self.duration_minutes or 0) * 60 + (self.duration_seconds or 0)


class DelayStep(StepBase):
    type: Literal["delay"] = "delay"
    config: DelayConfig


class ApprovalConfig(Strict):
    approvers: list[str] = Field(min_length=1)
    timeout_hours: float = Field(default=24, gt=0, le=24 * 30)
    auto_approve_on_timeout: bool = False


class ApprovalStep(StepBase):
    type: Literal["approval"] = "approval"
    config: ApprovalConfig


StepSpec = Annotated[
    PublishStep | AIRewriteStep | FilterStep | ConditionStep | DelayStep | ApprovalStep,
    Field(discriminator="type"),
]
# Every step type's name, read from the union above: adding a step class is all it takes.
STEP_TYPES = tuple(cls.model_fields["type"].default for cls in get_args(get_args(StepSpec)[0]))
