"""Unicode-aware hashtag extraction and normalisation (``#Café`` and ``#café`` are the same tag)."""

from __future__ import annotations

import unicodedata

import regex

# A tag starts after a non-word character with "#" or its fullwidth form U+FF03 (a hashtag sign on X), holds
# letters, marks, digits or underscores, and is not all digits.
TAG_SIGNS = "#\uff03"
HASHTAG_RE = regex.compile(
    r"(?<![\p{L}\p{M}\p{N}_&#\uff03])[#\uff03]([\p{L}\p{M}\p{N}_]*[\p{L}\p{M}][\p{L}\p{M}\p{N}_]*)"
)


def normalise_tag(tag: str) -> str:
    """The comparison key of a tag: NFC, case-folded, without the leading ``#`` or its fullwidth form."""
    return unicodedata.normalize("NFC", tag.lstrip(TAG_SIGNS)).casefold()


def extract_hashtags(text: str) -> list[str]:
    """Tags in order of first appearance, without ``#``, de-duplicated case-insensitively."""
    seen: set[str] = set()
    out: list[str] = []
    for m in HASHTAG_RE.finditer(unicodedata.normalize("NFC", text)):
        key = normalise_tag(m.group(1))
        if key not in seen:
            seen.add(key)
            out.append(m.group(1))
    return out


def dedupe_tags(tags: list[str], limit: int | None = None) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        key = normalise_tag(tag)
        if key and key not in seen:
            seen.add(key)
            out.append(tag.lstrip(TAG_SIGNS))
    return out[:limit] if limit is not None else out
