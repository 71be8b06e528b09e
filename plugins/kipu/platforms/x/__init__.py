"""X (API v2): posts, chunked media upload, the user timeline for polling, OAuth 2.0 with PKCE."""

from kipu.auth.apps import OAuthApp
from kipu.captions.entities import EntityRules
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="x",
    title="X",
    hook="kipu.platforms.x.hook:XHook",
    aliases=("twitter",),  # the seed's name for it
    # 280 weighted characters: URLs 23, CJK and emoji 2 (twitter-text); a mention is 1-15 word characters.
    captions=CaptionRules(
        "x", 280, "x_weighted", suggested_hashtags=2, entities=EntityRules(mention=r"@[A-Za-z0-9_]{1,15}")
    ),
    # Up to four images in one post: X's carousel.
    capabilities=Capabilities(text=True, image=True, video=True, carousel=True, alt_text=False, max_images=4),
    oauth=OAuthApp(
        "x",
        "https://x.com/i/oauth2/authorize",
        "https://api.x.com/2/oauth2/token",
        ("tweet.read", "tweet.write", "users.read", "media.write", "offline.access"),
        pkce=True,
    ),
)
