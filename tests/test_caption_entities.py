"""One detector of links, mentions and hashtags, with each platform's rules, serving counting, truncation and
facets. Property tests: random captions with URLs, tags, mentions and emoji always come out within the limit, with
no broken entity, no ellipsis glued to one, and no overlapping entities."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kipu.captions.counting import x_weighted_length
from kipu.captions.entities import find
from kipu.captions.platforms import rules_for
from kipu.captions.truncate import ELLIPSIS

PLATFORMS = ["x", "bluesky", "threads", "instagram", "linkedin", "pinterest"]

words = st.sampled_from(["pasta", "tonight", "Café", "über", "日本語", "ok", "a", "x" * 30, "—", "(see)", "end."])
emoji = st.sampled_from(["🍝", "👩🏽‍🍳", "🇯🇵", "❤️", "✨"])
urls = st.builds(
    lambda host, path, tail: f"https://{host}/{path}{tail}",
    st.sampled_from(["example.com", "kipu.example", "a.b.co"]),
    st.sampled_from(["docs", "a/b/c", "x" * 120, "@someone/about", "p"]),
    st.sampled_from(["", "?b=c", "#install", "?q=1&r=2#top", "/"]),
)
tags = st.builds(lambda t: f"#{t}", st.sampled_from(["pasta", "Café", "日本", "a_b", "ad"]))
mentions = st.sampled_from(["@ana", "@ana.bsky.social", "@bob_99", "@x@mastodon.social"])
captions = st.lists(st.one_of(words, emoji, urls, tags, mentions), min_size=1, max_size=40).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=captions, platform=st.sampled_from(PLATFORMS), limit=st.integers(min_value=1, max_value=120))
def test_truncation_fits_and_never_breaks_an_entity(text: str, platform: str, limit: int) -> None:
    rules = rules_for(platform)

    def fits(candidate: str) -> bool:
        return not rules.violations(candidate, limit)

    result, truncated = rules.truncate(text, fits)
    assert result == "" or fits(result)
    if not truncated:
        assert result == text
        return
    kept = result.removesuffix(ELLIPSIS)
    assert text.startswith(kept)
    original = {(e.kind, e.start, e.end) for e in find(text, rules.entities)}
    for e in find(result, rules.entities):
        assert e.end <= len(kept), f"{e} reaches into the ellipsis: {result!r}"
        assert (e.kind, e.start, e.end) in original, f"{e} was cut from {text!r}: {result!r}"
    if result.endswith(ELLIPSIS) and kept:
        assert all(e.end != len(kept) for e in find(text, rules.entities)), f"ellipsis glued: {result!r}"


@settings(max_examples=300, deadline=None)
@given(text=captions, platform=st.sampled_from(PLATFORMS))
def test_entities_never_overlap_and_nothing_is_found_inside_a_link(text: str, platform: str) -> None:
    entities = find(text, rules_for(platform).entities)
    for a, b in itertools.pairwise(entities):
        assert a.end <= b.start
    links = [(e.start, e.end) for e in entities if e.kind == "url"]
    for e in entities:
        if e.kind != "url":
            assert all(e.end <= s or e.start >= t for s, t in links)


def test_bluesky_rules_from_a_real_pds() -> None:
    rules = rules_for("bluesky").entities
    text = "read https://example.com/docs/#install and https://example.com/@someone/about #kipu @ana.bsky.social x#no"
    found = [(e.kind, e.text) for e in find(text, rules)]
    assert found == [
        ("url", "https://example.com/docs/#install"),
        ("url", "https://example.com/@someone/about"),
        ("hashtag", "#kipu"),
        ("mention", "@ana.bsky.social"),
    ]


def test_a_url_at_the_cut_is_dropped_whole_and_the_ellipsis_stands_apart() -> None:
    rules = rules_for("bluesky")
    text = "Recipe at https://example.com/a?b=c " + "more words " * 40
    cut, truncated = rules.truncate(text, lambda t: len(t) <= 30)
    assert truncated and "https://" not in cut and cut.endswith("…")
    cut, _ = rules.truncate("x " + "https://example.com/" + "p" * 200, lambda t: len(t) <= 150)
    assert cut == "x…"  # a URL longer than the limit is never cut in the middle
    cut, _ = rules.truncate("see https://example.com/a?b=c and more", lambda t: len(t) <= 32)
    assert cut == "see…"  # the link at the cut is left out whole, never glued to the ellipsis


def test_x_counts_every_url_as_23() -> None:
    assert x_weighted_length("a https://example.com/" + "p" * 200) == 2 + 23
