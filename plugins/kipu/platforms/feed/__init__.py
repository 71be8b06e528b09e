"""Kipu's account-free source: an RSS 2.0, Atom or JSON Feed, by URL (or a local file in the demo)."""

from kipu.platforms.spec import Capabilities, Platform

PLATFORM = Platform(
    name="feed",
    title="Feed",
    hook="kipu.platforms.feed.hook:FeedHook",
    captions=None,
    capabilities=Capabilities(),
    target=False,
    connect="operator",
    local=True,
)
