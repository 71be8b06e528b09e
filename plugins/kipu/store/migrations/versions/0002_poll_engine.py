"""poll engine: run source and start bookkeeping, account back-off

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:00:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("start_requested_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("poll_backoff_until", kipu.store.types.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_workflows_status", "workflows", ["status"])


def downgrade() -> None:
    op.drop_index("ix_workflows_status", table_name="workflows")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("poll_backoff_until")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("start_requested_at")
        batch.drop_column("source")
