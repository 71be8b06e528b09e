"""Registers Kipu's connection types with Airflow (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    hooks = {
        "kipu_openai": "kipu.connection_types.OpenAIConnection",
        "kipu_x_app": "kipu.connection_types.XAppConnection",
        "kipu_linkedin_app": "kipu.connection_types.LinkedInAppConnection",
        "kipu_pinterest_app": "kipu.connection_types.PinterestAppConnection",
        "kipu_facebook_app": "kipu.connection_types.FacebookAppConnection",
        "kipu_instagram_app": "kipu.connection_types.InstagramAppConnection",
        "kipu_threads_app": "kipu.connection_types.ThreadsAppConnection",
        "kipu_tiktok_app": "kipu.connection_types.TikTokAppConnection",
        "kipu_youtube_app": "kipu.connection_types.YouTubeAppConnection",
        "kipu_feed": "kipu.hooks.feed.FeedHook",
        "kipu_outbox": "kipu.hooks.outbox.OutboxHook",
        "kipu_bluesky": "kipu.hooks.bluesky.BlueskyHook",
        "kipu_x": "kipu.hooks.x.XHook",
        "kipu_linkedin": "kipu.hooks.linkedin.LinkedInHook",
        "kipu_pinterest": "kipu.hooks.pinterest.PinterestHook",
        "kipu_instagram": "kipu.hooks.instagram.InstagramHook",
        "kipu_facebook": "kipu.hooks.facebook.FacebookPageHook",
        "kipu_threads": "kipu.hooks.threads.ThreadsHook",
        "kipu_tiktok": "kipu.hooks.tiktok.TikTokHook",
        "kipu_youtube": "kipu.hooks.youtube.YouTubeHook",
    }
    return {
        "package-name": "kipu",
        "name": "Kipu",
        "description": "Content cross-posting on Airflow: connection types for AI and platform apps.",
        "connection-types": [{"connection-type": t, "hook-class-name": h} for t, h in hooks.items()],
    }
