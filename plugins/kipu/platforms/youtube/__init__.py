"""YouTube (Data API v3): resumable uploads, quota accounting, the channel feed for polling, WebSub push."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform
from kipu.platforms.youtube.options import YouTubeOptions

PLATFORM = Platform(
    name="youtube",
    title="YouTube",
    hook="kipu.platforms.youtube.hook:YouTubeHook",
    captions=CaptionRules(
        "youtube", 5000, "chars", suggested_hashtags=3, home_tags=frozenset({"shorts", "youtubeshorts", "youtube"})
    ),
    capabilities=Capabilities(text=False, video=True, scheduling=True),
    options=YouTubeOptions,
    oauth=OAuthApp(
        "youtube",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
        ("https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"),
        client_auth="body",
        pkce=True,
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    ),
    webhook="kipu.platforms.youtube.websub:WEBHOOK",
    webhook_signature="x-hub-signature",
    webhook_max_bytes=64 * 1024,  # one Atom entry of a few KB
)
