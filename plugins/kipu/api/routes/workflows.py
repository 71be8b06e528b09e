"""``/api/workflows``: CRUD validated by the same specs as the CLI, manual runs, duplicate, status, run history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from kipu.api.auth import Caller, CallerDep, load_owned
from kipu.api.errors import unprocessable
from kipu.hooks.media import not_in_library
from kipu.preview import Preview
from kipu.specs.common import UtcDateTime, UtcQueryDateTime
from kipu.specs.document import check_document_limits
from kipu.specs.items import ManualItem
from kipu.specs.workflow import WorkflowSpecError
from kipu.store.engine import session_scope
from kipu.store.models import Team, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun
from kipu.store.workflows import WorkflowConflict, export_workflow, rotate_webhook_secret, save_workflow, set_status

router = APIRouter(prefix="/workflows", tags=["workflows"])


class WorkflowOut(BaseModel):
    id: uuid.UUID
    team: str | None
    slug: str | None
    name: str
    status: str | None
    dag_id: str
    document: dict[str, Any]


class RunItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: ManualItem = Field(
        description="the item: a caption and optional media (`kipu-media:<id>` from the team's library), with an "
        "optional idempotency_key that makes a retried request safe; or a full content item naming its platform"
    )

    @field_validator("item")
    @classmethod
    def _media_from_the_web_or_the_library(cls, item: ManualItem) -> ManualItem:
        """Media of a hand-made item: an http(s) URL the egress guard allows, or ``kipu-media:<id>`` from the team's
        library; never a path on the server or an s3:// object."""
        from kipu.egress import EgressRefused, allow_private, check_url
        from kipu.hooks.media import LIBRARY_SCHEME

        for i, media in enumerate(item.media):
            scheme = media.url.split(":", 1)[0].lower() if ":" in media.url else ""
            if scheme == LIBRARY_SCHEME or (allow_private() and scheme not in ("http", "https")):
                continue
            try:
                check_url(media.url)
            except EgressRefused as exc:
                raise ValueError(f"media[{i}].url: {exc} (or name a media library item as kipu-media:<id>)") from None
        return item


class RunStarted(BaseModel):
    workflow_run_id: uuid.UUID
    dag_id: str
    dag_run_id: str | None
    created: bool
    status: str
    started: bool
    detail: str | None = None


class StepOut(BaseModel):
    step: str
    type: str
    status: str | None
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None


class RunOut(BaseModel):
    id: uuid.UUID
    platform_post_id: str | None
    source: str | None
    status: str | None
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    dag_run_id: str | None
    steps: list[StepOut]


def _load(caller: Caller, workflow_id: uuid.UUID, role: str) -> Workflow:
    return load_owned(caller, Workflow, workflow_id, role, "workflow")


def _out(workflow_id: uuid.UUID) -> WorkflowOut:
    with session_scope() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        team = s.get(Team, wf.team_id) if wf.team_id else None
        doc = export_workflow(s, str(workflow_id))
        return WorkflowOut(
            id=wf.id,
            team=team.slug if team else None,
            slug=wf.slug,
            name=wf.name,
            status=wf.status,
            dag_id=wf.dag_id or "",
            document=doc,
        )


def _save(caller: Caller, document: dict[str, Any], replacing: Workflow | None = None) -> uuid.UUID:
    """Create (409 if the team has the slug) or replace; validated before anything is written."""
    team_ref = document.get("team")
    if not isinstance(team_ref, str):
        raise unprocessable("team is required", ("body", "team"))
    team_id = caller.team(team_ref, "member")
    if replacing is not None and replacing.team_id != team_id:
        raise unprocessable("a workflow cannot move to another team", ("body", "team"))
    try:
        check_document_limits(document)
        with session_scope() as s:
            wf = s.get(Workflow, replacing.id) if replacing is not None else None
            return save_workflow(s, document, mode="create", replacing=wf).id
    except WorkflowConflict as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, [{"loc": ["body", exc.field], "msg": exc.errors[0], "type": "conflict"}]
        ) from None
    except WorkflowSpecError as exc:
        raise unprocessable(exc.errors, ("body",)) from None


@router.get("", response_model=list[WorkflowOut])
def list_workflows(caller: CallerDep, team: str | None = None) -> list[WorkflowOut]:
    teams = [caller.team(team, "viewer")] if team else caller.team_ids
    with session_scope() as s:
        ids = list(s.scalars(select(Workflow.id).where(Workflow.team_id.in_(teams)).order_by(Workflow.slug)))
    return [_out(i) for i in ids]


@router.post(
    "",
    response_model=WorkflowOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the team already has a workflow with this slug (the detail names the field)"}},
)
def create_workflow(document: dict[str, Any], caller: CallerDep) -> WorkflowOut:
    """The body is a workflow document, exactly as `kipu workflow import` reads it. Create always creates: a slug
    (given, or derived from the name) the team already uses answers 409; change a workflow with PUT."""
    return _out(_save(caller, document))


class WorkflowActivity(BaseModel):
    workflow_id: uuid.UUID
    last_run_at: datetime | None
    last_status: str | None
    counts: dict[str, int] = Field(description="runs per status (completed, skipped, failed, ...) in the window")


@router.get("/activity", response_model=list[WorkflowActivity])
def activity(caller: CallerDep, team: str, days: int = Query(30, ge=1, le=365)) -> list[WorkflowActivity]:
    """Per workflow of the team: its last run and how its runs of the last ``days`` ended (viewers and up)."""
    from datetime import UTC, timedelta

    from sqlalchemy import func

    team_id = caller.team(team, "viewer")
    since = datetime.now(UTC) - timedelta(days=days)
    with session_scope() as s:
        ids = list(s.scalars(select(Workflow.id).where(Workflow.team_id == team_id)))
        if not ids:
            return []
        counts: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
        for wf_id, state, n in s.execute(
            select(WorkflowRun.workflow_id, WorkflowRun.status, func.count())
            .where(WorkflowRun.workflow_id.in_(ids), WorkflowRun.started_at >= since)
            .group_by(WorkflowRun.workflow_id, WorkflowRun.status)
        ):
            counts[wf_id][state or "pending"] = int(n)
        last = {
            wf_id: (at, state)
            for wf_id, at, state in s.execute(
                select(WorkflowRun.workflow_id, WorkflowRun.started_at, WorkflowRun.status)
                .where(WorkflowRun.workflow_id.in_(ids))
                .order_by(WorkflowRun.workflow_id, WorkflowRun.started_at)
            )
        }  # ascending: the last row per workflow wins
    return [
        WorkflowActivity(
            workflow_id=i,
            last_run_at=last.get(i, (None, None))[0],
            last_status=last.get(i, (None, None))[1],
            counts=counts[i],
        )
        for i in ids
    ]


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=256 * 1024, description="a workflow file's YAML or JSON text")
    format: Literal["yaml", "json"] = "yaml"


class Validation(BaseModel):
    valid: bool
    errors: list[str] = Field(description="every problem, each naming its step and field (or its line)")


@router.post("/validate", response_model=Validation)
def validate_text(body: ValidateIn, caller: CallerDep) -> Validation:
    """Check a workflow file as import would, writing nothing: YAML or JSON, the spec, and the team's own
    connections and approvers (viewers of the file's team; a team that is not the caller's is an error)."""
    from kipu.specs.document import load_document
    from kipu.store.workflows import validate_document

    try:
        data = load_document(body.text.encode("utf-8", "surrogatepass"), f"workflow.{body.format}")
    except WorkflowSpecError as exc:
        return Validation(valid=False, errors=list(exc.errors))
    team_ref = data.get("team")
    if not isinstance(team_ref, str) or not team_ref:
        return Validation(valid=False, errors=["team: required (the team's slug)"])
    try:
        caller.team(team_ref, "viewer")
    except HTTPException:
        return Validation(valid=False, errors=[f"team: {team_ref!r} is not one of your teams"])
    try:
        with session_scope() as s:
            validate_document(s, data)
    except WorkflowSpecError as exc:
        return Validation(valid=False, errors=list(exc.errors))
    return Validation(valid=True, errors=[])


@router.get("/{workflow_id}", response_model=WorkflowOut)
def get_workflow(workflow_id: uuid.UUID, caller: CallerDep) -> WorkflowOut:
    _load(caller, workflow_id, "viewer")
    return _out(workflow_id)


@router.put("/{workflow_id}", response_model=WorkflowOut)
def replace_workflow(workflow_id: uuid.UUID, document: dict[str, Any], caller: CallerDep) -> WorkflowOut:
    wf = _load(caller, workflow_id, "member")
    return _out(_save(caller, document, replacing=wf))


@router.delete("/{workflow_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_workflow(workflow_id: uuid.UUID, caller: CallerDep) -> None:
    """Inactivates it and keeps its history (runs and posts refer to it)."""
    _load(caller, workflow_id, "admin")
    with session_scope() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        set_status(wf, "inactive")


class RotatedSecret(BaseModel):
    """Shown once: Kipu stores the secret encrypted and never shows it again."""

    workflow_id: uuid.UUID
    webhook_secret: str = Field(description="the new secret; store it now, it is never shown again")


@router.post("/{workflow_id}/webhook-secret", response_model=RotatedSecret)
def rotate_secret(workflow_id: uuid.UUID, caller: CallerDep) -> RotatedSecret:
    """A new webhook secret (admins); the old one stops working at once."""
    _load(caller, workflow_id, "admin")
    with session_scope() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        try:
            value = rotate_webhook_secret(wf)
        except WorkflowSpecError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, exc.errors[0]) from None
    return RotatedSecret(workflow_id=workflow_id, webhook_secret=value)


@router.post("/{workflow_id}/duplicate", response_model=WorkflowOut, status_code=status.HTTP_201_CREATED)
def duplicate_workflow(workflow_id: uuid.UUID, caller: CallerDep) -> WorkflowOut:
    wf = _load(caller, workflow_id, "member")
    with session_scope() as s:
        doc = export_workflow(s, str(workflow_id))
        base, n = f"{doc['slug']}_copy"[:81], 1
        slug = base
        while s.scalar(select(Workflow.id).where(Workflow.team_id == wf.team_id, Workflow.slug == slug)):
            n += 1
            slug = f"{base[:76]}{n}"
    doc["trigger"].pop("webhook_secret", None)  # a copy gets its own secret (rotate it)
    copy = {**doc, "slug": slug, "name": f"{doc['name']} (copy)"[:200], "status": "inactive"}
    return _out(_save(caller, copy))


@router.post("/{workflow_id}/run", response_model=RunStarted, status_code=status.HTTP_202_ACCEPTED)
def run_workflow(workflow_id: uuid.UUID, body: RunItem, caller: CallerDep) -> RunStarted:
    """A manual run with an item: recorded, then started, exactly like a polled item (a second call is a no-op)."""
    from kipu.api.starter import AirflowStarter
    from kipu.ingest import enter, start

    _load(caller, workflow_id, "member")
    with session_scope() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        if wf.status != "active":
            raise HTTPException(status.HTTP_409_CONFLICT, f"workflow is {wf.status}; activate it first")
        urls = [m.url for m in body.item.media]
        missing = not_in_library(s, wf.team_id, urls)
        if missing:
            first = missing[0]
            raise unprocessable(
                f"{urls[first][:80]} is not in this team's media library", ("body", "item", "media", first, "url")
            )
        (rec,) = enter(s, wf, [body.item.to_item(f"manual:{uuid.uuid4()}")], source="manual")
    detail = None
    try:
        with session_scope() as s:
            started = start(AirflowStarter(), s, rec)
    except Exception as exc:  # the run is recorded: kipu_poll's reconciler starts it
        started, detail = False, f"recorded; the start will be retried by kipu_poll ({type(exc).__name__})"
    with session_scope() as s:
        run = s.get(WorkflowRun, rec.workflow_run_id)
        assert run is not None
        return RunStarted(
            workflow_run_id=run.id,
            dag_id=rec.dag_id,
            dag_run_id=run.dag_run_id,
            created=rec.created,
            status=run.status or "pending",
            started=started,
            detail=detail or (rec.skipped_reason if rec.status == "skipped" else None),
        )


@router.get("/{workflow_id}/runs", response_model=list[RunOut])
def workflow_runs(
    workflow_id: uuid.UUID,
    caller: CallerDep,
    limit: int = Query(50, ge=1, le=200),
    before: UtcQueryDateTime | None = None,
) -> list[RunOut]:
    """Newest first, with each step's status ("partially published" shows on the run)."""
    _load(caller, workflow_id, "viewer")
    with session_scope() as s:
        query = select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id)
        if before is not None:
            query = query.where(WorkflowRun.started_at < before)
        runs = list(s.scalars(query.order_by(WorkflowRun.started_at.desc()).limit(limit)))
        steps = s.execute(
            select(WorkflowStepRun, WorkflowStep.step_key, WorkflowStep.step_type)
            .join(WorkflowStep, WorkflowStep.id == WorkflowStepRun.step_id)
            .where(WorkflowStepRun.run_id.in_([r.id for r in runs]))
            .order_by(WorkflowStep.order_index)
        )
        by_run: dict[uuid.UUID, list[StepOut]] = {}
        for sr, key, stype in steps:
            by_run.setdefault(sr.run_id, []).append(
                StepOut(
                    step=key,
                    type=stype,
                    status=sr.status,
                    started_at=sr.started_at,
                    completed_at=sr.completed_at,
                    error=sr.error_message,
                )
            )
        return [
            RunOut(
                id=r.id,
                platform_post_id=r.platform_post_id,
                source=r.source,
                status=r.status,
                error=r.error_message,
                started_at=r.started_at,
                completed_at=r.completed_at,
                dag_run_id=r.dag_run_id,
                steps=by_run.get(r.id, []),
            )
            for r in runs
        ]


class PreviewIn(BaseModel):
    """A dry run: nothing is published or stored."""

    model_config = ConfigDict(extra="forbid")

    item: ManualItem = Field(description="the item, as for a manual run")
    ai: bool = Field(False, description="let ai_rewrite steps call the model (counted against the team's budget)")
    at: UtcDateTime | None = Field(None, description="when the item arrives (default: now); delays count from it")


class DocumentPreviewIn(PreviewIn):
    document: dict[str, Any] = Field(description="a workflow document, as `kipu workflow test` reads it")


def _preview(caller: Caller, spec: Any, team_id: uuid.UUID, body: PreviewIn) -> Preview:
    from kipu.preview import dry_run
    from kipu.store.workflows import member_names

    if body.ai:
        caller.require(team_id, "member", "team")
    with session_scope() as s:
        names = member_names(s, team_id)
    item = body.item.to_item("manual:preview")
    return dry_run(spec, item, now=body.at, approvers=names, team_id=team_id, use_model=body.ai)


@router.post("/preview", response_model=Preview)
def preview_document(body: DocumentPreviewIn, caller: CallerDep) -> Preview:
    """The dry run of an unsaved workflow document (`kipu workflow test` in remote mode)."""
    from kipu.store.workflows import validate_document

    team_ref = body.document.get("team")
    if not isinstance(team_ref, str):
        raise unprocessable("team is required", ("body", "document", "team"))
    team_id = caller.team(team_ref, "viewer")
    try:
        check_document_limits(body.document)
        with session_scope() as s:
            spec, _ = validate_document(s, body.document)
    except WorkflowSpecError as exc:
        raise unprocessable(exc.errors, ("body", "document")) from None
    return _preview(caller, spec, team_id, body)


@router.post("/{workflow_id}/preview", response_model=Preview)
def preview_workflow(workflow_id: uuid.UUID, body: PreviewIn, caller: CallerDep) -> Preview:
    """What the stored workflow would do with the item: each step's outcome and each target's final caption with
    its length in the platform's counting. Nothing is published or stored."""
    from kipu.specs.workflow import parse_workflow

    wf = _load(caller, workflow_id, "viewer")
    with session_scope() as s:
        spec = parse_workflow(export_workflow(s, str(workflow_id)))
    assert wf.team_id is not None
    return _preview(caller, spec, wf.team_id, body)


# Declared last: the other /{workflow_id}/... routes must match first.
@router.post("/{workflow_id}/{action}", response_model=WorkflowOut)
def change_status(
    workflow_id: uuid.UUID, action: Literal["activate", "pause", "inactivate"], caller: CallerDep
) -> WorkflowOut:
    _load(caller, workflow_id, "member")
    with session_scope() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        set_status(wf, {"activate": "active", "pause": "paused", "inactivate": "inactive"}[action])
    return _out(workflow_id)
