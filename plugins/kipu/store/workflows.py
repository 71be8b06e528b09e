"""Store and load workflows as specs: import/export, the bulk read behind the DAG factory, store-level checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from kipu.naming import workflow_dag_id, workflow_slug
from kipu.specs.steps import ApprovalStep, PublishStep
from kipu.specs.workflow import WorkflowSpec, WorkflowSpecError, parse_workflow
from kipu.store.accounts import find_team, lock_team, resolve_connection
from kipu.store.crypto import get_cipher
from kipu.store.models import Profile, Team, TeamMember, Workflow, WorkflowRun, WorkflowStep


def _step_document(key: str, step_type: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The spec form of a stored step: the seed keeps everything but order and type in ``config``."""
    return {"id": key, "type": step_type, **(config or {})}


def _document(
    name: str,
    description: str | None,
    slug: str | None,
    team: str | None,
    status: str | None,
    tz: str | None,
    trigger: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "slug": slug,
        "team": team,
        "status": status or "inactive",
        "timezone": tz or "UTC",
        "trigger": trigger,
        "steps": [],
    }


def workflow_document(wf: Workflow, steps: list[WorkflowStep], team_slug: str | None) -> dict[str, Any]:
    doc = _document(wf.name, wf.description, wf.slug, team_slug, wf.status, wf.timezone, wf.trigger_config)
    doc["steps"] = [
        _step_document(s.step_key, s.step_type, s.config) for s in sorted(steps, key=lambda s: s.order_index)
    ]
    return doc


def store_errors(session: Session, spec: WorkflowSpec, team: Team) -> list[str]:
    """Checks that need the store: publish connections belong to the team, approvers are members."""
    errors: list[str] = []
    members = {
        key
        for m, p in session.execute(
            select(TeamMember, Profile)
            .join(Profile, Profile.id == TeamMember.user_id)
            .where(TeamMember.team_id == team.id)
        )
        for key in (str(p.id), p.email, p.airflow_username)
        if key
    }
    trigger_conn = getattr(spec.trigger, "connection_id", None)
    if trigger_conn and resolve_connection(session, team.id, trigger_conn) is None:
        errors.append(f"trigger.connection_id: '{trigger_conn}' is not a connection of team '{team.slug}'")
    for i, step in enumerate(spec.steps):
        label = f"steps[{i}] ({step.type} '{step.id}')"
        if isinstance(step, PublishStep):
            for j, target in enumerate(step.targets):
                where = "connection_id" if j == 0 else f"additional_targets[{j - 1}].connection_id"
                conn = resolve_connection(session, team.id, target.connection_id)
                if conn is None:
                    errors.append(
                        f"{label}.{where}: '{target.connection_id}' is not a connection of team '{team.slug}'"
                    )
                elif conn.platform != target.platform:
                    errors.append(f"{label}.{where}: connection is a {conn.platform} account, not {target.platform}")
        if isinstance(step, ApprovalStep):
            for j, approver in enumerate(step.config.approvers):
                if approver not in members:
                    errors.append(f"{label}.config.approvers[{j}]: '{approver}' is not a member of team '{team.slug}'")
    return errors


def validate_document(session: Session | None, data: Any) -> tuple[WorkflowSpec, Team | None]:
    """Spec validation, then store checks when a session is given; raises WorkflowSpecError."""
    spec = parse_workflow(data)
    if session is None:
        return spec, None
    if not spec.team:
        raise WorkflowSpecError(["team: required to store a workflow (a team slug or id)"], spec.name)
    team = find_team(session, spec.team)
    if team is None:
        raise WorkflowSpecError([f"team: '{spec.team}' does not exist"], spec.name)
    errors = store_errors(session, spec, team)
    if errors:
        raise WorkflowSpecError(errors, spec.name)
    return spec, team


class WorkflowConflict(WorkflowSpecError):
    """The document names a workflow that already exists in the team (``create``), or moves one."""

    def __init__(self, field: str, message: str, name: str | None = None) -> None:
        super().__init__([f"{field}: {message}"], name)
        self.field = field


def save_workflow(session: Session, data: Any, *, mode: str = "upsert", replacing: Workflow | None = None) -> Workflow:
    """Validate and store a workflow document. Slugs are unique per team.

    ``upsert`` (``kipu workflow import``) replaces the team's workflow with the same slug; ``create`` refuses one
    (``WorkflowConflict`` naming the field); ``replace`` updates ``replacing`` and keeps its slug.
    """
    spec, team = validate_document(session, data)
    assert team is not None
    if replacing is not None:
        if replacing.team_id != team.id:
            raise WorkflowConflict("team", "a workflow cannot move to another team", spec.name)
        slug, wf = replacing.slug or workflow_slug(spec.name), replacing
    else:
        slug = spec.slug or workflow_slug(spec.name)
        # The team's row locked first: two creates of one slug at once are a 201 and a 409, never a unique-key 500.
        lock_team(session, team.id)
        wf = session.scalar(select(Workflow).where(Workflow.team_id == team.id, Workflow.slug == slug))
        if wf is not None and mode == "create":
            field = "slug" if spec.slug else "name"
            raise WorkflowConflict(
                field,
                f"this team already has a workflow with slug '{slug}'"
                + ("" if spec.slug else " (derived from the name); give another name or a slug"),
                spec.name,
            )
    if wf is None:
        wf = Workflow(
            id=uuid.uuid4(),
            slug=slug,
            team_id=team.id,
            name=spec.name,
            trigger_config={},
            dag_id=workflow_dag_id(team.slug, slug, team.id),
        )
        session.add(wf)
    doc = spec.to_document()
    trigger = doc["trigger"]
    _seal_secret(trigger, getattr(spec.trigger, "webhook_secret", None), wf.trigger_config or {})
    if not _same_source(wf.trigger_config or {}, trigger):
        forget_cursor(session, wf.id)  # another account: its history is not new
    wf.name, wf.description, wf.timezone = spec.name, spec.description, spec.timezone
    wf.trigger_config = trigger
    set_status(wf, spec.status)
    existing = {s.step_key: s for s in wf.steps}
    keep: list[WorkflowStep] = []
    for order, step_doc in enumerate(doc["steps"]):
        key, stype = step_doc.pop("id"), step_doc.pop("type")
        row = existing.pop(key, None) or WorkflowStep(id=uuid.uuid4(), step_key=key)
        row.order_index, row.step_type, row.config = order, stype, step_doc
        keep.append(row)
    wf.steps = keep  # steps no longer in the document are deleted (delete-orphan)
    session.flush()
    return wf


# What a secret looks like in every document Kipu gives out (pydantic's SecretStr); sent back, it keeps the secret.
REDACTED = "**********"


def _seal_secret(trigger: dict[str, Any], secret: SecretStr | None, old: dict[str, Any]) -> None:
    """Store the trigger's webhook secret encrypted; the placeholder of an exported document keeps the stored one."""
    trigger.pop("webhook_secret", None)
    if secret is None:
        return
    value = secret.get_secret_value()
    if value == REDACTED:
        if old.get("webhook_secret"):
            trigger["webhook_secret"] = old["webhook_secret"]
        return
    trigger["webhook_secret"] = get_cipher().encrypt(value)


def rotate_webhook_secret(wf: Workflow) -> str:
    """A new random webhook secret for the workflow, stored encrypted; the plaintext is returned once."""
    import secrets

    if (wf.trigger_config or {}).get("type") != "webhook":
        raise WorkflowSpecError(["trigger.type: only a webhook trigger has a secret to rotate"], wf.name)
    value = secrets.token_urlsafe(32)
    wf.trigger_config = {**wf.trigger_config, "webhook_secret": get_cipher().encrypt(value)}
    return value


def _same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """An edit keeps the poll cursor while it watches the same account."""
    return (old.get("type"), old.get("connection_id")) == (new.get("type"), new.get("connection_id"))


def forget_cursor(session: Session | None, workflow_id: uuid.UUID) -> None:
    from kipu.poll.cursor import forget

    if session is not None:
        forget(session, workflow_id)


def set_status(wf: Workflow, status: str) -> None:
    """Activate, pause or inactivate. Resuming from ``paused`` continues from the poll cursor; activating an
    ``inactive`` workflow starts from now, so history is never replayed."""
    from kipu.billing.plans import check
    from kipu.factory.reparse import mark_changed

    session = object_session(wf)
    if status == "active" and wf.status != "active" and session is not None:
        check(session, wf.team_id, "active_workflows")
    if status == "active" and wf.status == "inactive":
        forget_cursor(session, wf.id)
    wf.status = status
    mark_changed(wf)  # on commit: parse its shard file again


def find_workflow(session: Session, ref: str, team: str | None = None) -> Workflow:
    """A workflow by id, or by slug (``team/slug``, or ``slug`` with ``team``); LookupError says what is missing."""
    if "/" in ref and team is None:
        team, ref = ref.split("/", 1)
    wf = session.get(Workflow, uuid.UUID(ref)) if _is_uuid(ref) else None
    if wf is not None:
        return wf
    query = select(Workflow).where(Workflow.slug == ref)
    if team is not None:
        found = find_team(session, team)
        if found is None:
            raise LookupError(f"no team with slug or id {team!r}")
        query = query.where(Workflow.team_id == found.id)
    matches = list(session.scalars(query.limit(2)))
    if not matches:
        raise LookupError(f"no workflow with id or slug {ref!r}" + (f" in team {team!r}" if team else ""))
    if len(matches) > 1:
        raise LookupError(f"several teams have a workflow with slug {ref!r}: give the team (team/slug or --team)")
    return matches[0]


def export_workflow(session: Session, workflow_id: str, team: str | None = None) -> dict[str, Any]:
    wf = find_workflow(session, workflow_id, team)
    team_row = session.get(Team, wf.team_id) if wf.team_id else None
    doc = workflow_document(wf, list(wf.steps), team_row.slug if team_row else None)
    return parse_workflow(doc).to_document()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass
class WorkflowRecord:
    """One workflow as the factory sees it (active or paused): its document plus ids, from a single bulk read."""

    id: str
    slug: str
    team_id: str | None
    team_slug: str | None
    owner: str | None
    document: dict[str, Any]
    dag_id: str = ""
    # The pre-namespace DAG id, only while runs started under it are unfinished: the factory serves both.
    legacy_dag_id: str | None = None
    step_ids: dict[str, str] = field(default_factory=dict)
    approvers: dict[str, dict[str, str]] = field(default_factory=dict)
    connection_platforms: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.dag_id:  # a snapshot written before DAG ids were stored
            self.dag_id = workflow_dag_id(self.team_slug, self.slug, self.team_id)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


# Statuses whose workflows have a DAG: a paused one keeps its DAG (paused in Airflow) and so its history in view.
SERVED_STATUSES = ("active", "paused")


def load_served(
    session: Session, keys: tuple[int, int] | None = None, dag_id: str | None = None
) -> list[WorkflowRecord]:
    """Every workflow that has a DAG, with its steps, team and approver identities, in one joined query; only
    those whose ``shard_key`` is in ``[low, high)`` (an index range scan), and only the one DAG ``dag_id``."""
    # Core tables, not ORM entities: this runs on every DAG parse, where configuring the ORM mappers (which
    # makes Airflow import all of its own models) and identity-mapping thousands of rows cost more than the query.
    w, ws, t, p = Workflow.__table__, WorkflowStep.__table__, Team.__table__, Profile.__table__
    wr = WorkflowRun.__table__
    served = [w.c.status.in_(SERVED_STATUSES)]
    if keys is not None:
        served += [w.c.shard_key >= keys[0], w.c.shard_key < keys[1]]
    if dag_id is not None:
        served.append((w.c.dag_id == dag_id) | (w.c.legacy_dag_id == dag_id))
    rows = session.execute(
        select(
            w.c.id,
            w.c.slug,
            w.c.dag_id,
            w.c.legacy_dag_id,
            w.c.team_id,
            w.c.name,
            w.c.description,
            w.c.status,
            w.c.timezone,
            w.c.trigger_config,
            t.c.slug,
            p.c.email,
            ws.c.id,
            ws.c.step_key,
            ws.c.step_type,
            ws.c.config,
        )
        .join(ws, ws.c.workflow_id == w.c.id)
        .outerjoin(t, t.c.id == w.c.team_id)
        .outerjoin(p, p.c.id == t.c.owner_id)
        .where(*served)
        .order_by(w.c.dag_id, w.c.id, ws.c.order_index)
    ).all()
    # Which old DAG ids still have live runs; asked only when one of these workflows has an old id (most have none,
    # and a task loading its own DAG saves the round trip).
    legacy_live: set[Any] = set()
    if any(row[3] is not None for row in rows):
        legacy_live = set(
            session.scalars(
                select(w.c.id)
                .join(wr, (wr.c.workflow_id == w.c.id) & (wr.c.dag_id == w.c.legacy_dag_id))
                .where(*served, w.c.legacy_dag_id.is_not(None), wr.c.status.in_(("pending", "running")))
                .distinct()
            )
        )
    records: dict[str, WorkflowRecord] = {}
    wanted: set[str] = set()
    for row in rows:
        (wf_id, slug, dag_id, legacy, team_id, name, description, status, tz, trigger, team_slug, owner) = row[:12]
        sid, key, stype, cfg = row[12:]
        wid = str(wf_id)
        record = records.get(wid)
        if record is None:
            record = records[wid] = WorkflowRecord(
                id=wid,
                slug=slug or wid,
                team_id=str(team_id) if team_id else None,
                team_slug=team_slug,
                owner=owner,
                document=_document(name, description, slug, team_slug, status, tz, trigger),
                dag_id=dag_id or workflow_dag_id(team_slug, slug or wid, team_id),
                legacy_dag_id=legacy if wf_id in legacy_live else None,
            )
        record.document["steps"].append(_step_document(key, stype, cfg))
        record.step_ids[key] = str(sid)
        if stype == "approval":
            wanted.update((cfg or {}).get("config", {}).get("approvers", []))
    # Approver identities for HITL, for all workflows at once.
    if wanted:
        query = select(p.c.id, p.c.email, p.c.airflow_username, p.c.name)
        if len(wanted) <= 500:
            uuids = [uuid.UUID(x) for x in wanted if _is_uuid(x)]
            query = query.where(p.c.email.in_(wanted) | p.c.airflow_username.in_(wanted) | p.c.id.in_(uuids))
        index = {
            k: {"id": username or email or str(pid), "name": pname}
            for pid, email, username, pname in session.execute(query)
            for k in (str(pid), email, username)
            if k
        }
        for r in records.values():
            for s in r.document["steps"]:
                for a in (s.get("config") or {}).get("approvers", []) if s["type"] == "approval" else []:
                    if a in index:
                        r.approvers[a] = {"id": index[a]["id"], "name": index[a]["name"] or a}
    return list(records.values())


def member_names(session: Session, team_id: uuid.UUID) -> dict[str, str]:
    """How each way of naming a team member (profile id, email, Airflow username) reads to a person."""
    names: dict[str, str] = {}
    rows = session.execute(
        select(Profile).join(TeamMember, TeamMember.user_id == Profile.id).where(TeamMember.team_id == team_id)
    ).scalars()
    for p in rows:
        shown = f"{p.name} <{p.email}>" if p.name else (p.email or p.airflow_username or str(p.id))
        for key in (str(p.id), p.email, p.airflow_username):
            if key:
                names[key] = shown
    return names
