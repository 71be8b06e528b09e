"""``/api/ai``: the same rewriting and hashtag code as the ai_rewrite step, per team, with its budget."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from kipu.ai.service import generate_hashtags, rewrite_caption
from kipu.api.auth import CallerDep
from kipu.captions.rewriter import RewriteRequest
from kipu.specs.common import Platform
from kipu.specs.steps import AIRewriteConfig

router = APIRouter(prefix="/ai", tags=["ai"])


class RewriteBody(AIRewriteConfig):
    """The ai_rewrite step's config, plus the team and the text."""

    team: str = Field(description="team slug or id; the caller must be an owner, admin or member")
    text: str = Field(max_length=20_000)


class RewriteOut(BaseModel):
    caption: str
    hashtags: list[str]
    engine: str
    model: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    fallback: str | None
    truncated: bool
    notes: list[str]


class HashtagsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str
    text: str = Field(max_length=20_000)
    platform: Platform
    count: int = Field(default=5, ge=1, le=30)


class HashtagsOut(BaseModel):
    hashtags: list[str]
    engine: str
    fallback: str | None


@router.post("/rewrite", response_model=RewriteOut)
def rewrite(body: RewriteBody, caller: CallerDep) -> RewriteOut:
    team_id = caller.team(body.team, "member")
    fields = body.model_dump(exclude={"team", "generate_hashtags"})
    result = rewrite_caption(RewriteRequest(**fields, hashtag_count=body.generate_hashtags), team_id=team_id)
    return RewriteOut(
        caption=result.caption,
        hashtags=result.hashtags,
        engine=result.engine,
        model=result.model,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost_usd=result.cost_usd,
        fallback=result.fallback,
        truncated=result.truncated,
        notes=result.notes,
    )


@router.post("/hashtags", response_model=HashtagsOut)
def hashtags(body: HashtagsBody, caller: CallerDep) -> HashtagsOut:
    team_id = caller.team(body.team, "member")
    tags, engine, why = generate_hashtags(body.text, body.platform, body.count, team_id=team_id)
    return HashtagsOut(hashtags=tags, engine=engine, fallback=why)
