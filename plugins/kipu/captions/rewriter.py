"""The offline rule-based caption rewriter: used whenever no AI connection is configured."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from kipu.captions.counting import URL_RE, graphemes, is_emoji
from kipu.captions.hashtags import HASHTAG_RE, dedupe_tags, extract_hashtags, normalise_tag
from kipu.captions.platforms import RULES, CaptionRules, rules_for

TONE_ENDINGS = {"professional": ".", "formal": ".", "enthusiastic": "!", "excited": "!"}
_DIRECTIVE = re.compile(r"^\s*(prefix|prepend|suffix|append|cta)\s*:\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RewriteRequest:
    text: str
    target_platform: str
    tone: str = "casual"
    max_length: int | None = None
    include_hashtags: bool = True
    include_emojis: bool = True
    custom_instructions: str | None = None
    extra_hashtags: tuple[str, ...] = ()
    hashtag_count: int | None = None  # how many hashtags to add; None: the platform's house style


def tag_budget(rules: CaptionRules, req: RewriteRequest) -> int:
    """How many hashtags a caption for ``rules.platform`` gets, never above the platform's maximum."""
    if not req.include_hashtags:
        return 0
    cap = req.hashtag_count if req.hashtag_count is not None else rules.suggested_hashtags
    return min(cap, rules.max_hashtags) if rules.max_hashtags is not None else cap


@dataclass
class RewriteResult:
    caption: str
    hashtags: list[str]
    truncated: bool = False
    engine: str = "offline"  # offline | openai | cache
    notes: list[str] = field(default_factory=list)
    # Filled by the AI path (kipu.ai.service): accounting, and why it fell back to the offline rewriter.
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    fallback: str | None = None


def _strip_emojis(text: str) -> str:
    return "".join(c for c in graphemes(text) if not is_emoji(c))


def _squash_spaces(text: str) -> str:
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def split_trailing_tags(text: str) -> tuple[str, list[str]]:
    """Separate a trailing block of hashtags (``... #a #b #c``) from the body."""
    tokens = text.rstrip().split()
    tail: list[str] = []
    while tokens and HASHTAG_RE.fullmatch(tokens[-1]):
        tail.insert(0, tokens.pop())
    if not tail:
        return text.strip(), []
    # Cut the body where the tail begins, keeping its original line breaks.
    cut = len(text.rstrip())
    for tag in reversed(tail):
        cut = text.rstrip().rfind(tag, 0, cut)
    return text[:cut].rstrip(), [t.lstrip("#") for t in tail]


def _apply_tone(body: str, tone: str, rules: CaptionRules) -> str:
    if not body:
        return body
    tone = tone.lower()
    if tone in ("professional", "formal") or rules.professional:
        body = body[0].upper() + body[1:]
    ending = TONE_ENDINGS.get(tone)
    if ending and body[-1] not in ".!?…":
        body += ending
    elif ending == "!" and body.endswith("."):
        body = body[:-1] + "!"
    return body


def _directives(instructions: str | None) -> tuple[str, str, list[str]]:
    prefix, suffix, notes = "", "", []
    for line in (instructions or "").splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            if line.strip():
                notes.append(f"offline rewriter cannot follow: {line.strip()!r}")
            continue
        kind, value = m.group(1).lower(), m.group(2)
        if kind in ("prefix", "prepend"):
            prefix = value
        else:
            suffix = value
    return prefix, suffix, notes


def rewrite(req: RewriteRequest) -> RewriteResult:
    """Rewrite ``req.text`` for ``req.target_platform``; the result always fits the platform's limits."""
    rules = rules_for(req.target_platform)
    limit = min(rules.max_length, req.max_length) if req.max_length else rules.max_length
    text = unicodedata.normalize("NFC", req.text or "")
    prefix, suffix, notes = _directives(req.custom_instructions)
    instructions = (req.custom_instructions or "").lower()
    include_emojis = req.include_emojis and "no emoji" not in instructions
    include_hashtags = req.include_hashtags and "no hashtag" not in instructions

    body, tail_tags = split_trailing_tags(text)
    inline_tags = extract_hashtags(body)
    foreign = set().union(*(r.home_tags for p, r in RULES.items() if p != req.target_platform))
    candidates = [t for t in [*tail_tags, *inline_tags, *req.extra_hashtags] if normalise_tag(t) not in foreign]
    if not include_hashtags:
        body = HASHTAG_RE.sub(lambda m: m.group(1), body)
    if "no link" in instructions:
        body = URL_RE.sub("", body)
    if not include_emojis or req.tone.lower() in ("professional", "formal"):
        body = _strip_emojis(body)
    body = _squash_spaces(body)
    body = _apply_tone(body, req.tone, rules)
    body = " ".join(p for p in (prefix, body) if p)

    tag_cap = tag_budget(rules, req)
    inline_keys = {normalise_tag(t) for t in extract_hashtags(body)}
    tags = [t for t in dedupe_tags(candidates) if normalise_tag(t) not in inline_keys] if include_hashtags else []
    tags = tags[: max(0, tag_cap - len(inline_keys))] if include_hashtags else []

    def fits(candidate: str) -> bool:
        return not rules.violations(candidate, limit)

    def assemble(b: str, tg: list[str]) -> str:
        parts = [b]
        if suffix:
            parts.append(suffix)
        if tg:
            parts.append(" ".join(f"#{t}" for t in tg))
        return "\n\n".join(p for p in parts if p)

    # Keep hashtags while they leave at least half of the limit to the body; drop them from the end.
    while tags and rules.measure(assemble("", tags)) > limit // 2:
        tags.pop()
    tail = assemble("", tags)
    truncated = False
    if not fits(assemble(body, tags)):
        sep = "\n\n" if tail else ""
        body, truncated = rules.truncate(body, lambda b: fits(b + sep + tail))
        if not fits(assemble(body, tags)):
            tags, body = [], rules.truncate(body, fits)[0]
    caption = assemble(body, tags)
    if not fits(caption):  # last guard: the whole caption, cut as text
        caption, truncated = rules.truncate(caption, fits)[0], True
    if truncated:
        notes.append(f"truncated to fit {rules.platform}'s limit of {limit} {rules.unit}")
    return RewriteResult(caption=caption, hashtags=extract_hashtags(caption), truncated=truncated, notes=notes)
