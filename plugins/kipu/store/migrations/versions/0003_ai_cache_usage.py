"""AI captions: response cache, usage accounting, per-team daily token budget

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:30:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_cache",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("response", kipu.store.types.JSONB(), nullable=False),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "ai_usage",
        sa.Column("id", kipu.store.types.GUID(length=36), nullable=False),
        sa.Column("team_id", kipu.store.types.GUID(length=36), nullable=True),
        sa.Column("workflow_run_id", kipu.store.types.GUID(length=36), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ai_usage_team_created", "ai_usage", ["team_id", "created_at"])
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("ai_daily_token_budget", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("ai_daily_token_budget")
    op.drop_index("ix_ai_usage_team_created", table_name="ai_usage")
    op.drop_table("ai_usage")
    op.drop_table("ai_cache")
