"""workflows.shard_key: the DAG shard file that holds each workflow, indexed so a shard reads only its own

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from kipu.store.types import GUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from kipu.factory.shards import shard_key

    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("shard_key", sa.Integer(), nullable=True))
    conn = op.get_bind()
    workflows = sa.table("workflows", sa.column("id", GUID()), sa.column("shard_key", sa.Integer()))
    ids = [row[0] for row in conn.execute(sa.select(workflows.c.id))]
    for start in range(0, len(ids), 1000):
        conn.execute(
            workflows.update().where(workflows.c.id == sa.bindparam("wid")).values(shard_key=sa.bindparam("key")),
            [{"wid": wid, "key": shard_key(str(wid))} for wid in ids[start : start + 1000]],
        )
    with op.batch_alter_table("workflows") as batch:
        batch.alter_column("shard_key", existing_type=sa.Integer(), nullable=False, server_default="0")
        batch.create_index("ix_workflows_shard_key", ["shard_key"])


def downgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.drop_index("ix_workflows_shard_key")
        batch.drop_column("shard_key")
