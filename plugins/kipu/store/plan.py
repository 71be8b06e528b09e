"""Workflows as code: a folder of workflow files is one team's desired state; ``plan`` compares it with the store
and ``apply`` makes exactly that change in one transaction, refusing if the store moved since the plan.

A workflow in the store but not in the folder is paused (``prune``: deleted, which keeps its history). Webhook
secrets stay out of git: a file without one keeps the stored secret.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from kipu.naming import workflow_slug
from kipu.specs.document import DocumentError, check_document_limits, load_document
from kipu.specs.workflow import WorkflowSpecError, parse_workflow
from kipu.store.accounts import lock_team
from kipu.store.models import Team, Workflow
from kipu.store.workflows import REDACTED, export_workflow, save_workflow, set_status, validate_document

MAX_FILES = 2000
Action = Literal["create", "update", "pause", "delete"]


class Change(BaseModel):
    action: Action
    slug: str
    file: str | None = None
    workflow_id: str | None = None
    diff: str = ""  # a unified diff of the spec (create: the whole spec; pause and delete: the status)


class Plan(BaseModel):
    """What ``apply`` would do; ``fingerprint`` is the store state it was made against, ``source`` the files'."""

    team: str
    prune: bool
    fingerprint: str
    source: str
    changes: list[Change]
    errors: list[str] = []
    applied: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


class PlanInvalid(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class StoreChanged(Exception):
    """The store (or the folder) is not what the plan was made against."""


def _comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document with every default filled in and no secret: two documents that mean the same compare equal."""
    spec = parse_workflow({**doc, "trigger": {k: v for k, v in doc["trigger"].items() if k != "webhook_secret"}})
    return spec.model_dump(mode="json", exclude_none=True)


def _yaml(doc: Mapping[str, Any]) -> list[str]:
    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=100).splitlines(keepends=True)


def _diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], label: str) -> str:
    return "".join(
        difflib.unified_diff(_yaml(old) if old else [], _yaml(new), f"store/{label}", f"folder/{label}", n=2)
    )


def _secret_changes(doc: Mapping[str, Any], wf: Workflow | None) -> bool:
    """A secret written in a file is always a change: comparing it with the stored one would let anyone who may
    plan (viewers) test guesses of a secret only admins see. Files keep secrets out (``**********`` keeps it)."""
    given = (doc.get("trigger") or {}).get("webhook_secret")
    return bool(given) and given != REDACTED


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def read_folder(files: Mapping[str, bytes | str]) -> tuple[dict[str, Any], list[str]]:
    """Each file's document by file name, and every load error (size, syntax, aliases, duplicate keys)."""
    docs: dict[str, Any] = {}
    errors: list[str] = []
    if len(files) > MAX_FILES:
        return {}, [f"files: {len(files)} workflow files, over the limit of {MAX_FILES}"]
    for name in sorted(files):
        raw = files[name]
        try:
            data = load_document(raw.encode() if isinstance(raw, str) else raw, name)
            check_document_limits(data)
        except DocumentError as exc:
            errors += exc.errors
            continue
        if not isinstance(data, dict):
            errors.append(f"{name}: a workflow file is a mapping (name, trigger, steps)")
            continue
        docs[name] = data
    return docs, errors


def _desired(session: Session, team: Team, docs: Mapping[str, Any]) -> tuple[dict[str, tuple[str, dict]], list[str]]:
    """slug -> (file, document) for the team, every validation error across every file at once."""
    wanted: dict[str, tuple[str, dict]] = {}
    errors: list[str] = []
    for name, data in docs.items():
        doc = dict(data)
        given_team = doc.get("team")
        if given_team not in (None, team.slug, str(team.id)):
            errors.append(f"{name}: team: '{given_team}' is not the team of this folder ('{team.slug}')")
            continue
        doc["team"] = team.slug
        if not doc.get("slug"):
            stem = PurePath(name).name.split(".", 1)[0]
            doc["slug"] = workflow_slug(stem)
        try:
            validate_document(session, doc)
        except WorkflowSpecError as exc:
            errors += [f"{name}: {e}" for e in exc.errors]
            continue
        slug = str(doc["slug"])
        if slug in wanted:
            errors.append(f"{name}: slug '{slug}' is also the slug of {wanted[slug][0]}; slugs are unique per team")
            continue
        wanted[slug] = (name, doc)
    return wanted, errors


def _stored(session: Session, team: Team) -> dict[str, tuple[Workflow, dict[str, Any]]]:
    # Steps in one query: each export below then reads from the session, not the database.
    query = select(Workflow).where(Workflow.team_id == team.id).options(selectinload(Workflow.steps))
    rows = session.scalars(query.order_by(Workflow.slug))
    return {str(wf.slug): (wf, export_workflow(session, str(wf.id))) for wf in rows}


def fingerprint(stored: Mapping[str, tuple[Workflow, dict[str, Any]]]) -> str:
    """The team's workflows as the plan saw them: any edit, status change or new workflow changes it."""
    return _digest(
        {
            slug: [str(wf.id), wf.status, _comparable(doc), (wf.trigger_config or {}).get("webhook_secret")]
            for slug, (wf, doc) in stored.items()
        }
    )


def make_plan(session: Session, team: Team, files: Mapping[str, bytes | str], prune: bool = False) -> Plan:
    return _make(session, team, files, prune)[0]


def _make(
    session: Session, team: Team, files: Mapping[str, bytes | str], prune: bool
) -> tuple[Plan, dict[str, tuple[str, dict]]]:
    """The plan, and the validated documents it would write (by slug)."""
    docs, errors = read_folder(files)
    wanted, invalid = _desired(session, team, docs)
    errors += invalid
    stored = _stored(session, team)
    changes: list[Change] = []
    for slug, (name, doc) in sorted(wanted.items()):
        row = stored.get(slug)
        new = _comparable(doc)
        if row is None:
            changes.append(Change(action="create", slug=slug, file=name, diff=_diff(None, new, slug)))
            continue
        wf, current = row
        old = _comparable(current)
        if old != new or _secret_changes(doc, wf):
            diff = _diff(old, new, slug) or "  trigger.webhook_secret: (changed)\n"
            changes.append(Change(action="update", slug=slug, file=name, workflow_id=str(wf.id), diff=diff))
    for slug, (wf, _) in stored.items():
        if slug in wanted or wf.status == "inactive":
            continue
        if prune:
            changes.append(
                Change(action="delete", slug=slug, workflow_id=str(wf.id), diff=f"status: {wf.status} -> deleted\n")
            )
        elif wf.status != "paused":
            changes.append(
                Change(action="pause", slug=slug, workflow_id=str(wf.id), diff=f"status: {wf.status} -> paused\n")
            )
    plan = Plan(
        team=team.slug,
        prune=prune,
        fingerprint=fingerprint(stored),
        source=_digest({name: _comparable_or_raw(doc) for name, doc in docs.items()}),
        changes=changes if not errors else [],
        errors=errors,
    )
    return plan, wanted


def _comparable_or_raw(doc: Any) -> Any:
    try:
        return _comparable(doc)
    except Exception:  # an invalid file: its raw form
        return doc


def apply_plan(
    session: Session,
    team: Team,
    files: Mapping[str, bytes | str],
    *,
    prune: bool = False,
    expect_fingerprint: str | None = None,
    expect_source: str | None = None,
) -> Plan:
    """Make the plan's change in the caller's transaction; all of it or, on any error, none of it.

    Applies for one team are serialized by a lock on its row, so two CI jobs cannot interleave. With the
    fingerprints of a printed plan, a store or folder that moved since raises ``StoreChanged``.
    """
    lock_team(session, team.id)
    plan, wanted = _make(session, team, files, prune)
    if plan.errors:
        raise PlanInvalid(plan.errors)
    if expect_fingerprint is not None and expect_fingerprint != plan.fingerprint:
        raise StoreChanged(
            f"team '{team.slug}' changed in the store since the plan was made; nothing was applied. Run plan again"
        )
    if expect_source is not None and expect_source != plan.source:
        raise StoreChanged("the workflow files changed since the plan was made; nothing was applied. Run plan again")
    by_slug = {wf.slug: wf for wf in session.scalars(select(Workflow).where(Workflow.team_id == team.id))}
    for change in plan.changes:
        if change.action in ("create", "update"):
            _, doc = wanted[change.slug]
            trigger = dict(doc["trigger"])
            if change.action == "update" and not trigger.get("webhook_secret"):
                trigger.pop("webhook_secret", None)
                if (by_slug[change.slug].trigger_config or {}).get("webhook_secret"):
                    trigger["webhook_secret"] = REDACTED  # keeps the stored secret
            save_workflow(session, {**doc, "trigger": trigger}, mode="upsert")
        else:
            set_status(by_slug[change.slug], "paused" if change.action == "pause" else "inactive")
    session.flush()
    return plan.model_copy(update={"applied": True})
