"""Kipu's account-free target: each published post becomes a JSON file and its media in a folder."""

from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="outbox",
    title="Outbox",
    hook="kipu.platforms.outbox.hook:OutboxHook",
    # A generous limit, so the demo shows rewriting, not truncation.
    captions=CaptionRules("outbox", 5000, "chars", suggested_hashtags=5),
    capabilities=Capabilities(text=True, image=True, video=True, carousel=True, alt_text=True, max_images=20),
    source=False,
    connect="operator",
    local=True,
)
