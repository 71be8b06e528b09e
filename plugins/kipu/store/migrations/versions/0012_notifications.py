"""notification_channels, _events, _deliveries and _attempts: team notifications, digests and the delivery log

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 19:36:12.509494
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "notification_channels",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("events", kipu.store.types.JSONB(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("recipients", kipu.store.types.JSONB(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("url_hint", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_until", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updated_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_notification_channels_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channels")),
    )
    op.create_table(
        "notification_events",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("data", kipu.store.types.JSONB(), nullable=False),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("dispatched_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_notification_events_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_events")),
        sa.UniqueConstraint("team_id", "key", name=op.f("uq_notification_events_team_id_key")),
    )
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_events_pending", ["dispatched_at", "team_id", "created_at"], unique=False
        )

    op.create_table(
        "notification_deliveries",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("channel_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("event_ids", kipu.store.types.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("delivered_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["notification_channels.id"],
            name=op.f("fk_notification_deliveries_channel_id_notification_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_notification_deliveries_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_notification_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_notification_deliveries_team_created", ["team_id", "created_at"], unique=False)

    op.create_table(
        "notification_attempts",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("delivery_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", kipu.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notification_deliveries.id"],
            name=op.f("fk_notification_attempts_delivery_id_notification_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_attempts")),
    )
    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_attempts_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_attempts_delivery_id"))

    op.drop_table("notification_attempts")
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_deliveries_team_created")
        batch_op.drop_index("ix_notification_deliveries_due")

    op.drop_table("notification_deliveries")
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_events_pending")

    op.drop_table("notification_events")
    op.drop_table("notification_channels")
