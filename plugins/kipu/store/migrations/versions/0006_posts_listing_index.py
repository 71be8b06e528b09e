"""posts: index for the API's newest-first listing per team

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 02:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_team_created", "posts", ["team_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_posts_team_created", table_name="posts")
