"""Threads (Graph API): text, image and video posts through containers, the publishing limit, polling."""

from kipu.auth.apps import OAuthApp
from kipu.captions.platforms import CaptionRules
from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="threads",
    title="Threads",
    hook="kipu.platforms.threads.hook:ThreadsHook",
    captions=CaptionRules("threads", 500, "chars", max_hashtags=1, suggested_hashtags=1),
    capabilities=Capabilities(text=True, image=True, video=True, alt_text=True, max_images=1),
    oauth=OAuthApp(
        "threads",
        "https://threads.net/oauth/authorize",
        "https://graph.threads.net/oauth/access_token",
        ("threads_basic", "threads_content_publish"),
        scope_separator=",",
        client_auth="body",
    ),
    self_refreshing=True,
    webhook="kipu.platforms.meta.webhooks:THREADS",
    webhook_signature="x-hub-signature-256",
)
