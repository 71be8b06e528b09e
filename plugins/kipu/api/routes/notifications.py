"""``/api/teams/{team}/notifications``: a team's channels (e-mail, Slack, signed webhooks), secret rotation, test
sends, and the delivery log. Admins manage channels; viewers see them without URLs or secrets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from kipu.api.auth import CallerDep
from kipu.api.errors import unprocessable
from kipu.notify import channels
from kipu.notify.dispatch import PendingTest, queue_test
from kipu.store.engine import session_scope
from kipu.store.models import NotificationAttempt, NotificationChannel, NotificationDelivery

router = APIRouter(prefix="/teams", tags=["notifications"])


class SecretOut(BaseModel):
    secret: str = Field(description="the new signing secret; shown only now")
    previous_secret_until: datetime | None = Field(description="the old secret still signs until then")


class AttemptOut(BaseModel):
    number: int
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: uuid.UUID
    channel_id: uuid.UUID
    status: str = Field(description="pending (retrying at next_attempt_at), delivered or failed")
    events: int
    event_ids: list[str]
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _channel(team_id: uuid.UUID, channel_id: uuid.UUID, s: Session) -> NotificationChannel:
    row = s.get(NotificationChannel, channel_id)
    if row is None or row.team_id != team_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"channel {channel_id} not found")
    return row


@router.get("/{team}/notifications/channels", response_model=list[channels.ChannelOut])
def list_channels(team: str, caller: CallerDep) -> list[channels.ChannelOut]:
    """The team's channels (viewers and up); URLs show only their scheme and host."""
    team_id = caller.team(team, "viewer")
    with session_scope() as s:
        rows = s.scalars(
            select(NotificationChannel)
            .where(NotificationChannel.team_id == team_id)
            .order_by(NotificationChannel.created_at)
        )
        return [channels.to_out(r) for r in rows]


@router.post(
    "/{team}/notifications/channels",
    response_model=channels.ChannelCreated,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the team has the most channels it may have"}},
)
def create_channel(team: str, body: channels.ChannelIn, caller: CallerDep) -> channels.ChannelCreated:
    """A new channel (admins). A webhook's signing secret is in the answer, and never again."""
    team_id = caller.team(team, "admin")
    try:
        with session_scope() as s:
            row, secret = channels.create(s, team_id, body)
            return channels.ChannelCreated(**channels.to_out(row).model_dump(), secret=secret)
    except channels.TooManyChannels as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.patch("/{team}/notifications/channels/{channel_id}", response_model=channels.ChannelOut)
def update_channel(
    team: str, channel_id: uuid.UUID, body: channels.ChannelPatch, caller: CallerDep
) -> channels.ChannelOut:
    """Rename, choose events, enable or disable, or change the target (admins)."""
    team_id = caller.team(team, "admin")
    try:
        with session_scope() as s:
            row = _channel(team_id, channel_id, s)
            channels.update(row, body)
            s.flush()
            return channels.to_out(row)
    except ValueError as exc:
        raise unprocessable(str(exc)) from None


@router.delete(
    "/{team}/notifications/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
def delete_channel(team: str, channel_id: uuid.UUID, caller: CallerDep) -> Response:
    """Delete a channel and its delivery log (admins)."""
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        s.delete(_channel(team_id, channel_id, s))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{team}/notifications/channels/{channel_id}/rotate-secret", response_model=SecretOut)
def rotate_secret(
    team: str,
    channel_id: uuid.UUID,
    caller: CallerDep,
    grace_hours: float = Query(24, ge=0, le=168, description="how long the old secret keeps signing too"),
) -> SecretOut:
    """A new signing secret for a webhook channel (admins); deliveries carry both signatures during the grace."""
    from datetime import timedelta

    team_id = caller.team(team, "admin")
    try:
        with session_scope() as s:
            row = _channel(team_id, channel_id, s)
            secret = channels.rotate(row, grace=timedelta(hours=grace_hours))
            return SecretOut(secret=secret, previous_secret_until=row.previous_secret_until)
    except ValueError as exc:
        raise unprocessable(str(exc), ("path", "channel_id")) from None


@router.post(
    "/{team}/notifications/channels/{channel_id}/test",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "the channel's last test is not delivered yet"}},
)
def test_channel(team: str, channel_id: uuid.UUID, caller: CallerDep) -> DeliveryOut:
    """Queue a test event for this channel alone, sent on the next ``kipu_notify`` pass (admins)."""
    team_id = caller.team(team, "admin")
    with session_scope() as s:
        row = _channel(team_id, channel_id, s)
        try:
            delivery = queue_test(s, row)
        except PendingTest as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"{exc}; see its deliveries") from None
        return _delivery_out(delivery, [])


def _delivery_out(d: NotificationDelivery, attempts: list[NotificationAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        channel_id=d.channel_id,
        status=d.status,
        events=len(d.event_ids),
        event_ids=list(d.event_ids),
        attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        next_attempt_at=d.next_attempt_at,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


@router.get("/{team}/notifications/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    team: str,
    caller: CallerDep,
    channel_id: uuid.UUID | None = None,
    delivery_status: Literal["pending", "delivered", "failed"] | None = Query(None, alias="status"),
    limit: int = Query(50, ge=1, le=200),
) -> list[DeliveryOut]:
    """The delivery log, newest first: each delivery with every attempt's status, code, error and duration
    (admins)."""
    team_id = caller.team(team, "admin")
    d = NotificationDelivery
    query = select(d).where(d.team_id == team_id)
    if channel_id is not None:
        query = query.where(d.channel_id == channel_id)
    if delivery_status is not None:
        query = query.where(d.status == delivery_status)
    with session_scope() as s:
        rows = s.scalars(query.order_by(d.created_at.desc(), d.id).limit(limit)).all()
        attempts: dict[uuid.UUID, list[NotificationAttempt]] = {r.id: [] for r in rows}
        if rows:
            for a in s.scalars(
                select(NotificationAttempt)
                .where(NotificationAttempt.delivery_id.in_(list(attempts)))
                .order_by(NotificationAttempt.number)
            ):
                attempts[a.delivery_id].append(a)
        return [_delivery_out(r, attempts[r.id]) for r in rows]
