"""workflows: slugs unique per team, DAG ids in their own namespace (kipu.<team>.<slug>)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:30:00

Before this revision a workflow's DAG id was ``kipu_<slug>``, with slugs unique across all teams: a slug such as
``poll`` took over the engine's ``kipu_poll``, and one team's slug was taken from every other team. Each workflow now
stores its DAG id. Runs recorded but never started move to the new id; runs already started keep the id they ran
under (their Airflow history links up), and the factory serves the DAG under that ``legacy_dag_id`` too until they
end.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from kipu.naming import ENGINE_DAG_IDS, legacy_dag_id, workflow_dag_id

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("dag_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("legacy_dag_id", sa.Text(), nullable=True))
    bind = op.get_bind()
    workflows = sa.table(
        "workflows",
        sa.column("id"),
        sa.column("team_id"),
        sa.column("slug", sa.Text()),
        sa.column("dag_id", sa.Text()),
        sa.column("legacy_dag_id", sa.Text()),
    )
    teams = sa.table("teams", sa.column("id"), sa.column("slug", sa.Text()))
    runs = sa.table(
        "workflow_runs",
        sa.column("workflow_id"),
        sa.column("dag_id", sa.Text()),
        sa.column("status", sa.Text()),
        sa.column("start_requested_at"),
    )
    rows = bind.execute(
        sa.select(workflows.c.id, workflows.c.team_id, workflows.c.slug, teams.c.slug).select_from(
            workflows.outerjoin(teams, teams.c.id == workflows.c.team_id)
        )
    ).all()
    for wf_id, team_id, slug, team_slug in rows:
        slug = slug or str(wf_id)
        new, old = workflow_dag_id(team_slug, slug, team_id), legacy_dag_id(slug)
        bind.execute(
            workflows.update()
            .where(workflows.c.id == wf_id)
            # A legacy id that was an engine DAG's never served this workflow: nothing to keep serving.
            .values(dag_id=new, legacy_dag_id=None if old in ENGINE_DAG_IDS else old)
        )
        bind.execute(
            runs.update()
            .where(
                runs.c.workflow_id == wf_id,
                runs.c.status == "pending",
                runs.c.start_requested_at.is_(None),
            )
            .values(dag_id=new)
        )
    with op.batch_alter_table("workflows") as batch:
        batch.drop_constraint("uq_workflows_slug", type_="unique")
        batch.create_unique_constraint("uq_workflows_team_id_slug", ["team_id", "slug"])
        batch.create_unique_constraint("uq_workflows_dag_id", ["dag_id"])


def downgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.drop_constraint("uq_workflows_dag_id", type_="unique")
        batch.drop_constraint("uq_workflows_team_id_slug", type_="unique")
        batch.create_unique_constraint("uq_workflows_slug", ["slug"])
        batch.drop_column("legacy_dag_id")
        batch.drop_column("dag_id")
