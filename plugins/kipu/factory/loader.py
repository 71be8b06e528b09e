"""Read every active workflow in one query, fall back to the last good snapshot, and build the DAGs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, get_parsing_context
from airflow.sdk.exceptions import AirflowFailException

from kipu.config import kipu_home
from kipu.factory.builder import START, build_dag
from kipu.naming import ENGINE_DAG_IDS
from kipu.specs.workflow import WorkflowSpecError, parse_workflow
from kipu.store.workflows import WorkflowRecord

log = logging.getLogger(__name__)


def snapshot_path() -> Path:
    return Path(os.environ.get("KIPU_DAG_SNAPSHOT", kipu_home() / "dag_snapshot.json"))


def _write_snapshot(records: list[WorkflowRecord]) -> None:
    data = json.dumps([r.to_json() for r in records], sort_keys=True, default=str).encode()
    path = snapshot_path()
    try:
        if path.exists() and hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not break parsing
        log.warning("Kipu could not write its DAG snapshot %s: %s", path, exc)


def _read_snapshot() -> list[WorkflowRecord]:
    path = snapshot_path()
    if not path.exists():
        return []
    return [WorkflowRecord(**r) for r in json.loads(path.read_text())]


def load_records() -> tuple[list[WorkflowRecord], str]:
    """Active workflows from the store, or from the last good snapshot if the store is unreachable."""
    from kipu.store.engine import session_scope
    from kipu.store.workflows import load_active

    try:
        with session_scope() as session:
            records = load_active(session)
    except Exception as exc:
        log.error("Kipu store unreachable (%s); serving the last good snapshot %s", exc, snapshot_path())
        return _read_snapshot(), "snapshot"
    _write_snapshot(records)
    return records, "store"


class InvalidWorkflowOperator(BaseOperator):
    """Stands in for an invalid workflow so its error is visible in the UI and a run fails clearly."""

    ui_color = "#ffcccc"

    def __init__(self, *, errors: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    def execute(self, context: Any) -> None:
        raise AirflowFailException(self.errors)


def error_dag(record: WorkflowRecord, error: WorkflowSpecError, dag_id: str | None = None) -> DAG:
    """A paused DAG that shows why the workflow is invalid, in place of the workflow."""
    message = str(error)
    dag = DAG(
        dag_id=dag_id or record.dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        tags=["kipu", "kipu:invalid"],
        is_paused_upon_creation=True,
        description=f"INVALID: {error.errors[0][:180]}",
        doc_md="### This Kipu workflow is invalid\n\n```\n" + message + "\n```\n\nFix it with "
        "`kipu workflow validate` and re-import it; the other workflows are unaffected.",
    )
    with dag:
        InvalidWorkflowOperator(task_id="invalid_workflow", errors=message)
    return dag


def _records_with_ids() -> list[tuple[str, WorkflowRecord]]:
    """``(dag_id, record)`` for every DAG to build: each workflow under its id, and under its legacy id while runs
    started before DAG namespaces are unfinished. No workflow ever takes an engine DAG's id."""
    records, _source = load_records()
    out: list[tuple[str, WorkflowRecord]] = []
    for record in records:
        for dag_id in (record.dag_id, record.legacy_dag_id):
            if dag_id and dag_id not in ENGINE_DAG_IDS:
                out.append((dag_id, record))
    return out


def build_all() -> dict[str, DAG]:
    """Every active workflow's DAG; with a parsing context, only the DAG being run."""
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    for dag_id, record in _records_with_ids():
        if (wanted and wanted != dag_id) or dag_id in dags:
            continue
        try:
            spec = parse_workflow(record.document)
            dags[dag_id] = build_dag(spec, record, dag_id)
        except WorkflowSpecError as exc:
            log.error("Kipu workflow %s (%s) is invalid:\n%s", dag_id, record.id, exc)
            dags[dag_id] = error_dag(record, exc, dag_id)
        except Exception as exc:  # one broken workflow must never hide the others
            log.exception("Kipu workflow %s could not be built", dag_id)
            dags[dag_id] = error_dag(record, WorkflowSpecError([f"{type(exc).__name__}: {exc}"], record.slug), dag_id)
    return dags
