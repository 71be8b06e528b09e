"""Parse on change: once a workflow change commits, ask Airflow to parse again the one shard file that holds it,
and keep a paused workflow's DAG paused in Airflow. Runtime code; it imports neither the builder nor operators."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    wf_id = wf.id or uuid.uuid4()
    wf.id = wf_id
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


def pending(session: Session) -> dict[Any, Change]:
    """The changes noted in ``session`` and not yet committed (tests)."""
    return dict(session.info.get(_PENDING, {}))
