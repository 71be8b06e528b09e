"""Safe truncation: cut at a word boundary, never inside a grapheme, and re-check in the platform's counting."""

from __future__ import annotations

from collections.abc import Callable

from kipu.captions.counting import graphemes

ELLIPSIS = "…"
_TRAILING = " \t\n\r,;:-–—([{"


def truncate(text: str, fits: Callable[[str], bool], ellipsis: str = ELLIPSIS) -> tuple[str, bool]:
    """The longest prefix of ``text`` (plus ``ellipsis``) that ``fits``, preferring word boundaries.

    Returns ``(text, truncated)``. An empty string is returned only if not even the ellipsis fits.
    """
    if fits(text):
        return text, False
    clusters = graphemes(text)

    def candidate(k: int) -> str:
        return "".join(clusters[:k]).rstrip(_TRAILING) + ellipsis

    # Binary search the longest grapheme prefix that fits.
    lo, hi = 0, len(clusters)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(candidate(mid)):
            lo = mid
        else:
            hi = mid - 1
    best = lo
    # Prefer ending on a word boundary unless that loses more than half of what fits.
    for k in range(best, max(best // 2, 0), -1):
        if k < len(clusters) and clusters[k].isspace():
            best = k
            break
    # Counting that is not monotone in the prefix (a URL cut in half) needs a last linear check.
    while best > 0 and not fits(candidate(best)):
        best -= 1
    result = candidate(best)
    if best == 0:
        return (ellipsis if fits(ellipsis) else ""), True
    return result, True
