"""Caption rules: a platform's limits in its own counting and where it sees entities; each platform package declares
its own (``kipu.platforms``), and ``rules_for`` reads them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kipu.captions.counting import COUNTERS, utf8_len
from kipu.captions.entities import DEFAULT, EntityRules, find
from kipu.platforms import View


@dataclass(frozen=True)
class CaptionRules:
    platform: str
    max_length: int
    counting: str  # a key of COUNTERS
    max_bytes: int | None = None
    max_hashtags: int | None = None
    # How many hashtags the rewriter adds by default: a house style, not a platform limit.
    suggested_hashtags: int = 3
    professional: bool = False
    # Where the platform sees links, mentions and hashtags (counting, truncation, facets).
    entities: EntityRules = DEFAULT
    max_mentions: int | None = None
    # Tags that only mean something on this platform (#fyp): dropped when a caption is rewritten for another one.
    home_tags: frozenset[str] = frozenset()

    @property
    def counter(self) -> Callable[[str], int]:
        return COUNTERS[self.counting]

    def measure(self, text: str) -> int:
        return self.counter(text)

    def violations(self, text: str, max_length: int | None = None) -> list[str]:
        """Every limit the text breaks, worded with the limit and the platform's counting."""
        limit = min(self.max_length, max_length) if max_length else self.max_length
        problems = []
        length = self.measure(text)
        if length > limit:
            problems.append(f"{self.platform} caption is {length} {self.unit}, over the limit of {limit}")
        if self.max_bytes is not None and utf8_len(text) > self.max_bytes:
            problems.append(
                f"{self.platform} caption is {utf8_len(text)} UTF-8 bytes, over the limit of {self.max_bytes}"
            )
        if self.max_hashtags is not None:
            from kipu.captions.hashtags import extract_hashtags

            n = len(extract_hashtags(text))
            if n > self.max_hashtags:
                problems.append(f"{self.platform} caption has {n} hashtags, over the limit of {self.max_hashtags}")
        if self.max_mentions is not None:
            n = sum(1 for e in find(text, self.entities) if e.kind == "mention")
            if n > self.max_mentions:
                problems.append(f"{self.platform} caption has {n} @mentions, over the limit of {self.max_mentions}")
        return problems

    def truncate(self, text: str, fits: Callable[[str], bool]) -> tuple[str, bool]:
        """``captions.truncate`` with this platform's entities: nothing cut inside a link, mention or tag."""
        from kipu.captions.truncate import truncate

        return truncate(text, fits, rules=self.entities)

    @property
    def unit(self) -> str:
        units = {"graphemes": "graphemes", "x_weighted": "weighted characters"}
        return units.get(self.counting, "characters")


# Every platform's caption rules, as its package declares them (``kipu.platforms``).
RULES: Mapping[str, CaptionRules] = View("captions")


def rules_for(platform: str) -> CaptionRules:
    try:
        return RULES[platform]
    except KeyError:
        raise ValueError(f"no caption rules for platform {platform!r}; known: {', '.join(sorted(RULES))}") from None
