"""oauth_states.session_user and return_to: a connection started on Kipu's pages is bound to that signed-in session

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("session_user", sa.Text(), nullable=True))
        batch.add_column(sa.Column("return_to", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("return_to")
        batch.drop_column("session_user")
