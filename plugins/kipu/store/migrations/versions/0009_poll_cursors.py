"""poll_cursors: a poll's cursor is runtime state with a table of its own, out of the workflow's trigger_config

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import kipu.store.types
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KEYS = ("last_post_id", "last_checked_at", "polling_since")


def upgrade() -> None:
    op.create_table(
        "poll_cursors",
        sa.Column("workflow_id", kipu.store.types.GUID(), nullable=False),
        sa.Column("last_post_id", sa.Text(), nullable=True),
        sa.Column("last_checked_at", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("polling_since", kipu.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name="fk_poll_cursors_workflow_id_workflows", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("workflow_id", name="pk_poll_cursors"),
    )
    bind = op.get_bind()
    workflows = sa.table("workflows", sa.column("id"), sa.column("trigger_config", kipu.store.types.JSONB()))
    cursors = sa.table(
        "poll_cursors",
        sa.column("workflow_id", kipu.store.types.GUID()),
        sa.column("last_post_id", sa.Text()),
        sa.column("last_checked_at", kipu.store.types.UTCDateTime()),
        sa.column("polling_since", kipu.store.types.UTCDateTime()),
    )
    from datetime import datetime

    for wf_id, config in bind.execute(sa.select(workflows.c.id, workflows.c.trigger_config)).all():
        config = dict(config or {})
        found = {k: config.pop(k, None) for k in KEYS}
        if not any(found.values()):
            continue
        when = {k: datetime.fromisoformat(found[k]) if found[k] else None for k in ("last_checked_at", "polling_since")}
        bind.execute(cursors.insert().values(workflow_id=wf_id, last_post_id=found["last_post_id"], **when))
        bind.execute(workflows.update().where(workflows.c.id == wf_id).values(trigger_config=config))


def downgrade() -> None:
    op.drop_table("poll_cursors")
