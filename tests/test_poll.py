"""The poll engine on real PostgreSQL against a fake content host: due selection, exactly-once detection,
trigger filters, failures that cost only their own source, pause and resume, and the reconciler."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kipu.hooks.http import Limits
from kipu.ingest import enter
from kipu.poll.cursor import Cursor, select_new
from kipu.poll.due import due_sources, is_due
from kipu.poll.engine import CycleReport, run_cycle
from kipu.poll.start import StartRefused, start_pending
from kipu.specs.items import ContentItem
from kipu.specs.triggers import PollTrigger
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import Connection, PollCursor, Workflow, WorkflowRun
from kipu.store.workflows import save_workflow, set_status
from sqlalchemy import select

from tests.fakes.platform_server import PlatformServer
from tests.helpers import demo_doc

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def pending_starts(trigger: Any = None) -> list[dict[str, Any]]:
    """What the reconciler starts now, through a trigger that records each start (``trigger`` may refuse some)."""
    started: list[dict[str, Any]] = []

    def record(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        if trigger is not None:
            trigger(dag_id, run_id, conf)
        started.append({"trigger_dag_id": dag_id, "trigger_run_id": run_id, "conf": conf})
        return True

    start_pending(record)
    return started


# -- the cursor ----------------------------------------------------------------------------------------------
def item(post_id: str, minutes_ago: float | None = 0, caption: str = "") -> ContentItem:
    when = None if minutes_ago is None else NOW - timedelta(minutes=minutes_ago)
    return ContentItem(platform="feed", platform_post_id=post_id, caption=caption, published_at=when)


def test_the_first_poll_replays_no_history() -> None:
    new, cursor = select_new([item("a", 60), item("b", 30)], Cursor(), NOW)
    assert new == [] and cursor == Cursor("b", NOW, NOW)


def test_backfill_last_n_is_opt_in() -> None:
    new, _ = select_new([item("a", 60), item("b", 30), item("c", 10)], Cursor(), NOW, "last_n", 2)
    assert [i.platform_post_id for i in new] == ["b", "c"]


def test_items_after_the_cursor_are_new_and_old_edited_ones_are_not() -> None:
    since = NOW - timedelta(minutes=20)
    cursor = Cursor("b", since, since)
    # 'a' was published before polling began and has just been edited, so the host lists it last.
    items = [item("b", 25), item("c", 5), item("a", 90, caption="edited")]
    new, nxt = select_new(items, cursor, NOW)
    assert [i.platform_post_id for i in new] == ["c"]
    assert nxt.last_post_id == "a" and nxt.polling_since == since and nxt.last_checked_at == NOW


def test_a_cursor_that_rolled_off_falls_back_to_dates() -> None:
    since = NOW - timedelta(minutes=20)
    new, _ = select_new([item("x", 60), item("y", 10), item("z", None)], Cursor("gone", since, since), NOW)
    assert [i.platform_post_id for i in new] == ["y"]


def test_a_one_minute_source_is_polled_every_cycle() -> None:
    trig = PollTrigger(connection_id="feed:x", platform="feed", poll_interval_minutes=1)
    for i in range(50):  # kipu_poll starts about a minute after the last cycle, give or take a few seconds
        assert is_due(f"w{i}", trig, NOW, NOW + timedelta(seconds=56))


def test_due_after_the_interval_with_jitter() -> None:
    trig = PollTrigger(connection_id="feed:x", platform="feed", poll_interval_minutes=10)
    # 9 to 11 minutes, less half of kipu_poll's 1-minute cycle: due at the cycle nearest to the interval.
    assert not is_due("w1", trig, NOW, NOW + timedelta(minutes=8, seconds=29))
    assert is_due("w1", trig, NOW, NOW + timedelta(minutes=11))
    spread = {round(is_due(f"w{i}", trig, NOW, NOW + timedelta(minutes=10)), 0) for i in range(50)}
    assert spread == {0, 1}, "jitter spreads sources around the interval"


# -- the engine against a fake host ----------------------------------------------------------------------------
@pytest.fixture
def host() -> Iterator[PlatformServer]:
    with PlatformServer() as server:
        yield server


@pytest.fixture
def team(pg_demo_team: dict) -> dict:
    return pg_demo_team


def watch(host: PlatformServer, name: str, slug: str | None = None, **trigger: Any) -> str:
    """A stored, active workflow polling fake source ``name``; returns its id."""
    with session_scope() as s:
        upsert_connection(s, find_team(s, "demo"), "feed", name, metadata={"url": host.feed_url(name)})
        doc = demo_doc(slug=slug or f"watch_{name}", name=f"Watch {slug or name}")
        doc["trigger"] = {"type": "poll", "connection_id": f"feed:{name}", "platform": "feed", **trigger}
        return str(save_workflow(s, doc).id)


def cycle(**kwargs: Any) -> CycleReport:
    with session_scope() as s:
        sources = due_sources(s, datetime.now(UTC))
    return asyncio.run(run_cycle(sources, source_timeout=kwargs.pop("source_timeout", 5.0), **kwargs))


def runs(workflow_id: str) -> list[WorkflowRun]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(WorkflowRun).where(WorkflowRun.workflow_id == uuid.UUID(workflow_id)).order_by(WorkflowRun.id)
            )
        )


def make_due(*workflow_ids: str) -> None:
    """As if the poll interval had passed."""
    with session_scope() as s:
        for wf_id in workflow_ids:
            cursor = s.get(PollCursor, uuid.UUID(wf_id))
            cursor.last_checked_at = cursor.last_checked_at - timedelta(days=1)


def last_checked(session, wf_id: str) -> datetime:  # type: ignore[no-untyped-def]
    """Where the workflow's cursor says it was last polled (its own table, apart from the configuration)."""
    return session.get(PollCursor, uuid.UUID(wf_id)).last_checked_at


def test_new_posts_become_one_pending_run_each_exactly_once(team: dict, host: PlatformServer) -> None:
    src = host.source("ana")
    src.add("old-1", minutes_ago=60)
    wf = watch(host, "ana")
    first = cycle()
    assert first.sources == 1 and first.new_runs == 0 and runs(wf) == []  # no history replay
    src.add("new-1", "fresh #pasta")
    src.add("new-2", "another")
    make_due(wf)
    report = cycle()
    assert report.new_runs == 2 and report.failed == 0
    rows = runs(wf)
    assert sorted(r.platform_post_id for r in rows) == ["new-1", "new-2"]
    assert all(r.status == "pending" and r.source == "poll" and r.dag_id == "kipu.demo.watch_ana" for r in rows)
    assert {r.trigger_data["caption"] for r in rows} == {"fresh #pasta", "another"}
    # The host repeats the same posts, and one of them is edited: nothing new.
    src.posts[-1]["content_text"] = "another, edited"
    make_due(wf)
    again = cycle()
    assert again.fetched == 1 and again.new_runs == 0 and len(runs(wf)) == 2


def test_one_fetch_serves_every_workflow_watching_the_account(team: dict, host: PlatformServer) -> None:
    a = watch(host, "shared", slug="first")
    b = watch(host, "shared", slug="second")
    cycle()
    host.source("shared").add("p1")
    make_due(a, b)
    hits = host.source("shared").hits
    report = cycle()
    assert report.sources == 1 and host.source("shared").hits == hits + 1
    assert report.new_runs == 2 and len(runs(a)) == len(runs(b)) == 1


def test_trigger_filters_store_skipped_rows_with_the_reason(team: dict, host: PlatformServer) -> None:
    wf = watch(host, "cafe", filters={"hashtags_include": ["#Café"], "keywords_exclude": ["sponsored"]})
    cycle()
    src = host.source("cafe")
    src.add("p-match", "Morning at the #café")
    src.add("p-nomatch", "no tags here")
    src.add("p-ad", "sponsored #CAFÉ")
    make_due(wf)
    report = cycle()
    assert report.new_runs == 1 and report.skipped_runs == 2
    by_id = {r.platform_post_id: r for r in runs(wf)}
    assert by_id["p-match"].status == "pending"
    assert by_id["p-nomatch"].status == "skipped" and "hashtag" in by_id["p-nomatch"].error_message
    assert by_id["p-ad"].status == "skipped" and "sponsored" in by_id["p-ad"].error_message
    assert pending_starts() == [
        {
            "trigger_dag_id": "kipu.demo.watch_cafe",
            "trigger_run_id": f"kipu__{by_id['p-match'].id}",
            "conf": {"workflow_run_id": str(by_id["p-match"].id)},
        }
    ]


def test_failing_and_slow_sources_cost_only_themselves(team: dict, host: PlatformServer) -> None:
    names = ["good", "limited", "broken", "garbled", "stuck"]
    ids = {n: watch(host, n) for n in names}
    cycle()
    for n in names:
        host.source(n).add(f"{n}-1")
    host.source("limited").mode, host.source("limited").retry_after = "429", "300"
    host.source("broken").mode = "500"
    host.source("garbled").mode = "malformed"
    host.source("stuck").mode = "slow"
    make_due(*ids.values())
    started = time.monotonic()
    report = cycle(source_timeout=2.0)
    assert time.monotonic() - started < 8, "a stuck source must not hold the cycle beyond its own timeout"
    assert report.fetched == 1 and report.failed == 4 and report.rate_limited == 1 and report.new_runs == 1
    assert [r.platform_post_id for r in runs(ids["good"])] == ["good-1"]
    with session_scope() as s:
        conns = {c.platform_user_id: c for c in s.scalars(select(Connection).where(Connection.platform == "feed"))}
        assert conns["good"].status == "healthy" and conns["good"].last_error is None
        limited = conns["limited"]
        assert limited.status == "rate_limited" and "429" in limited.last_error
        assert timedelta(seconds=290) < limited.poll_backoff_until - limited.last_checked_at <= timedelta(seconds=300)
        assert conns["broken"].status == "error" and "500" in conns["broken"].last_error
        assert "cannot be parsed" in conns["garbled"].last_error or "JSON" in conns["garbled"].last_error
        assert "no answer within 2s" in conns["stuck"].last_error
        # The failed sources kept their cursors: nothing they had is lost.
        for n in ("broken", "garbled", "stuck"):
            assert last_checked(s, ids[n]) < datetime.now(UTC) - timedelta(hours=1)
        # Retry-After is honoured: the limited account is not polled again before it.
        due = {src.connection_id for src in due_sources(s, datetime.now(UTC) + timedelta(days=2))}
        assert str(limited.id) in due
        assert str(limited.id) not in {x.connection_id for x in due_sources(s, datetime.now(UTC))}
    host.source("broken").mode = "ok"
    with session_scope() as s:  # once its back-off has passed, the broken source is polled again
        s.get(Connection, conns["broken"].id).poll_backoff_until = datetime.now(UTC) - timedelta(seconds=1)
    cycle(source_timeout=2.0)
    assert [r.platform_post_id for r in runs(ids["broken"])] == ["broken-1"]


def test_a_crash_before_the_commit_duplicates_nothing(
    team: dict, host: PlatformServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kipu.poll.engine as engine

    wf = watch(host, "crashy")
    cycle()
    host.source("crashy").add("c-1")
    make_due(wf)
    real = engine.record_batch

    def dies_after_writing(session, batch, now):  # type: ignore[no-untyped-def]
        real(session, batch, now)
        raise RuntimeError("worker killed before commit")

    monkeypatch.setattr(engine, "record_batch", dies_after_writing)
    crashed = cycle()
    assert crashed.errors.get("write_failed") == 1 and runs(wf) == []
    with session_scope() as s:  # the cursor did not move either, so the item is fetched again
        checked = last_checked(s, wf)
        assert checked < datetime.now(UTC) - timedelta(hours=1)
    monkeypatch.setattr(engine, "record_batch", real)
    recovered = cycle()
    assert recovered.new_runs == 1 and [r.platform_post_id for r in runs(wf)] == ["c-1"]
    make_due(wf)
    assert cycle().new_runs == 0 and len(runs(wf)) == 1


def test_a_crash_between_record_and_start_loses_nothing(team: dict, host: PlatformServer) -> None:
    wf = watch(host, "lost")
    cycle()
    host.source("lost").add("l-1")
    make_due(wf)
    assert cycle().new_runs == 1
    # The cycle recorded the item; the process died before any DAG run was started. The reconciler finds it.
    (claimed,) = pending_starts()
    (run,) = runs(wf)
    assert claimed["trigger_run_id"] == f"kipu__{run.id}" and run.dag_run_id == claimed["trigger_run_id"]
    assert pending_starts() == [], "a run asked for moments ago is not asked for again"
    with session_scope() as s:  # the start was lost too: after the grace period it is asked for again
        r = s.get(WorkflowRun, run.id)
        r.start_requested_at = datetime.now(UTC) - timedelta(minutes=11)
    assert [c["trigger_run_id"] for c in pending_starts()] == [claimed["trigger_run_id"]]


def two_recorded(host: PlatformServer, name: str) -> str:
    """A watched source with two new posts, recorded by a cycle and not started yet."""
    wf = watch(host, name)
    cycle()
    host.source(name).add(f"{name}-1")
    host.source(name).add(f"{name}-2")
    make_due(wf)
    assert cycle().new_runs == 2
    return wf


def test_a_start_that_fails_leaves_its_batch_to_the_next_attempt(team: dict, host: PlatformServer) -> None:
    """The runs of a batch are marked as asked for in the transaction that starts them: an Airflow that cannot be
    reached (a database outage under the API server) leaves every run of the batch to the retry, at once."""
    wf = two_recorded(host, "outage")
    calls = []

    def unreachable(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        calls.append(run_id)
        if len(calls) == 2:
            raise RuntimeError("API server answered 500")
        return True

    with pytest.raises(RuntimeError):
        start_pending(unreachable)
    assert all(r.start_requested_at is None for r in runs(wf)), "nothing is marked unless its batch committed"
    # The retry starts both: the first one again, which Airflow answers as already existing (a no-op).
    assert sorted(c["trigger_run_id"] for c in pending_starts()) == sorted(f"kipu__{r.id}" for r in runs(wf))
    assert pending_starts() == []


def test_a_run_airflow_refuses_does_not_hold_up_the_others(team: dict, host: PlatformServer) -> None:
    wf = two_recorded(host, "refused")
    first = min(runs(wf), key=lambda r: r.started_at)

    def refuse_first(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        if run_id == f"kipu__{first.id}":
            raise StartRefused("HTTP 404: DAG not found")
        return True

    counts = start_pending(refuse_first)
    assert counts == {"started": 1, "existing": 0, "refused": 1}
    assert pending_starts() == [], "the refused run is not asked for again within the same cycle"
    # Its DAG was probably not parsed yet (a workflow saved just before its first items): the next cycle asks again.
    next_cycle = datetime.now(UTC) + timedelta(seconds=61)
    assert start_pending(refuse_first, now=next_cycle) == {"started": 0, "existing": 0, "refused": 1}


def test_an_old_run_airflow_refuses_waits_the_whole_grace(team: dict, host: PlatformServer) -> None:
    two_recorded(host, "gone")

    def refuse(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        raise StartRefused("HTTP 404: DAG not found")

    later = datetime.now(UTC) + timedelta(minutes=20)  # recorded 20 minutes before: its DAG is not coming
    assert start_pending(refuse, now=later)["refused"] == 2
    assert start_pending(refuse, now=later + timedelta(seconds=61))["refused"] == 0
    assert start_pending(refuse, now=later + timedelta(minutes=11))["refused"] == 2


def test_webhook_then_poll_runs_the_post_once(team: dict, host: PlatformServer) -> None:
    wf_id = watch(host, "both")
    cycle()
    post = host.source("both").add("b-1", "seen twice")
    with session_scope() as s:
        wf = s.get(Workflow, uuid.UUID(wf_id))
        (hooked,) = enter(s, wf, [ContentItem(platform="feed", platform_post_id="b-1", caption=post["content_text"])])
        assert hooked.created
    make_due(wf_id)
    assert cycle().new_runs == 0
    (row,) = runs(wf_id)
    assert row.source == "webhook" or row.source == "manual"


def test_pause_stops_polling_and_resume_continues_from_the_cursor(team: dict, host: PlatformServer) -> None:
    wf_id = watch(host, "pausy")
    cycle()
    with session_scope() as s:
        set_status(s.get(Workflow, uuid.UUID(wf_id)), "paused")
    host.source("pausy").add("while-paused")
    make_due(wf_id)
    hits = host.source("pausy").hits
    assert cycle().sources == 0 and host.source("pausy").hits == hits
    with session_scope() as s:
        set_status(s.get(Workflow, uuid.UUID(wf_id)), "active")
    assert cycle().new_runs == 1 and [r.platform_post_id for r in runs(wf_id)] == ["while-paused"]


def test_reactivating_an_inactive_workflow_starts_from_now(team: dict, host: PlatformServer) -> None:
    wf_id = watch(host, "sleepy")
    cycle()
    with session_scope() as s:
        set_status(s.get(Workflow, uuid.UUID(wf_id)), "inactive")
    host.source("sleepy").add("while-off", minutes_ago=1)
    with session_scope() as s:
        set_status(s.get(Workflow, uuid.UUID(wf_id)), "active")
    assert cycle().new_runs == 0 and runs(wf_id) == []
    host.source("sleepy").add("after")
    make_due(wf_id)
    assert cycle().new_runs == 1 and [r.platform_post_id for r in runs(wf_id)] == ["after"]


@pytest.mark.parametrize(
    "limits,peak",
    [(Limits(global_concurrency=2), 2), (Limits(per_platform={"feed": 3}), 3), (Limits(global_concurrency=50), 6)],
)
def test_concurrency_is_bounded(team: dict, host: PlatformServer, limits: Limits, peak: int) -> None:
    for i in range(6):
        watch(host, f"slowhost{i}")
        host.source(f"slowhost{i}").delay = 0.3
    report = cycle(limits=limits)
    assert report.fetched == 6 and host.peak_in_flight == peak


def test_a_cycle_starts_in_the_triggerer_and_selects_its_own_sources(team: dict, host: PlatformServer) -> None:
    """``kipu_poll``'s sensor starts in the triggerer (``start_from_trigger``): the scheduler makes the trigger from
    the serialized DAG's ``start_trigger_args``, with no worker slot; the trigger then selects the due sources."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.trigger import Trigger
    from airflow.serialization.decoders import smart_decode_trigger_kwargs
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.triggers.base import TaskSuccessEvent
    from kipu.triggers.poll import KipuPollTrigger

    from tests.conftest import REPO

    wf = watch(host, "fromtrigger")
    with session_scope() as s:
        upsert_connection(s, find_team(s, "demo"), "feed", "fromtrigger", access_token="tok-FEED-SECRET-0077")
    cycle()  # polling begins now
    host.source("fromtrigger").add("ft-1", "first")
    make_due(wf)
    dag = DagBag(dag_folder=str(REPO / "dags" / "kipu_poll.py")).dags["kipu_poll"]
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("poll_sources")
    assert task.start_from_trigger is True  # what the scheduler reads
    args = task.start_trigger_args
    assert args.trigger_cls == "kipu.triggers.poll.KipuPollTrigger" and args.next_method == "execute_complete"
    assert args.timeout.total_seconds() == 240  # a cycle whose end was lost holds kipu_poll at most 4 minutes
    assert dag.dagrun_timeout.total_seconds() == 300  # and whatever else an outage loses, a run ends in 5
    # The trigger row's kwargs, as the scheduler stores them and the triggerer reads them back.
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(args.trigger_kwargs))
    kwargs = {k: smart_decode_trigger_kwargs(v) for k, v in stored.items()}
    assert kwargs["sources"] is None and kwargs["limits"]["per_token"] == 2
    assert "tok-FEED-SECRET" not in repr(DagSerialization.to_dict(dag))

    async def first_event(trigger: KipuPollTrigger) -> object:
        async for event in trigger.run():
            return event
        raise AssertionError("the trigger yielded nothing")

    event = asyncio.run(first_event(KipuPollTrigger(**kwargs)))
    assert isinstance(event, TaskSuccessEvent)
    report = event.xcoms["return_value"]
    assert report["sources"] == 1 and report["new_runs"] == 1
    assert [r.platform_post_id for r in runs(wf)] == ["ft-1"]
    # Nothing due: the cycle ends at once, with an empty report.
    event = asyncio.run(first_event(KipuPollTrigger(**kwargs)))
    assert isinstance(event, TaskSuccessEvent) and event.xcoms["return_value"]["sources"] == 0


# -- through real Airflow ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kipu_poll_through_real_airflow_starts_one_dag_run_per_item(
    team: dict, host: PlatformServer, airflow_db: object
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from tests.conftest import REPO

    wf = watch(host, "air", slug="air")
    cycle()  # polling begins now
    host.source("air").add("air-1", "first")
    host.source("air").add("air-2", "second")
    make_due(wf)
    poll = DagBag(dag_folder=str(REPO / "dags" / "kipu_poll.py")).dags["kipu_poll"]
    assert poll.test().state == "success"
    recorded = {r.platform_post_id: r for r in runs(wf)}
    assert set(recorded) == {"air-1", "air-2"}
    with create_session() as session:
        started = {r.run_id: r.conf for r in session.scalars(select(DagRun).where(DagRun.dag_id == "kipu.demo.air"))}
    assert started == {f"kipu__{r.id}": {"workflow_run_id": str(r.id)} for r in recorded.values()}
    assert all(r.dag_run_id == f"kipu__{r.id}" and r.start_requested_at for r in recorded.values())
    # A second cycle finds nothing new and starts nothing twice.
    make_due(wf)
    assert poll.test().state == "success"
    with create_session() as session:
        assert len(session.scalars(select(DagRun).where(DagRun.dag_id == "kipu.demo.air")).all()) == 2


def test_the_trigger_carries_ids_only_never_tokens(team: dict, host: PlatformServer) -> None:
    from kipu.triggers.poll import KipuPollTrigger

    watch(host, "secretive")
    with session_scope() as s:
        upsert_connection(s, find_team(s, "demo"), "feed", "secretive", access_token="tok-FEED-SECRET-0042")
        sources = due_sources(s, datetime.now(UTC))
    _, kwargs = KipuPollTrigger([src.model_dump() for src in sources]).serialize()
    assert "tok-FEED-SECRET-0042" not in repr(kwargs)
    assert "gAAAA" not in repr(kwargs), "not even the ciphertext travels"
    report = cycle()
    assert "tok-FEED-SECRET-0042" not in report.model_dump_json()
