"""Rewrite a caption or suggest hashtags with AI when ``kipu_openai`` is configured, else offline; always valid.

The order: cache → daily budget → model (re-asked once on an overrun) → post-conditions → accounting. Any
failure, refusal or empty answer falls back to the offline rewriter, and the result says why.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import regex
from sqlalchemy import delete
from sqlalchemy.orm import Session

from kipu.ai import connection as ai_connection
from kipu.ai.client import AIUnavailable, ChatClient
from kipu.ai.connection import AIConnection
from kipu.ai.postconditions import clean_tags, enforce
from kipu.ai.prompts import CAPTION_SCHEMA, HASHTAGS_SCHEMA, hashtag_messages, rewrite_messages
from kipu.ai.usage import cache_get, cache_key, cache_put, record_usage, team_budget, tokens_today
from kipu.captions.hashtags import extract_hashtags, normalise_tag
from kipu.captions.platforms import CaptionRules, rules_for
from kipu.captions.rewriter import RewriteRequest, RewriteResult, rewrite
from kipu.notify.events import emit
from kipu.specs.items import ContentItem
from kipu.specs.steps import AIRewriteConfig
from kipu.store.accounts import lock_team
from kipu.store.engine import session_scope
from kipu.store.models import AIUsage

log = logging.getLogger(__name__)

# Clients are reused per connection so that their HTTP pools are (the step and the API call this often).
_CLIENTS: dict[tuple[str, str | None, str], ChatClient] = {}


def _client(conn: AIConnection) -> ChatClient:
    key = (conn.model, conn.base_url, str(hash(conn.api_key.get_secret_value())))
    if key not in _CLIENTS:
        _CLIENTS[key] = ChatClient(conn)
    return _CLIENTS[key]


def _offline(req: RewriteRequest, reason: str | None, **acct: object) -> RewriteResult:
    result = rewrite(req)
    result.fallback = reason
    if reason:
        result.notes.append(f"used the offline rewriter: {reason}")
    for k, v in acct.items():
        setattr(result, k, v)
    return result


def _over_budget(session: Session, team_id: uuid.UUID | None, conn: AIConnection, now: datetime) -> str | None:
    if team_id is None:
        return None
    budget = team_budget(session, team_id, conn.daily_token_budget)
    if budget is None:
        return None
    used = tokens_today(session, team_id, now)
    if used < budget:
        return None
    day = now.astimezone(UTC).date().isoformat()
    emit(session, team_id, "ai.budget_spent", {"budget": budget, "used": used, "day": day}, f"ai.budget_spent:{day}")
    return f"the team's daily AI token budget of {budget} is used up ({used} today)"


RESERVED = "reserved"  # the purpose of a call's hold on the budget while it is in flight


def _hold(
    session: Session, team_id: uuid.UUID | None, conn: AIConnection, now: datetime, estimate: int
) -> tuple[str | None, uuid.UUID | None]:
    """The budget check and, when it passes, a hold of ``estimate`` tokens until the call is accounted for, under a
    lock on the team's row: calls at once see each other's holds, so they cannot all pass one check."""
    if team_id is None or team_budget(session, team_id, conn.daily_token_budget) is None:
        return None, None
    lock_team(session, team_id)
    reason = _over_budget(session, team_id, conn, now)
    if reason:
        return reason, None
    hold = AIUsage(id=uuid.uuid4(), team_id=team_id, purpose=RESERVED, model=conn.model, tokens_in=estimate)
    session.add(hold)
    return None, hold.id


def _release(hold: uuid.UUID | None) -> None:
    if hold is not None:
        with session_scope() as session:
            session.execute(delete(AIUsage).where(AIUsage.id == hold))


def _account(
    team_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    purpose: str,
    conn: AIConnection,
    tin: int,
    tout: int,
    cached: bool,
    hold: uuid.UUID | None = None,
) -> float:
    cost = 0.0 if cached else conn.cost(tin, tout)
    with session_scope() as session:
        if hold is not None:  # the real figures replace the hold, in one transaction
            session.execute(delete(AIUsage).where(AIUsage.id == hold))
        record_usage(
            session,
            team_id=team_id,
            run_id=run_id,
            purpose=purpose,
            model=conn.model,
            tokens_in=tin,
            tokens_out=tout,
            cost_usd=cost,
            cached=cached,
        )
    return cost


MAX_MODEL_TEXT = 20_000  # characters of a caption sent to the model, as POST /ai/rewrite allows


def rewrite_caption(
    req: RewriteRequest,
    *,
    team_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    conn: AIConnection | None = None,
    now: datetime | None = None,
) -> RewriteResult:
    """A caption for ``req.target_platform`` that always satisfies its limits."""
    conn = conn or ai_connection.load()
    if conn is None:
        return rewrite(req)
    if len(req.text) > MAX_MODEL_TEXT:  # the model's cost grows with the text: past this, the offline rewriter
        return _offline(req, f"the text is over {MAX_MODEL_TEXT:,} characters, the most sent to the model")
    now = now or datetime.now(UTC)
    rules = rules_for(req.target_platform)
    limit = min(rules.max_length, req.max_length) if req.max_length else rules.max_length
    # Per team: a shared entry would tell another team what this one rewrote, and give it this team's paid output.
    key = cache_key("rewrite", conn.model, {**asdict(req), "team": str(team_id)})
    with session_scope() as session:  # one transaction: the cache, or the budget check
        hit = cache_get(session, key)
        if hit is not None:
            record_usage(
                session,
                team_id=team_id,
                run_id=run_id,
                purpose="rewrite",
                model=conn.model,
                tokens_in=0,
                tokens_out=0,
                cost_usd=0.0,
                cached=True,
            )
        # A call may cost about its prompt and its longest answer (characters / 4), twice with the re-ask.
        estimate = 2 * ((len(req.text) + limit) // 4 + 300)
        reason, hold = (None, None) if hit is not None else _hold(session, team_id, conn, now, estimate)
    if hit is not None:
        checked = enforce(hit.get("caption", ""), hit.get("hashtags", []), req, rules, limit, final=True)
        return RewriteResult(
            checked.caption, checked.hashtags, checked.truncated, "cache", checked.notes, model=conn.model
        )
    if reason:
        return _offline(req, reason, model=conn.model)
    try:
        return _ask_rewrite(req, conn, rules, limit, key, team_id, run_id, hold)
    except BaseException:
        _release(hold)  # an unexpected end holds nothing (a hold already accounted for is gone: a no-op)
        raise


def _ask_rewrite(
    req: RewriteRequest,
    conn: AIConnection,
    rules: CaptionRules,
    limit: int,
    key: str,
    team_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    hold: uuid.UUID | None,
) -> RewriteResult:
    """The model's rewrite; every way out accounts for the call (its real tokens replace ``hold``)."""
    deadline = time.monotonic() + conn.time_budget
    client = _client(conn)
    tin = tout = 0
    try:
        reply = client.ask(rewrite_messages(req, rules, limit), CAPTION_SCHEMA, deadline)
        tin, tout = reply.tokens_in, reply.tokens_out
        if reply.refusal or not (reply.data or {}).get("caption", "").strip():
            why = "the model refused" if reply.refusal else "the model's answer was empty"
            cost = _account(team_id, run_id, "rewrite", conn, tin, tout, cached=False, hold=hold)
            return _offline(req, why, model=conn.model, tokens_in=tin, tokens_out=tout, cost_usd=cost)
        data = reply.data or {}
        checked = enforce(
            str(data.get("caption", "")), list(data.get("hashtags") or []), req, rules, limit, final=False
        )
        if checked.overrun is not None:  # re-ask once with the measured length, then cut safely
            again = client.ask(rewrite_messages(req, rules, limit, measured=checked.overrun), CAPTION_SCHEMA, deadline)
            tin, tout = tin + again.tokens_in, tout + again.tokens_out
            if again.data and str(again.data.get("caption", "")).strip():
                data = again.data
            checked = enforce(
                str(data.get("caption", "")), list(data.get("hashtags") or []), req, rules, limit, final=True
            )
    except AIUnavailable as exc:
        tin, tout = tin + exc.tokens_in, tout + exc.tokens_out  # billed though unusable
        if tin or tout:
            cost = _account(team_id, run_id, "rewrite", conn, tin, tout, cached=False, hold=hold)
        else:
            cost = 0.0
            _release(hold)
        return _offline(req, str(exc), model=conn.model, tokens_in=tin, tokens_out=tout, cost_usd=cost)
    with session_scope() as session:
        cache_put(
            session, key, conn.model, {"caption": data.get("caption", ""), "hashtags": data.get("hashtags") or []}
        )
    cost = _account(team_id, run_id, "rewrite", conn, tin, tout, cached=False, hold=hold)
    return RewriteResult(
        checked.caption,
        checked.hashtags,
        checked.truncated,
        "openai",
        checked.notes,
        model=conn.model,
        tokens_in=tin,
        tokens_out=tout,
        cost_usd=cost,
    )


STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "this",
        "that",
        "from",
        "your",
        "have",
        "just",
        "what",
        "when",
        "where",
        "will",
        "into",
        "about",
        "were",
        "been",
        "more",
        "most",
        "than",
        "then",
        "them",
        "they",
        "their",
        "there",
        "these",
        "those",
        "very",
        "over",
        "under",
        "after",
        "before",
        "while",
        "our",
        "out",
        "you",
        "are",
        "was",
        "not",
        "but",
        "all",
        "any",
        "can",
        "had",
        "has",
        "her",
        "his",
        "how",
        "its",
        "one",
        "two",
        "new",
        "now",
        "get",
        "got",
    ]
)


def offline_hashtags(text: str, count: int) -> list[str]:
    """The text's own hashtags first, then its most frequent longer words."""
    tags = extract_hashtags(text)
    words = regex.findall(r"\p{L}[\p{L}\p{M}\p{N}]{3,}", regex.sub(r"#\S+|https?://\S+|@\S+", " ", text))
    freq: dict[str, int] = {}
    for w in words:
        if w.casefold() not in STOPWORDS:
            freq[w.casefold()] = freq.get(w.casefold(), 0) + 1
    seen = {normalise_tag(t) for t in tags}
    first = {}
    for i, w in enumerate(words):
        first.setdefault(w.casefold(), i)
    for word in sorted(freq, key=lambda k: (-freq[k], first[k])):  # most frequent, then first seen
        if word not in seen:
            tags.append(word)
            seen.add(word)
    return tags[:count]


def generate_hashtags(
    text: str,
    platform: str,
    count: int,
    *,
    team_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    conn: AIConnection | None = None,
) -> tuple[list[str], str, str | None]:
    """``count`` relevant hashtags (capped by the platform), with the engine used and any fallback reason."""
    count = _hashtag_cap(platform, count)
    conn = conn or ai_connection.load()
    if conn is None or count == 0:
        return offline_hashtags(text, count), "offline", None
    key = cache_key("hashtags", conn.model, {"text": text, "platform": platform, "count": count, "team": str(team_id)})
    with session_scope() as session:
        hit = cache_get(session, key)
    if hit is not None:
        _account(team_id, run_id, "hashtags", conn, 0, 0, cached=True)
        return clean_tags(hit.get("hashtags", []))[:count], "cache", None
    with session_scope() as session:
        reason, hold = _hold(session, team_id, conn, datetime.now(UTC), len(text) // 4 + 300)
    if reason:
        return offline_hashtags(text, count), "offline", reason
    try:
        reply = _client(conn).ask(
            hashtag_messages(text, platform, count), HASHTAGS_SCHEMA, time.monotonic() + conn.time_budget
        )
    except AIUnavailable as exc:
        if exc.tokens_in or exc.tokens_out:  # billed though unusable
            _account(team_id, run_id, "hashtags", conn, exc.tokens_in, exc.tokens_out, cached=False, hold=hold)
        else:
            _release(hold)
        return offline_hashtags(text, count), "offline", str(exc)
    except BaseException:
        _release(hold)
        raise
    _account(team_id, run_id, "hashtags", conn, reply.tokens_in, reply.tokens_out, cached=False, hold=hold)
    tags = clean_tags(list((reply.data or {}).get("hashtags") or []))[:count]
    if not tags:
        return offline_hashtags(text, count), "offline", "the model suggested no usable hashtags"
    with session_scope() as session:
        cache_put(session, key, conn.model, {"hashtags": tags})
    return tags, "openai", None


def rewrite_step(
    cfg: AIRewriteConfig,
    item: ContentItem,
    captions: dict[str, str],
    *,
    team_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    use_model: bool = True,
) -> dict[str, Any]:
    """What an ai_rewrite step records: its caption for ``cfg.target_platform`` from the item (or an earlier rewrite
    for that platform), with generated hashtags. ``use_model=False`` keeps to the offline rewriter (a dry run)."""
    conn = ai_connection.load() if use_model else None
    offline = conn is None
    source = captions.get(cfg.target_platform) or item.caption or item.title or ""
    extra = tuple(item.hashtags)
    generated: list[str] = []
    out: dict[str, Any] = {}
    if cfg.generate_hashtags and cfg.include_hashtags:
        if offline:
            generated, engine, why = (
                offline_hashtags(source, _hashtag_cap(cfg.target_platform, cfg.generate_hashtags)),
                "offline",
                None,
            )
        else:
            generated, engine, why = generate_hashtags(
                source, cfg.target_platform, cfg.generate_hashtags, team_id=team_id, run_id=run_id, conn=conn
            )
        extra = (*generated, *extra)
        out["hashtag_engine"] = engine
        if why:
            out["hashtag_fallback"] = why
    req = RewriteRequest(
        text=source,
        target_platform=cfg.target_platform,
        tone=cfg.tone,
        max_length=cfg.max_length,
        include_hashtags=cfg.include_hashtags,
        include_emojis=cfg.include_emojis,
        custom_instructions=cfg.custom_instructions,
        extra_hashtags=extra,
        hashtag_count=cfg.generate_hashtags,
    )
    result = rewrite(req) if offline else rewrite_caption(req, team_id=team_id, run_id=run_id, conn=conn)
    out.update(
        {
            "target_platform": cfg.target_platform,
            "caption": result.caption,
            "hashtags": result.hashtags,
            "generated_hashtags": generated,
            "engine": result.engine,
            "model": result.model,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "cost_usd": result.cost_usd,
            "fallback": result.fallback,
            "truncated": result.truncated,
            "notes": result.notes,
        }
    )
    return out


def _hashtag_cap(platform: str, count: int) -> int:
    rules = rules_for(platform)
    return max(0, min(count, rules.max_hashtags if rules.max_hashtags is not None else count))
