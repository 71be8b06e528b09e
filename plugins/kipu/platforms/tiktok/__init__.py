"""TikTok (Content Posting API): creator info, Direct Post or inbox drafts, chunked upload, moderation, polling."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform
from kipu.platforms.tiktok.options import TikTokOptions

PLATFORM = Platform(
    name="tiktok",
    title="TikTok",
    hook="kipu.platforms.tiktok.hook:TikTokHook",
    captions=CaptionRules(
        "tiktok",
        2200,
        "chars",
        suggested_hashtags=5,
        home_tags=frozenset({"fyp", "foryou", "foryoupage", "fy", "tiktok", "tiktokviral", "viral"}),
    ),
    capabilities=Capabilities(text=False, image=False, video=True),
    options=TikTokOptions,
    oauth=OAuthApp(
        "tiktok",
        "https://www.tiktok.com/v2/auth/authorize/",
        "https://open.tiktokapis.com/v2/oauth/token/",
        ("user.info.basic", "video.list", "video.publish", "video.upload"),
        scope_separator=",",
        client_auth="body",
        client_id_param="client_key",
        pkce=True,
        # Login Kit documents the challenge as the hex-encoded SHA-256 of the verifier (docs/platforms/tiktok.md).
        pkce_encoding="hex",
    ),
)
