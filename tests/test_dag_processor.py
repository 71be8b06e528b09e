"""Parse on change through Airflow's real dag-processor: an edit goes live on its shard's parse request, the other
shards are not parsed again, a paused workflow keeps a paused DAG, a deleted one loses its DAG."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kipu.factory.shards import STATUS_FILE, file_name, shard_count, shard_key, shard_of
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from kipu.store.workflows import export_workflow, save_workflow, set_status
from sqlalchemy import select

from tests.helpers import demo_doc

pytestmark = pytest.mark.slow


def _wait(check: Callable[[], Any], what: str, limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


def _dags() -> dict[str, tuple[str, Any, bool, bool, str | None]]:
    """dag_id -> (file, last parsed, paused, stale, serialized hash) for Kipu's workflow DAGs."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as s:
        rows = s.execute(
            select(DagModel.dag_id, DagModel.relative_fileloc, DagModel.last_parsed_time, DagModel.is_paused)
            .add_columns(DagModel.is_stale)
            .where(DagModel.dag_id.like("kipu.%"))
        ).all()
        hashes = dict(
            s.execute(
                select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash).order_by(SerializedDagModel.last_updated)
            ).all()
        )
    return {d: (f, t, p, st, hashes.get(d)) for d, f, t, p, st in rows}


@pytest.fixture
def processor(airflow_db: Path, pg_demo_team: dict, tmp_path: Path) -> Iterator[list[Workflow]]:
    """Four stored workflows in four different shards, and `airflow dag-processor` over the DAG folder."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    stored: list[Workflow] = []
    shards: set[int] = set()
    with session_scope() as s:
        n = 0
        while len(stored) < 4:  # four workflows in four different shards
            wf = save_workflow(s, demo_doc(name=f"Live {n}", slug=f"live{n}"))
            n += 1
            if shard_of(shard_key(wf.id), shard_count()) not in shards:
                shards.add(shard_of(shard_key(wf.id), shard_count()))
                stored.append(wf)
    env = {
        **os.environ,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
    }
    log = (tmp_path / "dag-processor.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "dag-processor"], env=env, stdout=log, stderr=log)
    try:
        ids = {w.dag_id for w in stored}
        _wait(lambda: ids <= {d for d, v in _dags().items() if v[4] and not v[3]}, "the first parse", 180)
        time.sleep(3)  # let the first pass settle: every file parsed once
        yield stored
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_changes_go_live_through_their_shard_only(processor: list[Workflow]) -> None:
    edited, paused, deleted, untouched = processor
    before = _dags()
    with session_scope() as s:
        doc = export_workflow(s, str(edited.id))
        doc["description"] = "edited while live"
        started = time.monotonic()
        save_workflow(s, doc, replacing=s.get(Workflow, edited.id))
    _wait(lambda: _dags()[edited.dag_id][4] != before[edited.dag_id][4], "the edit to be serialized", 30)
    live_after = time.monotonic() - started
    assert live_after < 30
    after = _dags()
    # Only the edited workflow's shard was parsed again; every other shard kept its DAGs untouched.
    edited_file = file_name(shard_of(shard_key(edited.id), shard_count()), shard_count())
    assert after[edited.dag_id][0] == edited_file
    for dag_id in (paused.dag_id, deleted.dag_id, untouched.dag_id):
        assert after[dag_id][1] == before[dag_id][1] and after[dag_id][4] == before[dag_id][4]

    with session_scope() as s:
        set_status(s.get(Workflow, paused.id), "paused")
    assert _dags()[paused.dag_id][2]  # paused in Airflow at once
    _wait(lambda: _dags()[paused.dag_id][1] != before[paused.dag_id][1], "the paused workflow's shard to be parsed")
    assert not _dags()[paused.dag_id][3]  # its DAG, and so its history, stays

    with session_scope() as s:
        set_status(s.get(Workflow, deleted.id), "inactive")
    _wait(lambda: _dags()[deleted.dag_id][3], "the deleted workflow's DAG to go stale", 60)
    final = _dags()
    assert final[untouched.dag_id][1] == before[untouched.dag_id][1]
    assert not final[edited.dag_id][3] and not final[untouched.dag_id][3]


def _allow_connections(url: str, allow: bool) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'))
    admin.dispose()


def _status_dag_ids() -> set[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as s:
        return set(
            s.scalars(select(DagModel.dag_id).where(DagModel.relative_fileloc == STATUS_FILE, ~DagModel.is_stale))
        )


def _import_errors() -> dict[str, str]:
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session

    with create_session() as s:
        return dict(s.execute(select(ParseImportError.filename, ParseImportError.stacktrace)).all())


def test_a_shard_parsed_while_the_store_is_down_keeps_its_dags(processor: list[Workflow], pg_url: str) -> None:
    from kipu.factory.reparse import Change, reconcile, request_parse

    one, *others = processor
    shard_file = file_name(shard_of(shard_key(one.id), shard_count()), shard_count())
    before = _dags()
    change = Change(one.id, shard_key(one.id), (one.dag_id,), None)
    _allow_connections(pg_url, False)  # the store goes away for the dag-processor's next parse of the shard
    try:
        assert request_parse([change]) == [shard_file]
        _wait(lambda: _dags()[one.dag_id][1] != before[one.dag_id][1], "the shard to be parsed again", 60)
        during = _dags()
        # Served from the shard's last good snapshot: the DAG and its history stay, and so do the other shards'.
        assert not during[one.dag_id][3] and during[one.dag_id][4] == before[one.dag_id][4]
        assert all(not during[w.dag_id][3] for w in others)
        logs = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "dag_processor"
        _wait(
            lambda: any("serving the last good snapshot" in f.read_text() for f in logs.rglob(f"{shard_file}.log")),
            "the shard's log to say so",
            30,
        )
        # ...and, once the next poll cycle asks for the status file, in Airflow's import errors on that file alone
        # (this process still holds a pooled connection to the store, so the cycle asks for the shard again too).
        assert STATUS_FILE in reconcile()
        error = _wait(lambda: _import_errors().get(STATUS_FILE), "the status file's import error", 60)
    finally:
        _allow_connections(pg_url, True)
    assert f"{shard_file}: the Kipu store was unreachable" in error and "last good snapshot" in error
    assert list(_import_errors()) == [STATUS_FILE]
    assert all(not _dags()[w.dag_id][3] for w in processor)
    # The store answers again: the next cycle asks for the shard, the one after for the status file; it clears.
    assert reconcile() == [shard_file]
    _wait(lambda: _dags()[one.dag_id][1] != during[one.dag_id][1], "the shard to be parsed again", 60)
    _wait(lambda: reconcile() == [STATUS_FILE], "the shard's recovery to be recorded", 30)
    _wait(lambda: STATUS_FILE not in _import_errors(), "the status file's import error to clear", 60)
    assert all(not _dags()[w.dag_id][3] for w in processor)
    assert "kipu_shards" in _status_dag_ids()
