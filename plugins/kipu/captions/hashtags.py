"""Unicode-aware hashtag extraction and normalisation (``#Café`` and ``#café`` are the same tag)."""

from __future__ import annotations

import unicodedata

import regex

from kipu.captions.entities import TAG_BODY, TAG_SIGNS, find

# One tag as a token: "#" or its fullwidth form U+FF03 (a hashtag sign on X), then letters, marks, digits or
# underscores, not all digits. Finding tags in a text is ``captions.entities.find``, which knows about links.
HASHTAG_RE = regex.compile(rf"(?<![\p{{L}}\p{{M}}\p{{N}}_&{TAG_SIGNS}])[{TAG_SIGNS}]({TAG_BODY})")


def normalise_tag(tag: str) -> str:
    """The comparison key of a tag: NFC, case-folded, without the leading ``#`` or its fullwidth form."""
    return unicodedata.normalize("NFC", tag.lstrip(TAG_SIGNS)).casefold()


def extract_hashtags(text: str) -> list[str]:
    """Tags in order of first appearance, without ``#``, de-duplicated case-insensitively; a ``#`` inside a link is
    part of the link (``captions.entities``)."""
    seen: set[str] = set()
    out: list[str] = []
    for entity in find(unicodedata.normalize("NFC", text)):
        if entity.kind != "hashtag":
            continue
        key = normalise_tag(entity.value)
        if key not in seen:
            seen.add(key)
            out.append(entity.value)
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
