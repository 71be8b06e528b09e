"""What a platform package declares about itself: one ``Platform`` value, light enough to import anywhere.

The registry (``kipu.platforms``) reads these; the specs' platform names, the caption limits, the OAuth apps, the
connection types and the webhook routes all derive from them, so adding a platform is adding its package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kipu.auth.apps import OAuthApp
    from kipu.captions.platforms import CaptionRules


@dataclass(frozen=True)
class Capabilities:
    """What a platform can publish; enforced before any call (``TargetHook.check``) and at workflow validation.
    ``carousel``: several media in one post; ``scheduling``: the platform publishes at a time it is given."""

    text: bool = True
    image: bool = False
    video: bool = False
    carousel: bool = False
    alt_text: bool = False
    first_comment: bool = False
    scheduling: bool = False
    max_images: int = 0


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    hook: str  # "package.module:Class", imported when first needed
    captions: CaptionRules | None  # None for a source that is never published to
    capabilities: Capabilities
    source: bool = True  # it can be watched for new posts
    target: bool = True  # it can be published to
    # How an account connects: OAuth 2.0 (``oauth`` holds the documented app, or None when apps are per instance),
    # an app password (Bluesky), or by an operator with the CLI (Kipu's local feed and outbox).
    connect: Literal["oauth", "app_password", "operator"] = "oauth"
    oauth: OAuthApp | None = None
    # For a per-instance app (``OAuthApp.per_instance``): "package.module:function" registering a client at an
    # instance, ``(instance, app) -> (client_id, client_secret)``.
    register_client: str | None = None
    # The publish options a step may set for this platform, typed once (``platform_options`` and the common fields).
    options: type[BaseModel] | None = None
    # Long-lived tokens that renew themselves with no refresh token (Instagram, Threads).
    self_refreshing: bool = False
    # The webhook handler ("package.module:object") and the header a delivery must carry to be read at all.
    webhook: str | None = None
    webhook_signature: str | None = None
    # The largest delivery the platform sends (Meta batches up to 1,000 changes); a bigger body is refused at once.
    webhook_max_bytes: int = 1024 * 1024
    aliases: tuple[str, ...] = ()
    local: bool = False  # account-free: the demo's feed and outbox
