"""DAG shards: a stable key per workflow, an indexed read per shard, per-shard snapshots, parse on change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kipu.factory.shards import (
    KEY_SPACE,
    STATUS_FILE,
    file_name,
    index_of,
    key_range,
    shard_key,
    shard_of,
    write_files,
)
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from kipu.store.workflows import load_served, save_workflow, set_status
from sqlalchemy import select, text

from tests.conftest import REPO, dag_folder_parsed, use_store
from tests.helpers import demo_doc


@pytest.mark.parametrize("count", [1, 7, 32, 1000, 1024])
def test_key_ranges_partition_the_key_space_exactly(count: int) -> None:
    seen = 0
    for index in range(count):
        low, high = key_range(index, count)
        assert low == seen and all(shard_of(k, count) == index for k in range(low, high))
        seen = high
    assert seen == KEY_SPACE


def test_a_workflows_key_depends_on_its_id_alone_and_spreads_evenly() -> None:
    wid = uuid.uuid4()
    assert shard_key(wid) == shard_key(str(wid)) == shard_key(uuid.UUID(str(wid)))
    counts = [0] * 32
    for _ in range(6400):
        counts[shard_of(shard_key(uuid.uuid4()), 32)] += 1
    assert min(counts) > 120 and max(counts) < 290  # 200 each on average


def test_shard_files_are_written_and_extra_ones_removed(tmp_path: Path) -> None:
    assert write_files(tmp_path, 4).written == [file_name(i, 4) for i in range(4)] + [STATUS_FILE]
    assert write_files(tmp_path, 4).written == []  # idempotent
    done = write_files(tmp_path, 2)
    assert done.removed == ["kipu_shard_02.py", "kipu_shard_03.py"] and done.written == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kipu_shard_00.py", "kipu_shard_01.py", STATUS_FILE]
    assert index_of(tmp_path / "kipu_shard_01.py") == 1 and index_of("kipu_poll.py") is None
    assert index_of(tmp_path / STATUS_FILE) is None
    # The repository ships the default count, and the status file.
    assert sorted(p.name for p in (REPO / "dags").glob("kipu_shard_*.py")) == [file_name(i, 32) for i in range(32)]
    assert (REPO / "dags" / STATUS_FILE).read_text() == (tmp_path / STATUS_FILE).read_text()


def _store(n: int) -> list[Workflow]:
    with session_scope() as s:
        return [save_workflow(s, demo_doc(name=f"W {i}", slug=f"w{i}")) for i in range(n)]


def test_each_shard_reads_only_its_own_workflows_and_none_moves(demo_team: dict) -> None:
    stored = _store(12)
    where = {str(wf.id): shard_of(shard_key(wf.id), 4) for wf in stored}
    with session_scope() as s:
        keys = {str(w.id): w.shard_key for w in s.scalars(select(Workflow))}
        assert keys == {wid: shard_key(wid) for wid in where}
        per_shard = [{r.id for r in load_served(s, key_range(i, 4))} for i in range(4)]
    assert set().union(*per_shard) == set(where) and sum(map(len, per_shard)) == 12  # each in exactly one
    assert all(where[wid] == i for i, ids in enumerate(per_shard) for wid in ids)
    with session_scope() as s:  # adding workflows never moves the others
        later = str(save_workflow(s, demo_doc(name="Later", slug="later")).id)
        grown = [{r.id for r in load_served(s, key_range(i, 4))} for i in range(4)]
    assert grown == [
        ids | ({later} if shard_of(shard_key(later), 4) == i else set()) for i, ids in enumerate(per_shard)
    ]


def test_the_shard_read_is_an_index_range_scan(pg_demo_team: dict) -> None:
    _store(3)
    low, high = key_range(5, 32)
    with session_scope() as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            r[0]
            for r in s.execute(
                text("EXPLAIN SELECT id FROM workflows WHERE shard_key >= :l AND shard_key < :h"), {"l": low, "h": high}
            )
        )
    assert "ix_workflows_shard_key" in plan, plan


def test_each_shard_keeps_its_own_snapshot(demo_team: dict, store_url: str) -> None:
    from kipu.factory.loader import Shard, build

    _store(8)
    before = {i: set(build(Shard(i, 4))) for i in range(4)}
    assert sum(map(len, before.values())) == 8
    lost = Shard(1, 4).snapshot
    lost.unlink()
    use_store("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    try:
        after = {i: set(build(Shard(i, 4))) for i in range(4)}
    finally:
        use_store(store_url)
    # Every shard serves its own last good snapshot; one without a snapshot serves nothing and hides no other.
    assert after == {**before, 1: set()}


def test_a_shard_on_its_snapshot_or_over_budget_fails_the_status_file(
    demo_team: dict, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kipu.factory import loader
    from kipu.factory.loader import Shard, build
    from kipu.factory.status import ShardsNeedAttention, check, needing_attention, on_snapshot, status_dag

    monkeypatch.setenv("KIPU_DAG_SHARDS", "2")
    down = shard_of(shard_key(_store(8)[0].id), 2)
    other = 1 - down
    down_file, other_file = file_name(down, 2), file_name(other, 2)
    for i in range(2):
        build(Shard(i, 2))
    assert status_dag().dag_id == "kipu_shards"  # every shard from the store, in budget: the file imports cleanly
    assert f"| {down_file} |" in status_dag().doc_md
    use_store("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    try:
        build(Shard(down, 2))
    finally:
        use_store(store_url)
    assert [s.file for s in needing_attention()] == [down_file]
    assert [t.file for t in on_snapshot()] == [down_file] and on_snapshot()[0].dag_id
    with pytest.raises(ShardsNeedAttention) as err:
        status_dag()
    message = str(err.value)
    assert f"{down_file}: the Kipu store was unreachable" in message and "last good snapshot" in message
    assert other_file not in message
    # Over budget: named with the budget and what to do.
    monkeypatch.setattr(loader, "parse_budget", lambda: 0.0)
    build(Shard(other, 2))
    with pytest.raises(ShardsNeedAttention, match=rf"{other_file}: parsed in .*over its budget of 0.0s"):
        check()
    monkeypatch.undo()
    monkeypatch.setenv("KIPU_DAG_SHARDS", "2")
    for i in range(2):  # the store answers again and the shards are parsed in budget: the error clears
        build(Shard(i, 2))
    check()
    assert on_snapshot() == []
    # Statuses recorded under another shard count are not this one's.
    use_store("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    try:
        build(Shard(down, 2))
    finally:
        use_store(store_url)
    monkeypatch.setenv("KIPU_DAG_SHARDS", "4")
    assert needing_attention() == [] and on_snapshot() == []


@pytest.fixture
def airflow_dags(airflow_db: Path, pg_demo_team: dict) -> Iterator[list[Workflow]]:
    """Airflow's DAG table holding the workflow DAGs, as after a first parse."""
    stored = _store(3)
    with dag_folder_parsed():
        yield stored


def _requests() -> set[str]:
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session

    with create_session() as s:
        return set(s.scalars(select(DagPriorityParsingRequest.relative_fileloc)))


def _paused(dag_id: str) -> bool:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as s:
        return s.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))


def test_a_change_asks_airflow_to_parse_its_one_shard_again(airflow_dags: list[Workflow]) -> None:
    wf = airflow_dags[0]
    shard = file_name(shard_of(shard_key(wf.id), 32), 32)
    assert _requests() == set()
    with pytest.raises(RuntimeError), session_scope() as s:  # a rolled-back change asks for nothing
        set_status(s.get(Workflow, wf.id), "paused")
        raise RuntimeError
    assert _requests() == set()
    with session_scope() as s:
        set_status(s.get(Workflow, wf.id), "paused")
    assert _requests() == {shard}
    assert _paused(wf.dag_id) and not _paused(airflow_dags[1].dag_id)
    with session_scope() as s:  # asked once until the dag-processor takes it
        set_status(s.get(Workflow, wf.id), "active")
    assert _requests() == {shard} and not _paused(wf.dag_id)


def test_edits_and_deletes_through_the_api_ask_for_a_parse(api: object, roles: dict, airflow_dags: list) -> None:
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    wf = airflow_dags[1]
    shard = file_name(shard_of(shard_key(wf.id), 32), 32)
    url = f"/kipu/api/workflows/{wf.id}"
    for call in (
        lambda: api.post(f"{url}/pause", headers=roles["owner"]),
        lambda: api.put(url, json=demo_doc(name="W 1", slug="w1", description="edited"), headers=roles["owner"]),
        lambda: api.delete(url, headers=roles["owner"]),
    ):
        with create_session() as s:
            s.execute(delete(DagPriorityParsingRequest))
        response = call()
        assert response.status_code < 300, response.text
        assert _requests() == {shard}


def test_doctor_reports_each_shard_and_what_needs_attention(
    demo_team: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import json

    from kipu.cli import main

    _store(6)
    monkeypatch.setenv("KIPU_DAG_SHARDS", "4")
    assert main(["dags", "shards", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["dags", "doctor", "--dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["count"] == 4 and report["budget_seconds"] == 15.0
    assert sum(s["workflows"] for s in report["shards"]) == sum(s["dags"] for s in report["shards"]) == 6
    (tmp_path / "kipu_shard_02.py").unlink()
    (tmp_path / "kipu_shard_07.py").write_text("")
    assert main(["dags", "doctor", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "kipu_shard_02.py is missing" in out and "kipu_shard_07.py is beyond KIPU_DAG_SHARDS=4" in out
    assert "problems found" in out
    (tmp_path / "kipu_shard_07.py").unlink()
    write_files(tmp_path, 4)
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "30")
    assert main(["dags", "doctor", "--dir", str(tmp_path)]) == 1
    assert "min_serialized_dag_update_interval is 30s" in capsys.readouterr().out


def test_a_change_airflow_has_not_parsed_since_is_asked_for_again(airflow_dags: list[Workflow]) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from kipu.factory.reparse import reconcile
    from kipu.store.types import utcnow
    from sqlalchemy import update

    # Parsed after every change: nothing to ask for.
    assert reconcile(grace=0) == [] and _requests() == set()
    wf = airflow_dags[2]
    # The request for a change was dropped (its file was mid-parse): the DAG's last parse started before it.
    with session_scope() as s:
        s.get(Workflow, wf.id).description = "changed"
    with create_session() as s:
        s.execute(
            update(DagModel)
            .where(DagModel.dag_id == wf.dag_id)
            .values(last_parsed_time=utcnow(), last_parse_duration=30.0)
        )
    shard = file_name(shard_of(shard_key(wf.id), 32), 32)
    assert reconcile(grace=0) == [shard] and _requests() == {shard}
    assert reconcile(grace=3600) == []  # too recent: its own request is still on its way


def test_a_shard_last_served_from_its_snapshot_is_asked_for_again(airflow_dags: list[Workflow]) -> None:
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from kipu.factory.reparse import reconcile
    from kipu.factory.status import ShardStatus, check, record
    from kipu.store.types import utcnow
    from sqlalchemy import delete

    check()  # the status file's parse: nothing to report
    assert reconcile(grace=3600) == []
    status = ShardStatus(index=5, count=32, source="snapshot", seconds=0.1, budget=15, workflows=1, dags=1, at=utcnow())
    record(status)
    # The shard, now that the store answers, and the status file, which has not reported it yet.
    assert reconcile(grace=3600) == ["kipu_shard_05.py", STATUS_FILE]
    assert _requests() == {"kipu_shard_05.py", STATUS_FILE}  # the status file beside the shards
    with pytest.raises(RuntimeError, match=r"kipu_shard_05\.py: the Kipu store was unreachable"):
        check()  # the status file's parse reports it
    with create_session() as s:
        s.execute(delete(DagPriorityParsingRequest))
    assert reconcile(grace=3600) == ["kipu_shard_05.py"]  # reported: only the shard again
    record(status.model_copy(update={"source": "store"}))
    assert reconcile(grace=3600) == [STATUS_FILE]  # recovered: the status file must clear its error
    check()
    assert reconcile(grace=3600) == []


def test_each_ask_closes_its_client_to_airflow(demo_team: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll cycle's task asks through the REST API: its HTTP client is closed when the ask ends, even on error."""
    from kipu.factory import reparse
    from kipu.factory.status import ShardStatus, record
    from kipu.store.types import utcnow

    class Dags:
        closed = 0

        def request(self, targets: list, changes: list) -> list[str]:
            raise RuntimeError("Airflow answered 503")

        def parse_started(self, dag_ids: list[str]) -> dict:
            return {}

        def close(self) -> None:
            Dags.closed += 1

    monkeypatch.setattr(reparse, "airflow", Dags)
    record(ShardStatus(index=5, count=32, source="snapshot", seconds=0.1, budget=15, workflows=1, dags=1, at=utcnow()))
    assert reparse.reconcile() == [] and Dags.closed == 1
    assert reparse.request_files([reparse.ParseTarget("kipu_shard_05.py", None)]) == [] and Dags.closed == 2
