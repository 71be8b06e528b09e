"""Names Kipu gives to things in Airflow: engine DAG ids, workflow DAG ids, run ids and slugs.

Runtime code (poll engine, webhooks, API) names DAGs through here without importing the factory or the operators.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from slugify import slugify

# The engine's DAGs. None contains a dot, and every workflow DAG id does: the two namespaces cannot meet.
ENGINE_DAG_IDS = ("kipu_poll", "kipu_maintenance", "kipu_awaiting", "kipu_notify", "kipu_shards")
WORKFLOW_DAG_PREFIX = "kipu."

TEAM_SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
WORKFLOW_SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,80}$"
_TEAM_SLUG = re.compile(TEAM_SLUG_PATTERN)
_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def workflow_dag_id(team_slug: str | None, workflow_slug: str, team_id: uuid.UUID | str | None = None) -> str:
    """``kipu.<team>.<workflow>``: unique per team, readable in the Airflow UI, never an engine DAG id."""
    team = _UNSAFE.sub("-", (team_slug or "").lower()).strip("-") or f"team-{str(team_id or 'none')[:8]}"
    return f"{WORKFLOW_DAG_PREFIX}{team}.{_UNSAFE.sub('-', workflow_slug.lower())}"


def legacy_dag_id(workflow_slug: str) -> str:
    """The DAG id before workflow DAGs had a namespace of their own (``kipu_<slug>``); runs made then keep it."""
    return f"kipu_{workflow_slug}"


def is_workflow_dag_id(dag_id: str) -> bool:
    return dag_id.startswith(WORKFLOW_DAG_PREFIX) and dag_id not in ENGINE_DAG_IDS


def run_id_for(workflow_run_id: uuid.UUID | str) -> str:
    """The Airflow run id of a recorded item: deterministic, so a second start is a no-op."""
    return f"kipu__{workflow_run_id}"


def workflow_slug(name: str) -> str:
    """The slug a workflow gets from its name. A name with no letter or digit Latin can spell (``🚀✨``) gets a
    stable slug from a hash of the name, so two such names never share one."""
    slug = slugify(name, separator="_", max_length=60)
    if slug:
        return slug
    return "w_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def team_slug(name: str) -> str:
    slug = slugify(name, max_length=63)
    return slug or "t-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def valid_team_slug(slug: str) -> bool:
    return bool(_TEAM_SLUG.match(slug))
