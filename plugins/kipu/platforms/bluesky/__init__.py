"""Bluesky (AT Protocol): app-password sessions, blobs, posts with facets at UTF-8 byte offsets, polling."""

from kipu.captions.entities import EntityRules
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

# Bluesky's own detector: a tag or a mention only at the start or after whitespace; a handle is a domain name.
ENTITIES = EntityRules(
    start="space", mention=r"@[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+"
)

PLATFORM = Platform(
    name="bluesky",
    title="Bluesky",
    hook="kipu.platforms.bluesky.hook:BlueskyHook",
    captions=CaptionRules("bluesky", 300, "graphemes", max_bytes=3000, suggested_hashtags=2, entities=ENTITIES),
    capabilities=Capabilities(text=True, image=True, carousel=True, alt_text=True, max_images=4),
    connect="app_password",
)
