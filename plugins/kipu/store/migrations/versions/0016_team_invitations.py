"""team_invitations: adding someone to a team is an invitation they accept, not a membership an admin imposes

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 20:10:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team_invitations",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("invited_by", kipu.store.types.GUID(length=36), nullable=True),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("expires_at", kipu.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_invitations_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"], ["profiles.id"], name=op.f("fk_team_invitations_invited_by_profiles"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_invitations")),
        sa.UniqueConstraint("team_id", "email", name=op.f("uq_team_invitations_team_id_email")),
    )
    op.create_index("ix_team_invitations_email", "team_invitations", ["email"])


def downgrade() -> None:
    op.drop_index("ix_team_invitations_email", table_name="team_invitations")
    op.drop_table("team_invitations")
