"""SQLAlchemy 2 tables of the seed schema (DiamondKJ/kipu docs/ARCHITECTURE.md), plus Kipu's additions.

Every column, default, unique constraint, foreign key and cascade of the seed is kept; the columns Kipu
adds are listed in docs/store.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from kipu.store.types import GUID, JSONB, TextArray, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(GUID(), primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, server_default=text("CURRENT_TIMESTAMP"))


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str | None] = mapped_column(Text)
    avatar_url: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[str | None] = mapped_column(Text, default="free", server_default="free")
    created_at: Mapped[datetime] = _created()
    # Kipu: the seed kept e-mail in auth.users; here it is the login, and the Airflow user answers HITL.
    email: Mapped[str | None] = mapped_column(Text, unique=True)
    airflow_username: Mapped[str | None] = mapped_column(Text)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("profiles.id"))
    created_at: Mapped[datetime] = _created()
    # Kipu: a stable handle for tags, DAG ids and the CLI.
    slug: Mapped[str | None] = mapped_column(Text, unique=True)
    # Kipu: AI tokens (in + out) the team may spend per UTC day; None uses the kipu_openai connection's default.
    ai_daily_token_budget: Mapped[int | None] = mapped_column(Integer)
    # Kipu: the team's plan, its limits and its billing state belong to the team, never to a member's profile
    # (the seed's profiles.plan is kept but no longer read).
    plan: Mapped[str] = mapped_column(Text, default="free", server_default="free", nullable=False)
    plan_limits: Mapped[dict[str, Any] | None] = mapped_column(JSONB())  # overrides of the plan's defaults
    billing_status: Mapped[str] = mapped_column(Text, default="none", server_default="none", nullable=False)
    billing_customer_id: Mapped[str | None] = mapped_column(Text)
    billing_subscription_id: Mapped[str | None] = mapped_column(Text)
    billing_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Kipu: a failed payment's grace period, the newest Stripe event applied (older ones arriving late are ignored),
    # and what releases items held by the monthly post limit: an upgrade only, or the next month too.
    billing_grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    billing_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    held_release: Mapped[str] = mapped_column(Text, default="upgrade", server_default="upgrade", nullable=False)

    members: Mapped[list[TeamMember]] = relationship(back_populates="team")


class TeamMember(Base):
    __tablename__ = "team_members"
    __table_args__ = (PrimaryKeyConstraint("team_id", "user_id"),)

    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("profiles.id"))
    role: Mapped[str | None] = mapped_column(Text, default="member", server_default="member")

    team: Mapped[Team] = relationship(back_populates="members")
    profile: Mapped[Profile] = relationship()


class TeamInvitation(Base):
    """An admin's offer of a role to an e-mail: a membership only once that person accepts it (tells no one
    whether the e-mail has a profile)."""

    __tablename__ = "team_invitations"
    __table_args__ = (UniqueConstraint("team_id", "email"), Index("ix_team_invitations_email", "email"))

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    email: Mapped[str] = mapped_column(Text, nullable=False)  # lower case
    role: Mapped[str] = mapped_column(Text, nullable=False)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("profiles.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Connection(Base):
    """A connected account; tokens are MultiFernet ciphertext, never plaintext."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("team_id", "platform", "platform_user_id"),
        # A webhook delivery names accounts, not teams: find their connections without reading every team's.
        Index("ix_connections_platform_account", "platform", "platform_user_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    platform_user_id: Mapped[str] = mapped_column(Text, nullable=False)
    platform_username: Mapped[str | None] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scopes: Mapped[list[str] | None] = mapped_column(TextArray())
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB())
    created_at: Mapped[datetime] = _created()
    # Kipu: health for polling and reconnect flags.
    status: Mapped[str] = mapped_column(Text, default="healthy", server_default="healthy")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Kipu: a 429's Retry-After; the poll engine leaves the account alone until then.
    poll_backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:  # tokens are never part of a repr
        return f"Connection(id={self.id}, platform={self.platform!r}, user={self.platform_user_id!r})"


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        Index("ix_workflows_status", "status"),
        Index("ix_workflows_shard_key", "shard_key"),
        UniqueConstraint("team_id", "slug"),
    )

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text, default="inactive", server_default="inactive")
    trigger_config: Mapped[dict[str, Any]] = mapped_column(JSONB(), nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    # Kipu: the slug is unique within the team; the time zone applies to day and time rules only.
    slug: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, default="UTC", server_default="UTC")
    # Kipu: the DAG id, kipu.<team>.<slug> (kipu.naming); the id it had before namespaces, while runs made then
    # are unfinished (the factory serves the DAG under both until they end).
    dag_id: Mapped[str | None] = mapped_column(Text, unique=True)
    legacy_dag_id: Mapped[str | None] = mapped_column(Text)
    # Kipu: which DAG shard file holds it (kipu.factory.shards), from the id alone; set on insert (a row written
    # with raw SQL lands in shard 0 rather than nowhere).
    shard_key: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    steps: Mapped[list[WorkflowStep]] = relationship(
        back_populates="workflow", cascade="all, delete-orphan", order_by="WorkflowStep.order_index"
    )


@event.listens_for(Workflow, "before_insert")
def _place_in_shard(_mapper: Any, _connection: Any, workflow: Workflow) -> None:
    from kipu.factory.shards import shard_key

    if workflow.id is None:
        workflow.id = uuid.uuid4()
    workflow.shard_key = shard_key(workflow.id)


class PollCursor(Base):
    """Where a poll workflow's source was read up to: runtime state, kept apart from the workflow's configuration.

    ``polling_since`` is when polling began (items published before it are history), ``last_post_id`` the newest
    post seen, ``last_checked_at`` the last successful poll (what makes the workflow due again)."""

    __tablename__ = "poll_cursors"

    workflow_id: Mapped[uuid.UUID] = mapped_column(
        GUID(), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    last_post_id: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polling_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WorkflowStep(Base):
    __tablename__ = "workflow_steps"
    __table_args__ = (UniqueConstraint("workflow_id", "step_key"),)

    id: Mapped[uuid.UUID] = _id()
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID(), ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    order_index: Mapped[int] = mapped_column(Integer, nullable=False)
    step_type: Mapped[str] = mapped_column(Text, nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB(), nullable=False)
    created_at: Mapped[datetime] = _created()
    # Kipu: the step's name in the spec, its Airflow task id and what conditions point at.
    step_key: Mapped[str] = mapped_column(Text, nullable=False)

    workflow: Mapped[Workflow] = relationship(back_populates="steps")


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "platform_post_id"),
        Index("ix_workflow_runs_status", "status"),
    )

    id: Mapped[uuid.UUID] = _id()
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("workflows.id"))
    trigger_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB())
    status: Mapped[str | None] = mapped_column(Text, default="pending", server_default="pending")
    started_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_message: Mapped[str | None] = mapped_column(Text)
    # Kipu: the item's identity (dedup across poll, webhook and manual) and the Airflow run.
    platform_post_id: Mapped[str | None] = mapped_column(Text)
    dag_id: Mapped[str | None] = mapped_column(Text)
    dag_run_id: Mapped[str | None] = mapped_column(Text)
    # Kipu: how the item arrived (poll, webhook, manual) and when its DAG run was last asked for.
    source: Mapped[str | None] = mapped_column(Text)
    start_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    step_runs: Mapped[list[WorkflowStepRun]] = relationship(back_populates="run", cascade="all, delete-orphan")


class WorkflowStepRun(Base):
    __tablename__ = "workflow_step_runs"
    __table_args__ = (UniqueConstraint("run_id", "step_id"),)

    id: Mapped[uuid.UUID] = _id()
    run_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("workflow_steps.id"))
    status: Mapped[str | None] = mapped_column(Text, default="pending", server_default="pending")
    input_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB())
    output_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_message: Mapped[str | None] = mapped_column(Text)
    # Kipu: Airflow's try number, so a retry updates the row instead of adding one.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    run: Mapped[WorkflowRun] = relationship(back_populates="step_runs")


class Post(Base):
    """One publish to one target: written before the platform is called, completed after."""

    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("workflow_run_id", "step_id", "connection_id"),
        Index("ix_posts_status", "status"),
        # The API lists a team's posts newest first, paged by (created_at, id).
        Index("ix_posts_team_created", "team_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    workflow_run_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("workflow_runs.id"))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("connections.id"))
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    platform_post_id: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    media_urls: Mapped[list[str] | None] = mapped_column(TextArray())
    status: Mapped[str | None] = mapped_column(Text, default="draft", server_default="draft")
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB())
    created_at: Mapped[datetime] = _created()
    # Kipu: which publish step made it, its error, and where it lives on the platform.
    step_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("workflow_steps.id"))
    error_message: Mapped[str | None] = mapped_column(Text)
    platform_url: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class MediaFolder(Base):
    __tablename__ = "media_folders"

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("media_folders.id"))
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class Media(Base):
    __tablename__ = "media"

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    folder_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("media_folders.id"))
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    storage_path: Mapped[str] = mapped_column(Text, nullable=False)
    mime_type: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB())
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    """A bearer token for the /kipu API, bound to a profile; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _id()
    profile_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(Text, nullable=False)  # shown in lists, to tell tokens apart
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OAuthState(Base):
    """One pending OAuth authorization: single use, short-lived; the PKCE verifier is encrypted."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(Text, primary_key=True)  # sha256 of the state sent to the platform
    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    profile_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("profiles.id"))
    code_verifier: Mapped[str | None] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text, nullable=False)
    # The instance a federated platform's authorization goes through (Mastodon), for the callback's code exchange.
    instance: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Started on Kipu's pages: the Airflow user whose session must complete it, and the page to return to.
    session_user: Mapped[str | None] = mapped_column(Text)
    return_to: Mapped[str | None] = mapped_column(Text)


class InstanceClient(Base):
    """The OAuth client Kipu registered at one instance of a federated platform (Mastodon's ``POST /api/v1/apps``),
    reused by every account connected from that instance; the secret is MultiFernet ciphertext."""

    __tablename__ = "instance_clients"
    __table_args__ = (PrimaryKeyConstraint("platform", "instance"),)

    platform: Mapped[str] = mapped_column(Text, nullable=False)
    instance: Mapped[str] = mapped_column(Text, nullable=False)  # https://host, no path
    client_id: Mapped[str] = mapped_column(Text, nullable=False)
    client_secret: Mapped[str | None] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text, nullable=False)
    scopes: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class AICacheEntry(Base):
    """A model answer, keyed by a hash of (text, config, model): an identical request is not paid twice."""

    __tablename__ = "ai_cache"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    model: Mapped[str] = mapped_column(Text, nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB(), nullable=False)
    created_at: Mapped[datetime] = _created()


class AIUsage(Base):
    """One AI call (or cache hit) with its tokens and estimated cost, for team totals and the daily budget."""

    __tablename__ = "ai_usage"
    __table_args__ = (Index("ix_ai_usage_team_created", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id"))
    workflow_run_id: Mapped[uuid.UUID | None] = mapped_column(GUID())
    purpose: Mapped[str] = mapped_column(Text, nullable=False)  # rewrite | hashtags
    model: Mapped[str] = mapped_column(Text, nullable=False)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    cached: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = _created()


class NotificationChannel(Base):
    """Where a team's events go: an e-mail list, a Slack incoming webhook or an HTTPS webhook. URLs and signing
    secrets are MultiFernet ciphertext; the previous secret still signs until ``previous_secret_until``."""

    __tablename__ = "notification_channels"

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # email | slack | webhook
    name: Mapped[str] = mapped_column(Text, nullable=False)
    events: Mapped[list[str]] = mapped_column(JSONB(), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    recipients: Mapped[list[str] | None] = mapped_column(JSONB())
    url: Mapped[str | None] = mapped_column(Text)  # ciphertext
    url_hint: Mapped[str | None] = mapped_column(Text)  # scheme://host/…, for lists
    secret: Mapped[str | None] = mapped_column(Text)  # ciphertext
    previous_secret: Mapped[str | None] = mapped_column(Text)  # ciphertext
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # the URL and secrets are never part of a repr
        return f"NotificationChannel(id={self.id}, kind={self.kind!r}, name={self.name!r})"


class NotificationEvent(Base):
    """Something a team may want to hear about; ``key`` makes it happen once (a callback that runs twice, a flag
    set again). ``dispatched_at`` is when it was put into deliveries."""

    __tablename__ = "notification_events"
    __table_args__ = (
        UniqueConstraint("team_id", "key"),
        Index("ix_notification_events_pending", "dispatched_at", "team_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB(), nullable=False)
    created_at: Mapped[datetime] = _created()
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationDelivery(Base):
    """One message to one channel: a single event or a digest of several; retried with backoff until delivered or
    out of attempts."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
        Index("ix_notification_deliveries_team_created", "team_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    team_id: Mapped[uuid.UUID] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    channel_id: Mapped[uuid.UUID] = mapped_column(
        GUID(), ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False
    )
    event_ids: Mapped[list[str]] = mapped_column(JSONB(), nullable=False)
    status: Mapped[str] = mapped_column(Text, default="pending", nullable=False)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationAttempt(Base):
    """One try of a delivery: the delivery log."""

    __tablename__ = "notification_attempts"

    id: Mapped[uuid.UUID] = _id()
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        GUID(), ForeignKey("notification_deliveries.id", ondelete="CASCADE"), nullable=False, index=True
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)


class BillingEvent(Base):
    """A Stripe webhook event, recorded once by its id: a redelivery is acknowledged and changes nothing."""

    __tablename__ = "billing_events"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # Stripe's evt_…
    type: Mapped[str] = mapped_column(Text, nullable=False)
    team_id: Mapped[uuid.UUID | None] = mapped_column(GUID(), ForeignKey("teams.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(Text, nullable=False)  # applied | stale | ignored
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)  # Stripe's "created"
    received_at: Mapped[datetime] = _created()


__all__ = [
    "AICacheEntry",
    "AIUsage",
    "Base",
    "BillingEvent",
    "Connection",
    "InstanceClient",
    "Media",
    "MediaFolder",
    "NotificationAttempt",
    "NotificationChannel",
    "NotificationDelivery",
    "NotificationEvent",
    "OAuthState",
    "PollCursor",
    "Post",
    "Profile",
    "Team",
    "TeamMember",
    "Workflow",
    "WorkflowRun",
    "WorkflowStep",
    "WorkflowStepRun",
]
