"""Instagram (Graph API): images, Reels and carousels through containers, a first comment, polling."""

from kipu.auth.apps import OAuthApp
from kipu.captions.entities import EntityRules
from kipu.captions.platforms import CaptionRules
from kipu.platforms.instagram.options import InstagramOptions
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="instagram",
    title="Instagram",
    hook="kipu.platforms.instagram.hook:InstagramHook",
    captions=CaptionRules(
        "instagram",
        2200,
        "chars",
        max_hashtags=30,
        max_mentions=20,
        suggested_hashtags=5,
        entities=EntityRules(mention=r"@[A-Za-z0-9_.]+"),
        home_tags=frozenset({"reels", "reelsinstagram", "instagram", "instagood", "explorepage"}),
    ),
    capabilities=Capabilities(
        text=False, image=True, video=True, carousel=True, alt_text=True, first_comment=True, max_images=10
    ),
    oauth=OAuthApp(
        "instagram",
        "https://www.instagram.com/oauth/authorize",
        "https://api.instagram.com/oauth/access_token",
        ("instagram_business_basic", "instagram_business_content_publish", "instagram_business_manage_comments"),
        scope_separator=",",
        client_auth="body",
    ),
    options=InstagramOptions,
    self_refreshing=True,
    webhook="kipu.platforms.meta.webhooks:INSTAGRAM",
    webhook_signature="x-hub-signature-256",
)
