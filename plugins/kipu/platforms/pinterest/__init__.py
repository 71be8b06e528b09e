"""Pinterest (API v5): pins with an image or a video on a board, and the user's pins for polling."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.pinterest.options import PinterestOptions
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="pinterest",
    title="Pinterest",
    hook="kipu.platforms.pinterest.hook:PinterestHook",
    captions=CaptionRules("pinterest", 500, "chars", suggested_hashtags=3),
    capabilities=Capabilities(text=False, image=True, video=True, alt_text=True, max_images=1),
    options=PinterestOptions,
    oauth=OAuthApp(
        "pinterest",
        "https://www.pinterest.com/oauth/",
        "https://api.pinterest.com/v5/oauth/token",
        ("boards:read", "pins:read", "pins:write", "user_accounts:read"),
        scope_separator=",",
    ),
)
