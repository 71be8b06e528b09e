"""The platform-hook interface that every source and target implements, and the publish contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kipu.captions.platforms import CaptionRules, rules_for
from kipu.hooks.errors import AuthExpired, NeedsReconnect, PlatformError, RateLimited, Rejected, Transient
from kipu.platforms.spec import Capabilities
from kipu.specs.items import ContentItem, ContentType, MediaRef

__all__ = [
    "AuthExpired",
    "Capabilities",
    "NeedsReconnect",
    "PlatformError",
    "PublishRequest",
    "PublishResult",
    "RateLimited",
    "Rejected",
    "SourceHook",
    "TargetHook",
    "Transient",
]

if TYPE_CHECKING:
    from kipu.hooks.http import LimitedClient


class PublishRequest(BaseModel):
    """What one publish call sends; ``idempotency_key`` is the ``posts`` row id."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str
    content_type: ContentType = "text"
    caption: str = ""
    title: str | None = None
    media: list[MediaRef] = Field(default_factory=list)
    link: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # When the post intent was written: platforms derive deterministic ids from it (Bluesky's record key).
    created_at: AwareDatetime | None = None
    # The platform's handle from an earlier attempt that was accepted but not final (TikTok's publish_id).
    publish_ref: str | None = None
    # When the platform should publish it (the step's ``schedule_at``), for platforms that schedule.
    schedule_at: AwareDatetime | None = None


class PublishResult(BaseModel):
    """A publish outcome; ``awaiting`` means accepted and in moderation or processing, final later."""

    platform_post_id: str | None = None
    url: str | None = None
    awaiting: bool = False
    publish_ref: str | None = None


class SourceHook(BaseHook, ABC):
    """A platform Kipu can watch for new content (``hooks.client.HttpHook`` drives both from one ``poll`` flow)."""

    platform: ClassVar[str]

    @abstractmethod
    def list_posts(self, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        """Posts newer than ``since_id`` (all recent posts when None), oldest first."""

    @abstractmethod
    async def fetch_posts(self, http: LimitedClient, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        """``list_posts`` for the poll engine, through its shared limited client."""


class TargetHook(BaseHook, ABC):
    """A platform Kipu can publish to, exactly once per idempotency key."""

    platform: ClassVar[str]
    # Set by ``publishing.deliver``: stores the platform's handle the moment the platform has the post, so a crash
    # between then and the outcome being recorded is settled from the handle instead of posting again.
    on_accepted: Callable[[str], None] | None = None

    def accepted(self, ref: str) -> None:
        """The platform has the post under ``ref`` (TikTok's publish_id), final or not."""
        if self.on_accepted is not None:
            self.on_accepted(ref)

    @property
    def capabilities(self) -> Capabilities:
        """What the platform can publish, as its package declares it."""
        from kipu.platforms import get

        return get(self.platform).capabilities

    @property
    def caption_rules(self) -> CaptionRules:
        return rules_for(self.platform)

    def check(self, request: PublishRequest) -> list[str]:
        """Every limit the request breaks, checked before any call to the platform: the caption in its counting,
        what the platform declares it can publish, and its options."""
        from kipu.platforms.options import problems_and_options

        problems = list(self.caption_rules.violations(request.caption))
        caps = self.capabilities
        kinds = [m.kind for m in request.media if m.kind in ("image", "video")]
        if "video" in kinds and not caps.video:
            problems.append(f"{self.platform} cannot publish video")
        images = kinds.count("image")
        if images and not caps.image:
            problems.append(f"{self.platform} cannot publish images")
        elif caps.max_images and images > caps.max_images:
            problems.append(f"{self.platform} takes at most {caps.max_images} images, got {images}")
        elif len(kinds) > 1 and not caps.carousel:
            problems.append(f"{self.platform} cannot publish a carousel (several media in one post), got {len(kinds)}")
        if request.schedule_at is not None and not caps.scheduling:
            problems.append(f"{self.platform} cannot schedule a post; put a delay step before publishing instead")
        problems += problems_and_options(self.platform, request.options)[0]
        return problems

    @abstractmethod
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """The post already published for this request's idempotency key, if any: what makes a retry safe."""

    @abstractmethod
    def publish(self, request: PublishRequest) -> PublishResult:
        """Publish once; raise a PlatformError subclass on failure."""
