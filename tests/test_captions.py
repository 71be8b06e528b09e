"""Platform counting, safe truncation and the offline rewriter."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kipu.captions.counting import grapheme_count, graphemes, utf8_len, x_weighted_length
from kipu.captions.hashtags import extract_hashtags
from kipu.captions.platforms import RULES, rules_for
from kipu.captions.rewriter import RewriteRequest, rewrite
from kipu.captions.truncate import truncate

FAMILY = "👨\u200d👩\u200d👧\u200d👦"


def test_grapheme_counting() -> None:
    assert grapheme_count(FAMILY) == 1
    assert grapheme_count("e\u0301") == 1  # e + combining accent
    assert grapheme_count("🇩🇪🇫🇷") == 2
    assert utf8_len(FAMILY) == 25


@pytest.mark.parametrize(
    "text,weight",
    [
        ("hello", 5),
        ("日本語", 6),
        ("😀", 2),
        (FAMILY, 2),
        ("see https://example.com/a/very/long/path?with=query", 4 + 23),
        ("é", 1),
    ],
)
def test_x_weighted_length(text: str, weight: int) -> None:
    assert x_weighted_length(text) == weight


def test_hashtags_are_unicode_aware_and_deduplicated() -> None:
    assert extract_hashtags("Love #Café and #café, #日本 #123 and a#b #snake_case") == [
        "Café",
        "日本",
        "snake_case",
    ]


def test_truncate_cuts_at_a_word_and_never_splits_a_grapheme() -> None:
    text = "one two three " + FAMILY * 3 + " four"
    out, cut = truncate(text, lambda s: grapheme_count(s) <= 16)
    assert cut and out.endswith("…") and grapheme_count(out) <= 16
    assert all(g in [*graphemes(text), "…"] for g in graphemes(out))


def test_rewrite_fits_bluesky_and_keeps_hashtags() -> None:
    long = "Market day! " + "Tomatoes, cheese and bread. " * 30 + "#Market #Seasonal #fyp"
    r = rewrite(RewriteRequest(text=long, target_platform="bluesky"))
    assert grapheme_count(r.caption) <= 300 and r.truncated
    assert r.caption.endswith("#Market #Seasonal")
    assert "fyp" not in r.caption  # TikTok's own tags are dropped elsewhere


def test_rewrite_for_linkedin_is_professional() -> None:
    r = rewrite(RewriteRequest(text="new video 🎉 about pasta #Pasta", target_platform="linkedin", tone="professional"))
    assert r.caption == "New video about pasta.\n\n#Pasta"


def test_rewrite_options() -> None:
    r = rewrite(
        RewriteRequest(
            text="Yum 😋 #Food",
            target_platform="threads",
            include_hashtags=False,
            include_emojis=False,
            custom_instructions="prefix: New:\nsuffix: Link in bio",
        )
    )
    assert r.caption == "New: Yum\n\nLink in bio"
    assert rewrite(RewriteRequest(text="a b c", target_platform="x", max_length=3)).caption == "a…"


def test_unknown_platform_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no caption rules for platform 'myspace'"):
        rules_for("myspace")


def test_violations_name_the_limit() -> None:
    assert rules_for("bluesky").violations("x" * 301) == ["bluesky caption is 301 graphemes, over the limit of 300"]


text_strategy = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
        st.sampled_from([FAMILY, "🇯🇵", "e\u0301", "日本", " ", "#tag", "https://example.com/x", "\n"]),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=text_strategy,
    platform=st.sampled_from(sorted(RULES)),
    max_length=st.one_of(st.none(), st.integers(1, 400)),
)
def test_rewrite_always_fits(text: str, platform: str, max_length: int | None) -> None:
    result = rewrite(RewriteRequest(text=text, target_platform=platform, max_length=max_length))
    assert rules_for(platform).violations(result.caption, max_length) == []


@settings(max_examples=150, deadline=None)
@given(text=text_strategy, limit=st.integers(1, 300))
def test_truncate_keeps_whole_graphemes(text: str, limit: int) -> None:
    out, _ = truncate(text, lambda s: x_weighted_length(s) <= limit)
    assert x_weighted_length(out) <= limit
    body = out if out == text else out.removesuffix("…")
    assert graphemes(text)[: len(graphemes(body))] == graphemes(body)  # a prefix, cut between graphemes


WEIGHTS = {"a": 1, "日本": 4, "😀": 2, FAMILY: 2, "🇯🇵": 2, "e\u0301": 1, "https://example.com/a/very/long/path?q=1": 23}


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(sorted(WEIGHTS)), max_size=40))
def test_x_weights_add_up_with_emoji_zwj_cjk_and_urls(parts: list[str]) -> None:
    text = " ".join(parts)
    assert x_weighted_length(text) == sum(WEIGHTS[p] for p in parts) + max(0, len(parts) - 1)
    assert grapheme_count(text) == sum(len(graphemes(p)) for p in parts) + max(0, len(parts) - 1)
