"""Parse on change: once a workflow change commits, ask Airflow to parse again the one shard file that holds it,
and keep a paused workflow's DAG paused in Airflow; each poll cycle, ask again for what Airflow missed. Runtime code;
it imports neither the builder nor operators."""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session, object_session

from kipu.factory.shards import STATUS_FILE, file_name, shard_count, shard_key, shard_of

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


@dataclass(frozen=True)
class ParseTarget:
    """A Kipu DAG file to parse again, and a DAG it holds: Airflow's REST API names a file by a token that only one
    of its DAGs' records gives out."""

    file: str
    dag_id: str | None = None


def request_parse(changes: list[Change]) -> list[str]:
    """What ``PUT /api/v2/parseDagFile/{file_token}`` does, for each changed shard file: a priority parsing request
    the dag-processor takes before its periodic pass. Returns the files asked for. Never raises: if Airflow cannot be
    reached, the next poll cycle's ``reconcile`` or the periodic parse (``min_file_process_interval``) picks the
    change up."""
    count = shard_count()
    targets: dict[str, str | None] = {}
    for c in changes:
        targets.setdefault(file_name(shard_of(c.shard_key, count), count), c.dag_ids[0] if c.dag_ids else None)
    return request_files([ParseTarget(f, d) for f, d in sorted(targets.items())], changes)


def request_files(targets: list[ParseTarget], changes: list[Change] | None = None) -> list[str]:
    """Priority parsing requests for ``targets``, then ``changes``'s pause state in Airflow. Returns the files asked
    for; never raises."""
    files = [t.file for t in targets]
    try:
        with closing(airflow()) as dags:
            return dags.request(targets, changes or [])
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        log.warning("Kipu could not ask Airflow to parse %s again (%s); the periodic parse will", files, reason)
        return []


class AirflowDags(Protocol):
    def request(self, targets: list[ParseTarget], changes: list[Change]) -> list[str]: ...

    def parse_started(self, dag_ids: list[str]) -> dict[str, datetime | None]: ...

    def close(self) -> None: ...


def airflow() -> AirflowDags:
    """Airflow's metadata database where this process may use it (the API server, the CLI); in a task or a DAG
    file, where Airflow 3 closes it, Airflow's REST API through the ``kipu_airflow_api`` connection."""
    if _orm_open():
        return _Database()
    from kipu.airflow_api import CONN_ID, from_connection

    api = from_connection()
    if api is None:
        raise RuntimeError(f"Airflow's database is closed to this process and no {CONN_ID} connection is defined")
    return _RestAPI(api)


def _orm_open() -> bool:
    from airflow import settings

    try:
        from airflow.sdk.execution_time.supervisor import BlockedDBSession
    except ImportError:  # pragma: no cover - the Task SDK ships with Airflow 3
        return True
    return getattr(settings, "Session", None) is not BlockedDBSession


def _started(at: datetime | None, took: float | None) -> datetime | None:
    # A parse that started before a change may have read the store before it: only its start counts.
    return at - timedelta(seconds=took or 0) if at else None


class _Database:
    def request(self, targets: list[ParseTarget], changes: list[Change]) -> list[str]:
        from airflow.models.dag import DagModel
        from airflow.models.dagbag import DagPriorityParsingRequest
        from airflow.utils.session import create_session

        with create_session() as s:
            for target in targets:
                rel, bundle = _locate(s, target.file)
                queued = s.scalar(
                    select(DagPriorityParsingRequest.id).where(
                        DagPriorityParsingRequest.bundle_name == bundle,
                        DagPriorityParsingRequest.relative_fileloc == rel,
                    )
                )
                if queued is None:
                    s.add(DagPriorityParsingRequest(bundle_name=bundle, relative_fileloc=rel))
            # Kipu's status decides: a paused workflow's DAG is paused, an active one's is not, and a deleted one's
            # is gone at once. Airflow alone marks a DAG missing from its file stale only if that file was last
            # parsed more than stale_dag_threshold (50 s) before; a parse of the shard after this commit never
            # serves it again.
            for status, values in (("paused", {"is_paused": True}), ("active", {"is_paused": False})):
                ids = [d for c in changes if c.status == status for d in c.dag_ids]
                if ids:
                    s.execute(update(DagModel).where(DagModel.dag_id.in_(ids)).values(**values))
            gone = [d for c in changes if c.status == "inactive" for d in c.dag_ids]
            if gone:
                s.execute(update(DagModel).where(DagModel.dag_id.in_(gone)).values(is_stale=True))
        return [t.file for t in targets]

    def parse_started(self, dag_ids: list[str]) -> dict[str, datetime | None]:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        with create_session() as s:
            rows = s.execute(
                select(DagModel.dag_id, DagModel.last_parsed_time, DagModel.last_parse_duration).where(
                    DagModel.dag_id.in_(dag_ids)
                )
            )
            return {dag_id: _started(at, took) for dag_id, at, took in rows}

    def close(self) -> None:
        pass  # each call opens and closes its own session


class _RestAPI:
    def __init__(self, api: Any) -> None:
        self.api = api

    def request(self, targets: list[ParseTarget], changes: list[Change]) -> list[str]:
        asked = []
        for target in targets:
            record = self.api.dag(target.dag_id) if target.dag_id else None
            if record is None:
                log.warning("Airflow holds no DAG of %s yet: its first parse will pick it up", target.file)
                continue
            self.api.reparse(record["file_token"])
            asked.append(target.file)
        for change in changes:  # a deleted workflow never comes here: reconcile asks only for live ones
            if change.status in ("paused", "active"):
                for dag_id in change.dag_ids:
                    self.api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": change.status == "paused"})
        return asked

    def parse_started(self, dag_ids: list[str]) -> dict[str, datetime | None]:
        out: dict[str, datetime | None] = {}
        for dag_id in dag_ids:
            record = self.api.dag(dag_id)
            if record is not None:
                at = record.get("last_parsed_time")
                out[dag_id] = _started(datetime.fromisoformat(at) if at else None, record.get("last_parse_duration"))
        return out

    def close(self) -> None:
        self.api.close()


def _locate(s: Session, name: str) -> tuple[str, str]:
    """``(relative_fileloc, bundle)`` of Kipu's DAG file ``name``: where Airflow holds it, or its shards' sibling,
    or the default bundle's root."""
    from airflow.models.dag import DagModel

    loc = DagModel.relative_fileloc
    for where in (or_(loc == name, loc.like(f"%/{name}")), or_(loc.like("kipu_shard_%"), loc.like("%/kipu_shard_%"))):
        row = s.execute(select(loc, DagModel.bundle_name).where(where).limit(1)).first()
        if row:
            return str(Path(row[0]).with_name(name)), row[1]
    return name, default_bundle()


def reconcile(window: timedelta = timedelta(minutes=15), grace: float = 20.0) -> list[str]:
    """Ask again, each poll cycle, for what Airflow has missed. Returns the files asked for; never raises: it must
    not fail the poll cycle.

    - The shards of workflows changed (more than ``grace`` s ago, within ``window``) that Airflow has not parsed
      since: Airflow drops a parse request for a file it is parsing at that moment, and that parse may have read the
      store before the change. This bounds such a change's delay to a cycle.
    - Shards last served from their snapshot, now that the store answers (this cycle has just read it).
    - The status file, when the shards' problems differ from what it last reported (a shard's parse cannot ask for
      it: Airflow closes its database to DAG files)."""
    from kipu.factory import status

    try:
        with closing(airflow()) as dags:
            targets = [ParseTarget(STATUS_FILE, status.STATUS_DAG_ID)] if status.report_due() else []
            changes: list[Change] = []
            try:
                behind, changes = _behind(dags, window, grace)
            except Exception as exc:  # the store is down: the status file must report it all the same
                log.warning("Kipu could not read its workflow changes: %s", (str(exc).splitlines() or [""])[0][:200])
            else:
                files = {t.file for t in behind}
                targets = behind + [t for t in status.on_snapshot() if t.file not in files] + targets
            if not targets:
                return []
            log.info("Kipu asks Airflow to parse %s again", [t.file for t in targets])
            return dags.request(targets, changes)
    except Exception as exc:
        log.warning("Kipu could not check what Airflow has parsed: %s", (str(exc).splitlines() or [""])[0][:200])
        return []


def _behind(dags: AirflowDags, window: timedelta, grace: float) -> tuple[list[ParseTarget], list[Change]]:
    """The shards of changed workflows whose DAGs Airflow has not parsed since, and those changes (their pause state
    is set again with the request)."""
    from kipu.store.engine import session_scope
    from kipu.store.models import Workflow
    from kipu.store.types import utcnow

    now = utcnow()
    with session_scope() as s:
        rows = s.execute(
            select(Workflow.id, Workflow.dag_id, Workflow.legacy_dag_id, Workflow.status, Workflow.updated_at)
            .where(
                Workflow.updated_at > now - window,
                Workflow.updated_at < now - timedelta(seconds=grace),
                Workflow.status.in_(("active", "paused")),
            )
            .order_by(Workflow.updated_at.desc())
            .limit(200)  # a cycle asks for at most this many; the rest the next cycle
        ).all()
    if not rows:
        return [], []
    parsed = dags.parse_started([r.dag_id for r in rows if r.dag_id])
    behind = [
        Change(r.id, shard_key(r.id), tuple(d for d in (r.dag_id, r.legacy_dag_id) if d), r.status)
        for r in rows
        if r.dag_id and (parsed.get(r.dag_id) is None or parsed[r.dag_id] < r.updated_at)
    ]
    count = shard_count()
    targets: dict[str, str] = {}
    for c in behind:
        targets.setdefault(file_name(shard_of(c.shard_key, count), count), c.dag_ids[0])
    return [ParseTarget(f, d) for f, d in sorted(targets.items())], behind
