"""LinkedIn: the Posts API with a configurable ``LinkedIn-Version``, image upload, polling the author's posts."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="linkedin",
    title="LinkedIn",
    hook="kipu.platforms.linkedin.hook:LinkedInHook",
    captions=CaptionRules("linkedin", 3000, "chars", suggested_hashtags=3, professional=True),
    capabilities=Capabilities(text=True, image=True, alt_text=True, max_images=1),
    oauth=OAuthApp(
        "linkedin",
        "https://www.linkedin.com/oauth/v2/authorization",
        "https://www.linkedin.com/oauth/v2/accessToken",
        ("openid", "profile", "w_member_social"),
        client_auth="body",
    ),
)
