"""Evaluate the seed's FilterCondition lists and trigger filters against a content item."""

from __future__ import annotations

import unicodedata

from kipu.captions.hashtags import extract_hashtags, normalise_tag
from kipu.specs.common import ConditionSet, FilterCondition
from kipu.specs.items import ContentItem
from kipu.specs.triggers import TriggerFilters


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def _tags(item: ContentItem) -> set[str]:
    return {normalise_tag(t) for t in [*item.hashtags, *extract_hashtags(item.caption)]}


def check_condition(cond: FilterCondition, item: ContentItem) -> tuple[bool, str]:
    """Whether ``item`` passes ``cond``, and a sentence saying why."""
    op, value = cond.operator, cond.value
    if cond.field in ("caption", "title"):
        text = _fold((item.caption if cond.field == "caption" else item.title) or "")
        needle = _fold(str(value))
        hit = text == needle if op == "eq" else needle in text
        ok = not hit if op == "not_contains" else hit
        return ok, f"{cond.field} {'does not contain' if not hit else 'contains'} {value!r}"
    if cond.field == "hashtags":
        hit = normalise_tag(str(value)) in _tags(item)
        ok = not hit if op == "not_contains" else hit
        return ok, f"hashtag #{str(value).lstrip('#')} is {'present' if hit else 'absent'}"
    if cond.field == "type":
        hit = item.content_type == value
        ok = not hit if op == "not_contains" else hit
        return ok, f"type is {item.content_type}"
    # duration
    if item.duration_seconds is None:
        return False, "item has no duration"
    d, v = item.duration_seconds, float(value)
    ok = {"gt": d > v, "lt": d < v, "eq": d == v, "contains": d == v, "not_contains": d != v}[op]
    return ok, f"duration {d:g}s {op} {v:g}s is {'true' if ok else 'false'}"


def check_all(rules: ConditionSet, item: ContentItem) -> tuple[bool, list[str]]:
    """Whether the item passes, with the reasons that decided it (the failing ones when it does not)."""
    results = [check_condition(c, item) for c in rules.conditions]
    passed = all(r[0] for r in results) if rules.operator == "and" else any(r[0] for r in results)
    deciding = [r[1] for r in results if r[0] == passed] or [r[1] for r in results]
    return passed, deciding


def trigger_filter_reason(filters: TriggerFilters, item: ContentItem) -> str | None:
    """None if the item passes the trigger's filters, else the reason it is skipped."""
    tags = _tags(item)
    text = _fold(f"{item.title or ''} {item.caption}")
    if filters.hashtags_include and not any(normalise_tag(t) in tags for t in filters.hashtags_include):
        return f"none of the hashtags {filters.hashtags_include} is present"
    for t in filters.hashtags_exclude:
        if normalise_tag(t) in tags:
            return f"hashtag #{t.lstrip('#')} is excluded"
    if filters.keywords_include and not any(_fold(k) in text for k in filters.keywords_include):
        return f"none of the keywords {filters.keywords_include} is present"
    for k in filters.keywords_exclude:
        if _fold(k) in text:
            return f"keyword {k!r} is excluded"
    if filters.content_type and item.content_type != filters.content_type:
        return f"content type {item.content_type} is not {filters.content_type}"
    d = item.duration_seconds
    if filters.min_duration_seconds is not None and (d is None or d < filters.min_duration_seconds):
        return f"duration {d}s is under min_duration_seconds {filters.min_duration_seconds}"
    if filters.max_duration_seconds is not None and (d is None or d > filters.max_duration_seconds):
        return f"duration {d}s is over max_duration_seconds {filters.max_duration_seconds}"
    return None
