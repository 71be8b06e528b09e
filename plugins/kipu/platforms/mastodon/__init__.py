"""Mastodon: one OAuth app registered per instance, the instance's own limits, media processed asynchronously,
visibility and content warnings, and an account's statuses for polling."""

from kipu.auth.apps import OAuthApp
from kipu.captions.entities import EntityRules
from kipu.captions.platforms import CaptionRules
from kipu.platforms.mastodon.options import MastodonOptions
from kipu.platforms.spec import Capabilities, Platform

# Mastodon's own detector (app/models/account.rb MENTION_RE): a mention is @user or @user@domain, after a character
# that is not part of a word; a URL is counted as 23 characters and a remote mention by its user part.
ENTITIES = EntityRules(
    start="nonword", mention=r"@[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?(?:@[A-Za-z0-9.-]+[A-Za-z0-9])?"
)

PLATFORM = Platform(
    name="mastodon",
    title="Mastodon",
    hook="kipu.platforms.mastodon.hook:MastodonHook",
    # 500 is Mastodon's default; a connection keeps its own instance's limit (``/api/v2/instance``), checked before
    # every publish.
    captions=CaptionRules("mastodon", 500, "link_weighted", suggested_hashtags=3, entities=ENTITIES),
    capabilities=Capabilities(
        text=True, image=True, video=True, carousel=True, alt_text=True, scheduling=True, max_images=4
    ),
    # Paths on the instance: ``kipu.auth.oauth.app_for`` makes them URLs there and registers Kipu once per instance.
    oauth=OAuthApp(
        "mastodon",
        "/oauth/authorize",
        "/oauth/token",
        ("read:accounts", "read:statuses", "write:media", "write:statuses"),
        pkce=True,
        client_auth="body",
        per_instance=True,
    ),
    register_client="kipu.platforms.mastodon.instance:register_client",
    options=MastodonOptions,
)
