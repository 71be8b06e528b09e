"""Length counting as each platform counts: code points, graphemes, UTF-8 bytes, and X's weighted length."""

from __future__ import annotations

import unicodedata

import regex

from kipu.captions.entities import URL_RE

_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")

# twitter-text v3 configuration: weight 100 inside these ranges, 200 elsewhere, scale 100.
_X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
X_URL_WEIGHT = 23


def graphemes(text: str) -> list[str]:
    """User-perceived characters (extended grapheme clusters)."""
    return _GRAPHEME.findall(text)


def grapheme_count(text: str) -> int:
    return len(graphemes(text))


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def is_emoji(cluster: str) -> bool:
    return bool(_EMOJI.search(cluster))


def _x_cluster_weight(cluster: str) -> int:
    if is_emoji(cluster):
        return 2
    return sum(1 if any(lo <= ord(ch) <= hi for lo, hi in _X_LIGHT_RANGES) else 2 for ch in cluster)


def x_weighted_length(text: str) -> int:
    """X's weighted length: URLs count 23, emoji 2, CJK and other heavy code points 2, the rest 1."""
    text = unicodedata.normalize("NFC", text)
    total, pos = 0, 0
    for match in URL_RE.finditer(text):
        total += sum(_x_cluster_weight(c) for c in graphemes(text[pos : match.start()]))
        total += X_URL_WEIGHT
        pos = match.end()
    total += sum(_x_cluster_weight(c) for c in graphemes(text[pos:]))
    return total


def codepoint_count(text: str) -> int:
    return len(text)


LINK_WEIGHT = 23
_REMOTE_MENTION = regex.compile(r"(?<![\w@])(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+[A-Za-z0-9]")


def link_weighted_length(text: str, url_weight: int = LINK_WEIGHT) -> int:
    """Mastodon's count (StatusLengthValidator): graphemes, every URL as 23 whatever its length, a remote mention
    by its user part."""
    text = URL_RE.sub("x" * url_weight, text)
    return grapheme_count(_REMOTE_MENTION.sub(r"\1", text))


COUNTERS = {
    "chars": codepoint_count,
    "graphemes": grapheme_count,
    "x_weighted": x_weighted_length,
    "link_weighted": link_weighted_length,
}
# Each counting as a prompt explains it to a model (``ai/prompts.py``).
EXPLAINED = {
    "chars": "characters",
    "graphemes": "graphemes (user-perceived characters; an emoji counts 1)",
    "x_weighted": "weighted characters (a link counts 23; CJK characters and emoji count 2)",
    "link_weighted": "graphemes (a link counts 23; @user@domain counts as @user; an emoji counts 1)",
}
