"""teams: the plan, its limits and the billing state are the team's own columns

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:40:00

The plan used to live on the creating owner's profile, so changing one team's plan changed every team that person
had created. Each team now takes the plan its owner's profile had, and keeps its own from then on.
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("plan", sa.Text(), server_default="free", nullable=False))
        batch.add_column(sa.Column("plan_limits", kipu.store.types.JSONB(), nullable=True))
        batch.add_column(sa.Column("billing_status", sa.Text(), server_default="none", nullable=False))
        batch.add_column(sa.Column("billing_customer_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("billing_subscription_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("billing_period_end", kipu.store.types.UTCDateTime(timezone=True), nullable=True))
    teams = sa.table("teams", sa.column("owner_id"), sa.column("plan", sa.Text()))
    profiles = sa.table("profiles", sa.column("id"), sa.column("plan", sa.Text()))
    owner_plan = sa.select(profiles.c.plan).where(profiles.c.id == teams.c.owner_id).scalar_subquery()
    op.get_bind().execute(
        teams.update().where(teams.c.owner_id.is_not(None)).values(plan=sa.func.coalesce(owner_plan, "free"))
    )


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        for column in (
            "billing_period_end",
            "billing_subscription_id",
            "billing_customer_id",
            "billing_status",
            "plan_limits",
            "plan",
        ):
            batch.drop_column(column)
