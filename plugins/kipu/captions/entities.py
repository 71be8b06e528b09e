"""One detector of links, mentions and hashtags in a caption, with each platform's own rules.

Counting (X and Mastodon weigh a URL as 23), truncation (never cut inside an entity, never glue the ellipsis to one)
and Bluesky's facets all read this detector, so they agree on where an entity starts and ends. URLs are found
first; a tag or a mention inside a URL is part of the URL (``…/docs/#install`` is no tag, ``…/@someone/about`` no
mention). Entities never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import regex

# A link: a scheme, then anything but whitespace and quotes, not ending in sentence punctuation.
URL_RE = regex.compile(r"(?i)\bhttps?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
TAG_SIGNS = "#\uff03"  # "#" and its fullwidth form (a hashtag sign on X)
TAG_BODY = r"[\p{L}\p{M}\p{N}_]*[\p{L}\p{M}][\p{L}\p{M}\p{N}_]*"

Kind = Literal["url", "mention", "hashtag"]


@dataclass(frozen=True)
class Entity:
    kind: Kind
    start: int  # character offsets in the text: start inclusive, end exclusive
    end: int
    text: str

    @property
    def value(self) -> str:
        """The tag without its sign, the handle without ``@``, the URL itself."""
        return self.text[1:] if self.kind in ("hashtag", "mention") else self.text


@dataclass(frozen=True)
class EntityRules:
    """Where a platform sees a tag or a mention start, and what a mention looks like there."""

    # "space": only at the start of the text or after whitespace (Bluesky's detector);
    # "nonword": after any character that is not part of a word (X's and Mastodon's).
    start: Literal["space", "nonword"] = "nonword"
    mention: str = r"@[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"


DEFAULT = EntityRules()


@dataclass(frozen=True)
class _Compiled:
    tag: regex.Pattern[str]
    mention: regex.Pattern[str]


_CACHE: dict[EntityRules, _Compiled] = {}


def _compiled(rules: EntityRules) -> _Compiled:
    if rules not in _CACHE:
        before = r"(?<!\S)" if rules.start == "space" else r"(?<![\p{L}\p{M}\p{N}_&@#\uff03/])"
        _CACHE[rules] = _Compiled(
            tag=regex.compile(before + f"[{TAG_SIGNS}]" + f"({TAG_BODY})"),
            mention=regex.compile(before + f"(?:{rules.mention})" + r"(?![\p{L}\p{N}_])"),
        )
    return _CACHE[rules]


def find(text: str, rules: EntityRules = DEFAULT) -> list[Entity]:
    """Every link, mention and hashtag of ``text``, in order, none overlapping and none inside a link."""
    out = [Entity("url", m.start(), m.end(), m.group(0)) for m in URL_RE.finditer(text)]
    # The offsets already taken, one byte each: checking a match costs its own length, not the entities found so
    # far (that was quadratic in a caption full of tags).
    taken = bytearray(len(text))
    for e in out:
        taken[e.start : e.end] = b"\x01" * (e.end - e.start)

    patterns = _compiled(rules)
    for kind, pattern in (("mention", patterns.mention), ("hashtag", patterns.tag)):
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            if taken.find(1, start, end) == -1:
                out.append(Entity(kind, start, end, m.group(0)))  # type: ignore[arg-type]
                taken[start:end] = b"\x01" * (end - start)
    return sorted(out, key=lambda e: e.start)


def inside(entities: list[Entity], length: int) -> list[bool]:
    """For each character offset 0..length, whether a cut there would fall inside an entity."""
    blocked = [False] * (length + 1)
    for e in entities:
        for i in range(e.start + 1, e.end):
            blocked[i] = True
    return blocked
