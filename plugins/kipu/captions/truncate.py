"""Safe truncation: cut at a word boundary, never inside a grapheme or an entity, and re-check in the platform's
counting. A link, mention or hashtag that does not fit is left out whole, and the ellipsis never touches one."""

from __future__ import annotations

from collections.abc import Callable

from kipu.captions.counting import graphemes
from kipu.captions.entities import DEFAULT, EntityRules, find, inside

ELLIPSIS = "…"
_TRAILING = " \t\n\r,;:-–—([{"


def truncate(
    text: str, fits: Callable[[str], bool], ellipsis: str = ELLIPSIS, rules: EntityRules = DEFAULT
) -> tuple[str, bool]:
    """The longest prefix of ``text`` (plus ``ellipsis``) that ``fits``, preferring word boundaries.

    Returns ``(text, truncated)``. An empty string is returned only if not even the ellipsis fits.
    """
    if fits(text):
        return text, False
    clusters = graphemes(text)
    offsets = [0]
    for cluster in clusters:
        offsets.append(offsets[-1] + len(cluster))
    entities = find(text, rules)
    blocked = inside(entities, len(text))
    ends = {e.end for e in entities}

    def allowed(k: int) -> bool:
        # Never inside an entity, and never right after one: an ellipsis glued to a link or a tag becomes part of it
        # ("https://x.com/a?b=c…"), so an entity at the cut is left out whole.
        if blocked[offsets[k]]:
            return False
        return k == len(clusters) or len(text[: offsets[k]].rstrip(_TRAILING)) not in ends

    # Grapheme boundaries where a cut may fall.
    cuts = [k for k in range(len(clusters) + 1) if allowed(k)]

    def candidate(k: int) -> str:
        return text[: offsets[k]].rstrip(_TRAILING) + ellipsis

    # Binary search the longest allowed prefix that fits.
    lo, hi = 0, len(cuts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(candidate(cuts[mid])):
            lo = mid
        else:
            hi = mid - 1
    best = lo
    # Prefer ending on a word boundary unless that loses more than half of what fits.
    for i in range(best, max(best // 2, 0), -1):
        k = cuts[i]
        if k < len(clusters) and clusters[k].isspace():
            best = i
            break
    # Counting that is not monotone in the prefix needs a last linear check.
    while best > 0 and not fits(candidate(cuts[best])):
        best -= 1
    if cuts[best] == 0:
        return (ellipsis if fits(ellipsis) else ""), True
    return candidate(cuts[best]), True
