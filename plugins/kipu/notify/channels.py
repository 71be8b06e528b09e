"""Notification channels: what the API accepts (pydantic), shows (never a URL path or a secret) and stores
(URLs and signing secrets as ciphertext)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kipu.egress import EgressRefused, allow_private, check_url
from kipu.notify.events import SUBSCRIBABLE
from kipu.notify.signing import new_secret
from kipu.store.crypto import get_cipher
from kipu.store.models import NotificationChannel

Kind = Literal["email", "slack", "webhook"]
MAX_CHANNELS = 20  # per team
MAX_RECIPIENTS = 20
ROTATION_GRACE = timedelta(hours=24)  # the previous secret still signs this long after a rotation
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


class TooManyChannels(Exception):
    pass


def _check_recipients(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    bad = [r for r in value if len(r) > 254 or not _EMAIL.match(r)]
    if bad:
        raise ValueError(f"not an e-mail address: {bad[0][:80]!r}")
    return list(dict.fromkeys(r.lower() for r in value))


def _check_target_url(value: str | None) -> str | None:
    """HTTPS only (plain HTTP only where private networks are allowed: the demo and the tests); the egress guard's
    rules on the host, checked again on every delivery after DNS."""
    if value is None:
        return None
    try:
        parsed = check_url(value)
    except EgressRefused as exc:
        raise ValueError(str(exc)) from None
    if parsed.scheme != "https" and not allow_private():
        raise ValueError("must be an https:// URL")
    return value


def _check_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = [e for e in value if e not in SUBSCRIBABLE]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}; events are: {', '.join(SUBSCRIBABLE)}")
    return list(dict.fromkeys(value))


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    events: list[str] | None = Field(None, min_length=1, max_length=len(SUBSCRIBABLE), description="event types")
    enabled: bool | None = None
    recipients: list[str] | None = Field(None, min_length=1, max_length=MAX_RECIPIENTS)
    url: str | None = Field(None, max_length=2048, description="Slack incoming-webhook or HTTPS webhook URL")

    valid_events = field_validator("events")(_check_events)
    valid_recipients = field_validator("recipients")(_check_recipients)
    valid_url = field_validator("url")(_check_target_url)


class ChannelIn(ChannelPatch):
    kind: Kind
    name: str = Field(min_length=1, max_length=100)
    events: list[str] = Field(  # type: ignore[assignment]
        default_factory=lambda: list(SUBSCRIBABLE), min_length=1, max_length=len(SUBSCRIBABLE)
    )
    enabled: bool = True  # type: ignore[assignment]

    @model_validator(mode="after")
    def _target_fits_kind(self) -> ChannelIn:
        if self.kind == "email":
            if not self.recipients:
                raise ValueError("an email channel needs recipients")
            if self.url:
                raise ValueError("an email channel takes recipients, not a url")
        else:
            if not self.url:
                raise ValueError(f"a {self.kind} channel needs a url")
            if self.recipients:
                raise ValueError(f"a {self.kind} channel takes a url, not recipients")
        return self


class ChannelOut(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    kind: Kind
    name: str
    events: list[str]
    enabled: bool
    recipients: list[str] | None
    url_hint: str | None = Field(description="scheme and host only: the rest of a webhook URL can be a secret")
    signed: bool
    previous_secret_until: datetime | None = Field(description="until then deliveries carry the old signature too")
    created_at: datetime


class ChannelCreated(ChannelOut):
    secret: str | None = Field(None, description="the webhook signing secret; shown only now")


def hint(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}/…"


def to_out(row: NotificationChannel) -> ChannelOut:
    return ChannelOut(
        id=row.id,
        team_id=row.team_id,
        kind=row.kind,  # type: ignore[arg-type]
        name=row.name,
        events=list(row.events),
        enabled=row.enabled,
        recipients=row.recipients,
        url_hint=row.url_hint,
        signed=row.secret is not None,
        previous_secret_until=row.previous_secret_until,
        created_at=row.created_at,
    )


def create(session: Session, team_id: uuid.UUID, body: ChannelIn) -> tuple[NotificationChannel, str | None]:
    """A new channel and, for a webhook, its signing secret (returned once, stored encrypted). The team's row is
    locked first, so two at once cannot both take the last place."""
    from kipu.store.accounts import lock_team

    lock_team(session, team_id)
    count = session.scalar(select(func.count()).where(NotificationChannel.team_id == team_id)) or 0
    if count >= MAX_CHANNELS:
        raise TooManyChannels(f"a team has at most {MAX_CHANNELS} notification channels; it has {count}")
    cipher = get_cipher()
    secret = new_secret() if body.kind == "webhook" else None
    row = NotificationChannel(
        id=uuid.uuid4(),
        team_id=team_id,
        kind=body.kind,
        name=body.name,
        events=body.events,
        enabled=body.enabled,
        recipients=body.recipients,
        url=cipher.encrypt(body.url),
        url_hint=hint(body.url) if body.url else None,
        secret=cipher.encrypt(secret),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row, secret


def update(row: NotificationChannel, body: ChannelPatch) -> None:
    if body.recipients is not None and row.kind != "email":
        raise ValueError(f"a {row.kind} channel takes a url, not recipients")
    if body.url is not None and row.kind == "email":
        raise ValueError("an email channel takes recipients, not a url")
    for field in ("name", "events", "enabled", "recipients"):
        value = getattr(body, field)
        if value is not None:
            setattr(row, field, value)
    if body.url is not None:
        row.url, row.url_hint = get_cipher().encrypt(body.url), hint(body.url)


def rotate(row: NotificationChannel, now: datetime | None = None, grace: timedelta = ROTATION_GRACE) -> str:
    """A new signing secret; the old one keeps signing alongside it for ``grace`` (0: stop at once)."""
    if row.kind != "webhook":
        raise ValueError(f"a {row.kind} channel has no signing secret")
    now = now or datetime.now(UTC)
    secret = new_secret()
    row.previous_secret = row.secret if grace > timedelta(0) else None
    row.previous_secret_until = now + grace if grace > timedelta(0) else None
    row.secret = get_cipher().encrypt(secret)
    return secret


def signing_secrets(row: NotificationChannel, now: datetime) -> list[str]:
    cipher = get_cipher()
    found = [cipher.decrypt(row.secret)]
    if row.previous_secret and row.previous_secret_until and row.previous_secret_until > now:
        found.append(cipher.decrypt(row.previous_secret))
    return [s.get_secret_value() for s in found if s is not None]


def target_url(row: NotificationChannel) -> str | None:
    value = get_cipher().decrypt(row.url)
    return value.get_secret_value() if value else None
