"""Facebook Pages (Graph API): feed posts, photos and Reels, with Page tokens; signed webhooks for new posts."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="facebook",
    title="Facebook",
    hook="kipu.platforms.facebook.hook:FacebookPageHook",
    captions=CaptionRules("facebook", 63206, "chars", suggested_hashtags=3),
    capabilities=Capabilities(text=True, image=True, video=True, carousel=True, max_images=10),
    oauth=OAuthApp(
        "facebook",
        "https://www.facebook.com/v24.0/dialog/oauth",
        "https://graph.facebook.com/v24.0/oauth/access_token",
        ("pages_show_list", "pages_read_engagement", "pages_manage_posts"),
        scope_separator=",",
        client_auth="body",
    ),
    webhook="kipu.platforms.meta.webhooks:FACEBOOK",
    webhook_signature="x-hub-signature-256",
)
