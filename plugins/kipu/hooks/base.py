"""The platform-hook interface that every source and target implements, and the publish contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kipu.captions.platforms import CaptionRules, rules_for
from kipu.specs.items import ContentItem, ContentType, MediaRef

if TYPE_CHECKING:
    from kipu.hooks.http import LimitedClient


class PlatformError(Exception):
    """Base of the error taxonomy every platform maps onto."""

    retryable: ClassVar[bool] = False


class Transient(PlatformError):
    retryable = True


class RateLimited(PlatformError):
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthExpired(PlatformError):
    retryable = True


class Rejected(PlatformError):
    """The platform refused the content; retrying cannot help."""


class NeedsReconnect(PlatformError):
    """The connection must be re-authorised by the user."""


@dataclass(frozen=True)
class Capabilities:
    text: bool = True
    image: bool = False
    video: bool = False
    carousel: bool = False
    alt_text: bool = False
    first_comment: bool = False
    scheduling: bool = False
    max_images: int = 0


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


class PublishResult(BaseModel):
    """A publish outcome; ``awaiting`` means accepted and in moderation or processing, final later."""

    platform_post_id: str | None = None
    url: str | None = None
    awaiting: bool = False
    publish_ref: str | None = None


class SourceHook(BaseHook, ABC):
    """A platform Kipu can watch for new content."""

    platform: ClassVar[str]

    @abstractmethod
    def list_posts(self, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        """Posts newer than ``since_id`` (all recent posts when None), oldest first."""

    async def fetch_posts(self, http: LimitedClient, since_id: str | None = None, limit: int = 50) -> list[ContentItem]:
        """``list_posts`` for the poll engine, through its shared limited client; hooks override it."""
        import asyncio

        return await asyncio.to_thread(self.list_posts, since_id, limit)


class TargetHook(BaseHook, ABC):
    """A platform Kipu can publish to, exactly once per idempotency key."""

    platform: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Set by ``publishing.deliver``: stores the platform's handle the moment the platform has the post, so a crash
    # between then and the outcome being recorded is settled from the handle instead of posting again.
    on_accepted: Callable[[str], None] | None = None

    def accepted(self, ref: str) -> None:
        """The platform has the post under ``ref`` (TikTok's publish_id), final or not."""
        if self.on_accepted is not None:
            self.on_accepted(ref)

    @property
    def caption_rules(self) -> CaptionRules:
        return rules_for(self.platform)

    def check(self, request: PublishRequest) -> list[str]:
        """Every limit the request breaks, checked before any call to the platform."""
        problems = list(self.caption_rules.violations(request.caption))
        caps = self.capabilities
        kinds = [m.kind for m in request.media]
        if "video" in kinds and not caps.video:
            problems.append(f"{self.platform} cannot publish video")
        images = kinds.count("image")
        if images and not caps.image:
            problems.append(f"{self.platform} cannot publish images")
        elif caps.max_images and images > caps.max_images:
            problems.append(f"{self.platform} takes at most {caps.max_images} images, got {images}")
        return problems

    @abstractmethod
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """The post already published for this request's idempotency key, if any: what makes a retry safe."""

    @abstractmethod
    def publish(self, request: PublishRequest) -> PublishResult:
        """Publish once; raise a PlatformError subclass on failure."""
