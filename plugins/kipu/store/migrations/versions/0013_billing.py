"""teams: billing grace, the newest Stripe event applied and the held-items release; billing_events (Stripe ids, once)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 19:50:00.002068
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "billing_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("created_at", kipu.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_billing_events_team_id_teams"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("billing_grace_until", kipu.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("billing_event_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("held_release", sa.Text(), server_default="upgrade", nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("held_release")
        batch_op.drop_column("billing_event_at")
        batch_op.drop_column("billing_grace_until")

    op.drop_table("billing_events")
