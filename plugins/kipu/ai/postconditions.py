"""Hard post-conditions on a model's caption, enforced in code whatever the model (or the source text) says."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import regex

from kipu.captions.counting import URL_RE, graphemes, is_emoji
from kipu.captions.entities import Entity, find
from kipu.captions.hashtags import HASHTAG_RE, dedupe_tags, extract_hashtags, normalise_tag
from kipu.captions.platforms import CaptionRules
from kipu.captions.rewriter import RewriteRequest, tag_budget


@dataclass
class Checked:
    caption: str
    hashtags: list[str]
    overrun: int | None = None  # the measured length when the caption is too long
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def clean_tags(tags: list[str]) -> list[str]:
    """Model-suggested tags as valid, Unicode-aware tags without ``#``, de-duplicated case-insensitively."""
    out = []
    for tag in tags:
        tag = unicodedata.normalize("NFC", regex.sub(r"\s+", "", str(tag)).lstrip("#"))
        if HASHTAG_RE.fullmatch("#" + tag):
            out.append(tag)
    return dedupe_tags(out)


def mentions(text: str, rules: CaptionRules) -> list[Entity]:
    return [e for e in find(text, rules.entities) if e.kind == "mention"]


def _without(text: str, entities: list[Entity]) -> str:
    for e in reversed(entities):
        text = text[: e.start] + text[e.end :]
    return text


def _strip_emojis(text: str) -> str:
    return "".join(c for c in graphemes(text) if not is_emoji(c))


def _unhash_after(text: str, keep: int) -> str:
    """Turn every inline hashtag after the first ``keep`` distinct ones back into a plain word."""
    seen: list[str] = []

    def sub(m: regex.Match) -> str:
        key = normalise_tag(m.group(1))
        if key in seen:
            return m.group(0)
        if len(seen) < keep:
            seen.append(key)
            return m.group(0)
        return m.group(1)

    return HASHTAG_RE.sub(sub, text)


def enforce(
    caption: str, tags: list[str], req: RewriteRequest, rules: CaptionRules, limit: int, *, final: bool
) -> Checked:
    """The caption made valid for ``rules``: tags normalised and capped, mentions and links kept, emojis and
    hashtags removed when the config says so. When it is still too long: ``overrun`` (not ``final``) so the caller
    can re-ask, or a safe truncation at word boundaries (``final``)."""
    instructions = (req.custom_instructions or "").lower()
    notes: list[str] = []
    body = unicodedata.normalize("NFC", caption or "").strip()
    if not req.include_emojis:
        body = _strip_emojis(body)
    keep: list[str] = []
    if "no link" in instructions:
        body = URL_RE.sub("", body)
    else:
        keep += [u for u in URL_RE.findall(req.text) if u not in body]
    if "no mention" in instructions:
        body = _without(body, mentions(body, rules))
    else:
        keep += [m.text for m in mentions(req.text, rules) if m.text not in body]
    kept = " ".join(dict.fromkeys(keep))
    if kept:
        notes.append(f"kept {len(keep)} link(s)/mention(s) from the source that the model dropped")

    tag_cap = tag_budget(rules, req)
    if not req.include_hashtags or "no hashtag" in instructions:
        body, tags, tag_cap = HASHTAG_RE.sub(lambda m: m.group(1), body), [], 0
    elif rules.max_hashtags is not None:
        body = _unhash_after(body, rules.max_hashtags)
    inline = {normalise_tag(t) for t in extract_hashtags(body)}
    tags = [t for t in clean_tags(tags) if normalise_tag(t) not in inline][: max(0, tag_cap - len(inline))]
    body = regex.sub(r"[ \t]+", " ", body).strip()

    def assemble(b: str, tg: list[str]) -> str:  # preserved links and mentions are never cut
        return "\n\n".join(p for p in (" ".join(x for x in (b, kept) if x), " ".join(f"#{t}" for t in tg)) if p)

    def fits(text: str) -> bool:
        return not rules.violations(text, limit)

    text = assemble(body, tags)
    if fits(text):
        return Checked(text, extract_hashtags(text), notes=notes)
    if not final:
        return Checked(text, tags, overrun=rules.measure(text), notes=notes)
    cut, _ = rules.truncate(body, lambda b: fits(assemble(b, tags)))
    if not cut or not fits(assemble(cut, tags)):
        tags = []
        cut, _ = rules.truncate(body, lambda b: fits(assemble(b, tags)))
    text = assemble(cut, tags)
    if not fits(text):  # the preserved parts alone are too long: cut the whole caption as text
        text, _ = rules.truncate(text, fits)
    notes.append(f"truncated to fit {rules.platform}'s limit of {limit} {rules.unit}")
    return Checked(text, extract_hashtags(text), truncated=True, notes=notes)
