"""Notifications on real PostgreSQL against real servers: an SMTP server that parses the mails, and HTTP
receivers standing in for Slack and for a team's webhook endpoint, which check Kipu's signatures on their own."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kipu.notify import channels
from kipu.notify.dispatch import dispatch
from kipu.notify.events import emit
from kipu.store.accounts import find_team, flag_reconnect
from kipu.store.engine import session_scope
from kipu.store.models import Connection, NotificationAttempt, NotificationDelivery, NotificationEvent
from sqlalchemy import select

from tests.fakes.receivers import Receiver, SmtpServer, signature_ok

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def team(pg_demo_team: dict) -> uuid.UUID:
    with session_scope() as s:
        return find_team(s, "demo").id


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_SMTP", server.connection_uri_env())
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def add_channel(team: uuid.UUID, **body: object) -> tuple[uuid.UUID, str | None]:
    with session_scope() as s:
        row, secret = channels.create(s, team, channels.ChannelIn.model_validate({"name": "ch", **body}))
        return row.id, secret


def failures(team: uuid.UUID, n: int, at: datetime) -> None:
    with session_scope() as s:
        for i in range(n):
            data = {"post_id": f"p{i}", "platform": "x", "error": f"Rejected: duplicate {i}", "log_url": "http://l"}
            assert emit(s, team, "post.failed", data, f"post.failed:p{i}:1")
            s.flush()
            # As if emitted at ``at``, a microsecond apart: a digest lists its events oldest first.
            made = s.scalars(select(NotificationEvent).where(NotificationEvent.key == f"post.failed:p{i}:1")).one()
            made.created_at = at + timedelta(microseconds=i)


def deliveries(channel_id: uuid.UUID) -> list[NotificationDelivery]:
    with session_scope() as s:
        return list(s.scalars(select(NotificationDelivery).where(NotificationDelivery.channel_id == channel_id)))


def attempts(delivery_id: uuid.UUID) -> list[NotificationAttempt]:
    with session_scope() as s:
        q = select(NotificationAttempt).where(NotificationAttempt.delivery_id == delivery_id)
        return list(s.scalars(q.order_by(NotificationAttempt.number)))


def test_a_burst_of_200_failures_is_one_digest_per_channel(
    team: uuid.UUID, smtp: SmtpServer, receiver: Receiver
) -> None:
    add_channel(team, kind="email", recipients=["ops@demo.test", "lead@demo.test"], events=["post.failed"])
    add_channel(team, kind="slack", url=receiver.url("/slack"))
    hook_id, secret = add_channel(team, kind="webhook", url=receiver.url("/hook"))
    add_channel(team, kind="webhook", url=receiver.url("/published-only"), events=["post.published"])
    assert secret and secret.startswith("whsec_")
    failures(team, 200, T0)

    early = dispatch(T0 + timedelta(seconds=30), wait=timedelta(seconds=60))
    assert early["batched"] == 0 and early["sent"] == 0 and smtp.messages == [] and receiver.received == []

    done = dispatch(T0 + timedelta(seconds=61), wait=timedelta(seconds=60))
    assert done == {"batched": 3, "sent": 3, "delivered": 3, "pending": 0, "failed": 0}
    (mail,) = smtp.messages
    assert mail["Subject"] == "Kipu: 200 events — 200 post failed"
    assert mail["X-Envelope-To"] == "ops@demo.test, lead@demo.test" and mail["From"] == "kipu@demo.test"
    html = mail.get_body(("html",)).get_content()
    assert html.count("<li>") == 50 and "…and 150 more" in html and "Rejected: duplicate 0" in html
    by_path = {r.path: r for r in receiver.received}
    assert set(by_path) == {"/slack", "/hook"}  # nothing for the channel that wants post.published only
    assert by_path["/slack"].json()["text"].startswith("Kipu: 200 events")
    hook = by_path["/hook"]
    assert signature_ok(secret, hook.headers["kipu-signature"], hook.body)
    assert not signature_ok("whsec_wrong", hook.headers["kipu-signature"], hook.body)
    events = hook.json()["events"]
    assert len(events) == 200 and len({e["id"] for e in events}) == 200
    assert {e["type"] for e in events} == {"post.failed"} and events[0]["data"]["error"] == "Rejected: duplicate 0"
    (delivery,) = deliveries(hook_id)
    assert hook.headers["kipu-delivery"] == str(delivery.id) and delivery.status == "delivered"

    again = dispatch(T0 + timedelta(minutes=5), wait=timedelta(seconds=60))
    assert again["sent"] == 0 and len(smtp.messages) == 1 and len(receiver.received) == 2


def test_a_receiver_down_for_10_minutes_gets_the_delivery_once_after(team: uuid.UUID, receiver: Receiver) -> None:
    hook_id, secret = add_channel(team, kind="webhook", url=receiver.url("/hook"))
    port = receiver.port
    receiver.stop()  # connection refused from now on
    failures(team, 1, T0)
    now = T0 + timedelta(seconds=60)
    while now < T0 + timedelta(minutes=11):
        dispatch(now, wait=timedelta(seconds=60))
        now += timedelta(seconds=30)
    (delivery,) = deliveries(hook_id)
    tries = attempts(delivery.id)
    assert delivery.status == "pending" and not any(a.ok for a in tries)
    assert all("Connect" in (a.error or "") for a in tries)
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(tries)]
    assert gaps == [30, 60, 120, 240][: len(gaps)] and len(tries) == 5  # backoff doubles: 0, 0.5, 1.5, 3.5, 7.5 min

    back = Receiver(port=port).start()
    try:
        while delivery.status == "pending" and now < T0 + timedelta(hours=2):
            dispatch(now, wait=timedelta(seconds=60))
            (delivery,) = deliveries(hook_id)
            now += timedelta(seconds=30)
        assert delivery.status == "delivered"
        assert delivery.delivered_at == T0 + timedelta(minutes=16, seconds=30)  # sixth try, 15.5 min after the first
        (got,) = back.received
        assert signature_ok(secret, got.headers["kipu-signature"], got.body)
        tries = attempts(delivery.id)
        assert [a.ok for a in tries] == [False] * 5 + [True] and tries[-1].status_code == 200
    finally:
        back.stop()


def test_a_rotated_secret_signs_alongside_the_old_one_until_the_grace_ends(team: uuid.UUID, receiver: Receiver) -> None:
    hook_id, old = add_channel(team, kind="webhook", url=receiver.url("/hook"))
    with session_scope() as s:
        row = s.get(channels.NotificationChannel, hook_id)
        new = channels.rotate(row, now=T0, grace=timedelta(hours=24))
    assert new != old
    failures(team, 1, T0)
    dispatch(T0 + timedelta(minutes=1), wait=timedelta(seconds=60))
    late = {"post_id": "late", "platform": "x", "error": "e", "log_url": "http://l"}
    with session_scope() as s:
        emit(s, team, "post.failed", late, "post.failed:late:1")
        s.flush()
        made = s.scalars(select(NotificationEvent).where(NotificationEvent.key == "post.failed:late:1")).one()
        made.created_at = T0 + timedelta(hours=24, minutes=30)  # after the grace, whatever today's date is
    dispatch(T0 + timedelta(hours=25), wait=timedelta(seconds=0))
    during, after = receiver.received
    assert during.headers["kipu-signature"].count("v1=") == 2
    assert signature_ok(new, during.headers["kipu-signature"], during.body)
    assert signature_ok(old, during.headers["kipu-signature"], during.body)
    assert after.headers["kipu-signature"].count("v1=") == 1
    assert signature_ok(new, after.headers["kipu-signature"], after.body)
    assert not signature_ok(old, after.headers["kipu-signature"], after.body)


def test_a_slow_receiver_costs_only_its_own_delivery(
    team: uuid.UUID, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIPU_NOTIFY_TIMEOUT_SECONDS", "1")
    slow = Receiver(delay=6).start()
    try:
        slow_id, _ = add_channel(team, kind="webhook", url=slow.url("/slow"))
        fast_id, _ = add_channel(team, kind="webhook", url=receiver.url("/fast"))
        failures(team, 3, T0)
        started = time.monotonic()
        out = dispatch(T0 + timedelta(minutes=1), wait=timedelta(seconds=60))
        took = time.monotonic() - started
        assert took < 4, f"one pass took {took:.1f} s with a 1 s timeout"
        assert out["delivered"] == 1 and out["pending"] == 1
        assert deliveries(fast_id)[0].status == "delivered"
        (pending,) = deliveries(slow_id)
        assert pending.status == "pending" and pending.last_error == "timed out after 1 s"
    finally:
        slow.stop()


def test_private_addresses_are_refused_when_saved_and_when_sent(
    team: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_EGRESS_ALLOW_PRIVATE")
    for url, rule in [
        ("http://example.com/hook", "must be an https:// URL"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.5/hook", "private network"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ]:
        with pytest.raises(ValueError, match=rule):
            channels.ChannelIn(kind="webhook", name="x", url=url)
    hook_id, _ = add_channel(team, kind="webhook", url="https://localhost/hook")  # a name: checked after DNS
    failures(team, 1, T0)
    dispatch(T0 + timedelta(minutes=1), wait=timedelta(seconds=60))
    (delivery,) = deliveries(hook_id)
    assert delivery.status == "failed" and "loopback" in (delivery.last_error or "")  # refused, not retried


def test_events_are_told_once_per_key(team: uuid.UUID) -> None:
    with session_scope() as s:
        conn = s.scalars(select(Connection).where(Connection.team_id == team, Connection.platform == "outbox")).one()
        flag_reconnect(s, conn, "the refresh token was revoked")
        flag_reconnect(s, conn, "the refresh token was revoked")
    with session_scope() as s:
        (event,) = s.scalars(select(NotificationEvent).where(NotificationEvent.kind == "connection.needs_reconnect"))
        assert event.data["platform"] == "outbox" and event.data["reason"] == "the refresh token was revoked"
        assert s.get(Connection, conn.id).status == "needs_reconnect"
        assert emit(s, team, "post.failed", {}, "same") is True
        assert emit(s, team, "post.failed", {}, "same") is False


def test_disabling_a_channel_stops_its_pending_deliveries(team: uuid.UUID, receiver: Receiver) -> None:
    hook_id, _ = add_channel(team, kind="webhook", url=receiver.url("/hook"))
    failures(team, 1, T0)
    with session_scope() as s:
        from kipu.notify.dispatch import batch

        assert batch(s, T0 + timedelta(minutes=1), timedelta(seconds=60)) == 1
        channels.update(s.get(channels.NotificationChannel, hook_id), channels.ChannelPatch(enabled=False))
    dispatch(T0 + timedelta(minutes=2), wait=timedelta(seconds=60))
    (delivery,) = deliveries(hook_id)
    assert delivery.status == "failed" and delivery.last_error == "the channel was disabled"
    assert receiver.received == []


def test_the_cli_manages_channels_and_shows_the_delivery_log(team: uuid.UUID, receiver: Receiver, pg_url: str) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KIPU_DATABASE_URL": pg_url}

    def kipu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kipu.cli", *args], env=env, capture_output=True, text=True)

    added = kipu("notify", "add", "webhook", receiver.url("/cli"), "--team", "demo", "--events", "post.failed")
    assert added.returncode == 0, added.stderr
    assert "signing secret (shown only now): whsec_" in added.stdout
    bad = kipu("notify", "add", "email", "--to", "nobody", "--team", "demo")
    assert bad.returncode == 1 and "recipients" in bad.stderr and "not an e-mail address" in bad.stderr
    (channel,) = json.loads(kipu("notify", "channels", "--team", "demo", "--json").stdout)
    assert channel["url_hint"] == "http://127.0.0.1/…" and "secret" not in channel
    assert kipu("notify", "test", channel["id"], "--team", "demo").returncode == 0
    dispatch()
    log = kipu("notify", "deliveries", "--team", "demo")
    assert log.returncode == 0 and "delivered" in log.stdout and "200" in log.stdout
    assert kipu("notify", "update", channel["id"], "--team", "demo", "--disable").stdout.strip().endswith("disabled")
    rotated = kipu("notify", "rotate", channel["id"], "--team", "demo", "--grace-hours", "0")
    assert rotated.returncode == 0 and "whsec_" in rotated.stdout
    assert kipu("notify", "remove", channel["id"], "--team", "demo").returncode == 0
    assert json.loads(kipu("notify", "channels", "--team", "demo", "--json").stdout) == []
