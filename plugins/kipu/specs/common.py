"""Shared spec types: platforms, tones, weekdays and the FilterCondition used by filter and condition steps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from kipu import platforms as _registry

# Every name is a platform package's (``kipu.platforms``): adding a platform adds it here.
PlatformName = Literal[_registry.names()]  # type: ignore[valid-type]
# Kipu's account-free source and target, which make the demo and tests real without a network.
LOCAL_PLATFORMS = _registry.names(local=True)
SOCIAL_PLATFORMS = _registry.names(local=False)
# The platforms connected through the OAuth 2.0 flow (``POST /connections/oauth/{platform}``, ``kipu connect
# start/finish``). Bluesky connects with an app password.
OAUTH_PLATFORMS: tuple[str, ...] = _registry.names(connect="oauth")
OAuthPlatformName = Literal[OAUTH_PLATFORMS]  # type: ignore[valid-type]


def _platform_alias(value: object) -> object:
    """A platform's other name (the seed calls X "twitter") as its name."""
    if isinstance(value, str) and value not in _registry.all_platforms():
        try:
            return _registry.get(value).name
        except _registry.PlatformNotSupported:
            return value
    return value


Platform = Annotated[PlatformName, BeforeValidator(_platform_alias)]
ContentKind = Literal["video", "image", "text", "carousel"]
Tone = Literal["professional", "casual", "funny", "educational"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
StepKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken as UTC. An instant outside years 1-9999 once in UTC
    (``9999-12-31T23:59:59-14:00``) is a ValueError, so a request gets a 422 naming the field, never a 500."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC (years 1 to 9999)") from None


def clean_text(value: str) -> str:
    """Text from a platform, made storable: NUL removed (PostgreSQL text cannot hold it) and unpaired surrogates
    replaced (no encoding can). A feed or a webhook sending either loses one character, never the item."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


CleanText = Annotated[str, AfterValidator(clean_text)]
# An instant with a time zone, stored and compared in UTC.
UtcDateTime = Annotated[AwareDatetime, AfterValidator(to_utc)]
# A query bound: with a time zone, or naive and taken as UTC.
UtcQueryDateTime = Annotated[datetime, AfterValidator(to_utc)]


class Strict(BaseModel):
    """Unknown fields are errors: a typo must not be silently ignored. NaN and infinity are never numbers here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class FilterCondition(Strict):
    """One test on the item, as in the seed: ``field`` ``operator`` ``value``."""

    field: Literal["caption", "hashtags", "duration", "type", "title"]
    operator: Literal["contains", "not_contains", "gt", "lt", "eq"]
    value: str | float

    @model_validator(mode="after")
    def _consistent(self) -> FilterCondition:
        if self.operator in ("gt", "lt") and self.field != "duration":
            raise ValueError(f"operator '{self.operator}' compares numbers and only applies to field 'duration'")
        if self.field == "duration" and not isinstance(self.value, float | int):
            raise ValueError(f"field 'duration' needs a number of seconds, got {self.value!r}")
        if self.field == "type" and self.value not in ("video", "image", "text", "carousel"):
            raise ValueError(f"field 'type' takes video, image, text or carousel, got {self.value!r}")
        return self


class ConditionSet(Strict):
    conditions: list[FilterCondition] = Field(min_length=1)
    operator: Literal["and", "or"] = "and"
