"""API tokens for the /kipu API: shown once at creation, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.store.models import ApiToken, Profile
from kipu.store.types import utcnow

PREFIX = "kipu_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, profile: Profile, name: str) -> tuple[ApiToken, str]:
    """A new token for ``profile``; the plaintext is returned once and never stored."""
    plain = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=uuid.uuid4(), profile_id=profile.id, name=name, token_hash=_hash(plain), prefix=plain[:12])
    session.add(row)
    session.flush()
    return row, plain


def profile_for_token(session: Session, plain: str) -> Profile | None:
    if not plain.startswith(PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(plain), ApiToken.revoked_at.is_(None)))
    return session.get(Profile, row.profile_id) if row else None


def revoke_token(session: Session, token_id: uuid.UUID) -> bool:
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
