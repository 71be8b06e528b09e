"""OAuth: pending authorizations (state, encrypted PKCE verifier)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 01:40:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_states",
        sa.Column("state_hash", sa.Text(), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("profile_id", kipu.store.types.GUID(length=36), nullable=True),
        sa.Column("code_verifier", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("expires_at", kipu.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"]),
        sa.PrimaryKeyConstraint("state_hash"),
    )


def downgrade() -> None:
    op.drop_table("oauth_states")
