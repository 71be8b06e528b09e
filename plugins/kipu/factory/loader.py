"""Read one shard's workflows in one query, fall back to that shard's last good snapshot, and build the DAGs."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, get_parsing_context
from airflow.sdk.exceptions import AirflowFailException

from kipu.config import kipu_home
from kipu.factory.builder import START, build_dag
from kipu.factory.shards import index_of, key_range, shard_count
from kipu.naming import ENGINE_DAG_IDS
from kipu.specs.workflow import WorkflowSpecError, parse_workflow
from kipu.store.workflows import WorkflowRecord

log = logging.getLogger(__name__)


def snapshot_path(shard: int | None = None) -> Path:
    base = Path(os.environ.get("KIPU_DAG_SNAPSHOT", kipu_home() / "dag_snapshot.json"))
    return base if shard is None else base.with_name(f"{base.stem}.shard-{shard:04d}{base.suffix}")


def _write_snapshot(records: list[WorkflowRecord], path: Path) -> None:
    data = json.dumps([r.to_json() for r in records], sort_keys=True, default=str).encode()
    try:
        if path.exists() and hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            return
    except OSError:
        pass
    write_atomic(path, data)


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace ``path`` with ``data`` in one step (readers never see half a file); False, logged, if it cannot."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not break parsing
        log.warning("Kipu could not write %s: %s", path, exc)
        return False
    return True


def _read_snapshot(path: Path) -> list[WorkflowRecord]:
    if not path.exists():
        return []
    return [WorkflowRecord(**r) for r in json.loads(path.read_text())]


@dataclass(frozen=True)
class Shard:
    """Which part of the DAG set to build: shard ``index`` of ``count``, or everything (``index`` None)."""

    index: int | None = None
    count: int = 1

    @property
    def keys(self) -> tuple[int, int] | None:
        return None if self.index is None else key_range(self.index, self.count)

    @property
    def snapshot(self) -> Path:
        return snapshot_path(self.index)


def load_records(shard: Shard = Shard(), dag_id: str | None = None) -> tuple[list[WorkflowRecord], str]:
    """The shard's workflows from the store, or from its last good snapshot if the store is unreachable. With
    ``dag_id`` (a task being run), only that workflow is read, and the snapshot is neither read nor written."""
    from kipu.store.engine import session_scope
    from kipu.store.workflows import load_served

    try:
        with session_scope() as session:
            records = load_served(session, shard.keys, dag_id)
    except Exception as exc:
        log.error("Kipu store unreachable (%s); serving the last good snapshot %s", exc, shard.snapshot)
        records = _read_snapshot(shard.snapshot)
        if dag_id is not None:
            records = [r for r in records if dag_id in (r.dag_id, r.legacy_dag_id)]
        return records, "snapshot"
    if dag_id is None:
        _write_snapshot(records, shard.snapshot)
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


def _records_with_ids(records: list[WorkflowRecord]) -> list[tuple[str, WorkflowRecord]]:
    """``(dag_id, record)`` for every DAG to build: each workflow under its id, and under its legacy id while runs
    started before DAG namespaces are unfinished. No workflow ever takes an engine DAG's id."""
    out: list[tuple[str, WorkflowRecord]] = []
    for record in records:
        for dag_id in (record.dag_id, record.legacy_dag_id):
            if dag_id and dag_id not in ENGINE_DAG_IDS:
                out.append((dag_id, record))
    return out


def build(shard: Shard = Shard()) -> dict[str, DAG]:
    """The DAGs of ``shard``; with a parsing context (a task being run), only the DAG being run."""
    wanted = get_parsing_context().dag_id
    started = time.monotonic()
    records, source = load_records(shard, wanted)
    dags: dict[str, DAG] = {}
    for dag_id, record in _records_with_ids(records):
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
    if not wanted:
        _report(shard, len(records), list(dags), time.monotonic() - started, source)
    return dags


def parse_budget() -> float:
    """Half of Airflow's ``dagbag_import_timeout``: a shard must leave room for a busy machine."""
    from airflow.configuration import conf

    return conf.getfloat("core", "dagbag_import_timeout", fallback=30.0) / 2


def _report(shard: Shard, workflows: int, dag_ids: list[str], seconds: float, source: str) -> None:
    name = "all workflows" if shard.index is None else f"shard {shard.index} of {shard.count}"
    if shard.index is not None:
        from kipu.factory.status import ShardStatus, record

        at = shard.snapshot.stat().st_mtime if source == "snapshot" and shard.snapshot.exists() else None
        record(
            ShardStatus(
                index=shard.index,
                count=shard.count,
                source=source,
                seconds=round(seconds, 3),
                budget=parse_budget(),
                workflows=workflows,
                dags=len(dag_ids),
                at=datetime.now(UTC),
                snapshot_at=datetime.fromtimestamp(at, UTC) if at else None,
                dag_id=dag_ids[0] if dag_ids else None,
            )
        )
    log.info("Kipu %s: %d workflows, %d DAGs in %.2fs from the %s", name, workflows, len(dag_ids), seconds, source)
    if seconds > parse_budget():
        log.error(
            "Kipu %s took %.1fs, over its budget of %.1fs (half of dagbag_import_timeout): raise KIPU_DAG_SHARDS "
            "and run `kipu dags shards` before it times out",
            name,
            seconds,
            parse_budget(),
        )


def build_shard(path: str) -> dict[str, DAG]:
    """The DAGs of the shard file at ``path`` (``kipu_shard_NN.py``), under ``KIPU_DAG_SHARDS``. A file beyond
    the configured count (left from a larger count) builds nothing."""
    if os.environ.get("_AIRFLOW_PARSING_CONTEXT_DAG_ID"):
        # A task process forked from a worker that preloaded Kipu (kipu.celery_config) skips kipu.factory's own
        # freeze: freeze the inherited heap here, so building the one DAG does not walk it.
        gc.freeze()
    index, count = index_of(path), shard_count()
    if index is None:
        raise ValueError(f"{path} is not a Kipu shard file (kipu_shard_NN.py)")
    if index >= count:
        log.warning("%s is beyond KIPU_DAG_SHARDS=%d and builds nothing: run `kipu dags shards`", path, count)
        return {}
    return build(Shard(index, count))


def build_all() -> dict[str, DAG]:
    """Every served workflow's DAG, as all shards together would build them (tests, benchmarks, tools)."""
    return build()
