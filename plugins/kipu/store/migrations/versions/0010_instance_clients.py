"""instance_clients: OAuth clients registered per instance of a federated platform; oauth_states.instance

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 12:30:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_clients",
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            kipu.store.types.UTCDateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("platform", "instance", name="pk_instance_clients"),
    )
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("instance", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("instance")
    op.drop_table("instance_clients")
