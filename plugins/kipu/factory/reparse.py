"""Parse on change: once a workflow change commits, ask Airflow to parse again the one shard file that holds it,
and keep a paused workflow's DAG paused in Airflow. Runtime code; it imports neither the builder nor operators."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session, object_session

from kipu.factory.shards import file_name, shard_count, shard_key, shard_of

if TYPE_CHECKING:
    from kipu.store.models import Workflow

log = logging.getLogger(__name__)
_PENDING = "kipu.dags_changed"


@dataclass(frozen=True)
class Change:
    workflow_id: uuid.UUID
    shard_key: int
    dag_ids: tuple[str, ...]
    status: str | None


def mark_changed(wf: Workflow) -> None:
    """Note ``wf``'s DAG as changed; the parse request goes out only if and when its transaction commits."""
    session = object_session(wf)
    if session is None:
        return
    if wf.id is None:
        wf.id = uuid.uuid4()
    wf_id = wf.id
    dag_ids = tuple(d for d in (wf.dag_id, wf.legacy_dag_id) if d)
    session.info.setdefault(_PENDING, {})[wf_id] = Change(wf_id, shard_key(wf_id), dag_ids, wf.status)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    changes = session.info.pop(_PENDING, None)
    if changes:
        request_parse(list(changes.values()))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def default_bundle() -> str:
    """The DAG bundle that holds the shard files when Airflow knows none of their DAGs yet."""
    return os.environ.get("KIPU_DAG_BUNDLE", "dags-folder")


def request_parse(changes: list[Change]) -> list[str]:
    """What ``PUT /api/v2/parseDagFile/{file_token}`` does, for each changed shard file: a priority parsing request
    the dag-processor takes before its periodic pass. Returns the files asked for. Never raises: if Airflow's
    database cannot be reached, the periodic parse (``min_file_process_interval``) still picks the change up."""
    count = shard_count()
    files = sorted({file_name(shard_of(c.shard_key, count), count) for c in changes})
    try:
        _request(files, changes)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        log.warning("Kipu could not ask Airflow to parse %s again (%s); the periodic parse will", files, reason)
        return []
    return files


def _request(files: list[str], changes: list[Change]) -> None:
    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session

    with create_session() as s:
        for name in files:
            # Where Airflow holds the file (its bundle, and a sub-folder if any), from a DAG it already has there.
            row = s.execute(
                select(DagModel.relative_fileloc, DagModel.bundle_name)
                .where(or_(DagModel.relative_fileloc == name, DagModel.relative_fileloc.like(f"%/{name}")))
                .limit(1)
            ).first()
            rel, bundle = (row[0], row[1]) if row else (name, default_bundle())
            queued = s.scalar(
                select(DagPriorityParsingRequest.id).where(
                    DagPriorityParsingRequest.bundle_name == bundle, DagPriorityParsingRequest.relative_fileloc == rel
                )
            )
            if queued is None:
                s.add(DagPriorityParsingRequest(bundle_name=bundle, relative_fileloc=rel))
        # Kipu's status decides: a paused workflow's DAG is paused, an active one's is not, and a deleted one's is
        # gone at once. Airflow alone marks a DAG missing from its file stale only if that file was last parsed
        # more than stale_dag_threshold (50 s) before; a parse of the shard after this commit never serves it again.
        for status, values in (("paused", {"is_paused": True}), ("active", {"is_paused": False})):
            ids = [d for c in changes if c.status == status for d in c.dag_ids]
            if ids:
                s.execute(update(DagModel).where(DagModel.dag_id.in_(ids)).values(**values))
        gone = [d for c in changes if c.status == "inactive" for d in c.dag_ids]
        if gone:
            s.execute(update(DagModel).where(DagModel.dag_id.in_(gone)).values(is_stale=True))


def reconcile(window: timedelta = timedelta(minutes=15), grace: float = 20.0) -> list[str]:
    """Ask again for the shards of workflows changed (more than ``grace`` s ago, within ``window``) that Airflow
    has not parsed since. Airflow drops a parse request for a file it is parsing at that moment, and that parse may
    have read the store before the change; run every poll cycle, this bounds such a change's delay to a cycle.
    Never raises: it must not fail the poll cycle."""
    try:
        return _reconcile(window, grace)
    except Exception as exc:
        log.warning(
            "Kipu could not check which workflow changes Airflow has parsed: %s", str(exc).splitlines()[0][:200]
        )
        return []


def _reconcile(window: timedelta, grace: float) -> list[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from kipu.store.engine import session_scope
    from kipu.store.models import Workflow
    from kipu.store.types import utcnow

    now = utcnow()
    with session_scope() as s:
        rows = s.execute(
            select(Workflow.id, Workflow.dag_id, Workflow.legacy_dag_id, Workflow.status, Workflow.updated_at).where(
                Workflow.updated_at > now - window,
                Workflow.updated_at < now - timedelta(seconds=grace),
                Workflow.status.in_(("active", "paused")),
            )
        ).all()
    if not rows:
        return []
    with create_session() as s:
        parsed = {
            dag_id: (at - timedelta(seconds=took or 0)) if at else None
            for dag_id, at, took in s.execute(
                select(DagModel.dag_id, DagModel.last_parsed_time, DagModel.last_parse_duration).where(
                    DagModel.dag_id.in_([r.dag_id for r in rows if r.dag_id])
                )
            )
        }
    # A parse that started before the change may have read the store before it: only a later start counts.
    behind = [
        Change(r.id, shard_key(r.id), tuple(d for d in (r.dag_id, r.legacy_dag_id) if d), r.status)
        for r in rows
        if parsed.get(r.dag_id) is None or parsed[r.dag_id] < r.updated_at
    ]
    if behind:
        log.info("Kipu asks again for the shards of %d changed workflows not parsed since", len(behind))
    return request_parse(behind) if behind else []
