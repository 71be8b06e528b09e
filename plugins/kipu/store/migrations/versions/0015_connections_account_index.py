"""connections (platform, platform_user_id): a webhook delivery finds its accounts' connections by index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_connections_platform_account", "connections", ["platform", "platform_user_id"])


def downgrade() -> None:
    op.drop_index("ix_connections_platform_account", table_name="connections")
