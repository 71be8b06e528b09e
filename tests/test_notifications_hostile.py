"""Notifications against hostile receivers and hostile neighbours: a receiver that dribbles its answer (body or
headers) holds up no one, one team's queue never starves another's, tests are one at a time per channel, a key
rotation keeps channels readable, and an event's line breaks never cost an e-mail."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kipu.notify import channels
from kipu.notify.dispatch import dispatch
from kipu.notify.events import emit
from kipu.store.accounts import find_team
from kipu.store.engine import session_scope
from kipu.store.models import NotificationDelivery
from sqlalchemy import select

from tests.fakes.dribbler import Dribbler
from tests.fakes.receivers import Receiver, SmtpServer

API = "/kipu/api/teams"


def _team(slug: str) -> uuid.UUID:
    with session_scope() as s:
        return find_team(s, slug).id


def _channel(team: uuid.UUID, **body: object) -> uuid.UUID:
    with session_scope() as s:
        row, _ = channels.create(s, team, channels.ChannelIn.model_validate({"name": "ch", **body}))
        return row.id


def _event(team: uuid.UUID, key: str, **data: object) -> None:
    with session_scope() as s:
        assert emit(s, team, "post.failed", {"platform": "x", "error": "boom", **data}, key)


def _status(channel_id: uuid.UUID) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(NotificationDelivery.status).where(NotificationDelivery.channel_id == channel_id)))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_dribbling_receiver_of_one_team_holds_up_no_one(
    pg_demo_team: dict, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, headers: bool
) -> None:
    """KIPU_NOTIFY_TIMEOUT_SECONDS bounds each read; a receiver answering a byte at a time passed every one, and
    the pass recorded nothing until every send was done (kipu_notify's execution_timeout then killed it, and every
    team's deliveries were sent again after the lease, forever)."""
    monkeypatch.setenv("KIPU_NOTIFY_TIMEOUT_SECONDS", "1")
    hostile = Dribbler("headers" if headers else "body", seconds=30, every=0.3)
    done = threading.Event()
    try:
        demo, other = _team("demo"), _team("other")
        victim = _channel(demo, kind="webhook", url=receiver.url("/demo"))
        slow = _channel(other, kind="webhook", url=hostile.url)
        _event(demo, "post.failed:demo:1")
        _event(other, "post.failed:other:1")
        started = time.monotonic()
        threading.Thread(target=lambda: (dispatch(wait=timedelta(0)), done.set()), daemon=True).start()
        assert done.wait(8), f"the pass still runs after 8 s; team demo's delivery is {_status(victim)}"
        assert time.monotonic() - started < 6  # the deadline is 3 x the timeout
        assert _status(victim) == ["delivered"]
        if headers:  # no status came back in time: a retry later, and the log says why
            with session_scope() as s:
                d = s.scalar(select(NotificationDelivery).where(NotificationDelivery.channel_id == slow))
                assert d.status == "pending" and d.last_error == "no whole answer within 3 s"
        else:  # the status came at once: delivered, and its endless body was never read
            assert _status(slow) == ["delivered"]
    finally:
        hostile.stop()
        done.wait(40)


def test_tests_are_one_at_a_time_per_channel(api: Any, roles: dict) -> None:
    from tests.api_helpers import token_for

    boss = token_for("boss@other.test")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    made = api.post(
        f"{API}/other/notifications/channels", json={"kind": "webhook", "name": "x", "url": dead}, headers=boss
    )
    assert made.status_code == 201, made.text
    codes = [
        api.post(f"{API}/other/notifications/channels/{made.json()['id']}/test", headers=boss).status_code
        for _ in range(5)
    ]
    assert codes == [202, 409, 409, 409, 409]
    again = api.post(f"{API}/other/notifications/channels/{made.json()['id']}/test", headers=boss)
    assert "not delivered yet" in again.json()["detail"]


def test_one_teams_backlog_does_not_starve_another_teams_notifications(pg_demo_team: dict, receiver: Receiver) -> None:
    """A pass takes the teams in turn: 150 due deliveries of team 'other' (older than demo's) took the whole pass
    before; a team alone still gets the whole pass."""
    from kipu.notify.dispatch import CLAIM_LIMIT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    other = _team("other")
    backlog = _channel(other, kind="webhook", url=dead)
    old = datetime.now(UTC) - timedelta(hours=1)
    with session_scope() as s:
        for _ in range(150):
            s.add(
                NotificationDelivery(
                    id=uuid.uuid4(),
                    team_id=other,
                    channel_id=backlog,
                    event_ids=[],
                    status="pending",
                    attempts=0,
                    next_attempt_at=old,
                    created_at=old,
                )
            )
    victim = _channel(_team("demo"), kind="webhook", url=receiver.url("/demo"))
    _event(_team("demo"), "post.failed:demo:1")
    out = dispatch(wait=timedelta(0))
    assert _status(victim) == ["delivered"]
    assert out["sent"] == CLAIM_LIMIT


def test_a_single_event_whose_text_has_a_header_like_line_still_reaches_email(
    pg_demo_team: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-event digest puts the event's sentence into the Subject as is. A platform error (or reason) with a
    line break followed by ``word:`` makes the MIME build raise, so the e-mail is retried 12 times and lost."""
    with SmtpServer() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_SMTP", smtp.connection_uri_env())
        demo = _team("demo")
        mail = _channel(demo, kind="email", recipients=["ops@demo.test"])
        _event(demo, "post.failed:demo:nl", error="HTTP 400 from the platform\nerror: media too large")
        out = dispatch(datetime.now(UTC) + timedelta(seconds=1), wait=timedelta(0))
        assert _status(mail) == ["delivered"] and len(smtp.messages) == 1, (out, _status(mail))
        assert "\n" not in smtp.messages[0]["Subject"]


def test_notification_urls_and_secrets_survive_the_documented_key_rotation(
    pg_demo_team: dict, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/security.md's rotation: ENCRYPTION_KEY=<new>,<old>; `kipu keys rotate`; ENCRYPTION_KEY=<new>.
    ``rotate_tokens`` re-encrypts connections and workflow webhook secrets but not notification channels' URLs and
    signing secrets, so after step 3 ``claim`` raises TokenDecryptError and every pass fails, for every team."""
    import os

    from cryptography.fernet import Fernet
    from kipu.store import crypto
    from kipu.store.accounts import rotate_tokens

    channel = _channel(_team("demo"), kind="webhook", url=receiver.url("/demo"))
    old, new = os.environ["ENCRYPTION_KEY"], Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", f"{new},{old}")
    crypto.get_cipher.cache_clear()
    with session_scope() as s:
        rotate_tokens(s)
    monkeypatch.setenv("ENCRYPTION_KEY", new)
    crypto.get_cipher.cache_clear()
    try:
        _event(_team("demo"), "post.failed:demo:1")
        try:
            dispatch(wait=timedelta(0))
        except crypto.TokenDecryptError as exc:
            pytest.fail(f"the pass failed after a documented rotation: {exc}")
        assert _status(channel) == ["delivered"]
    finally:
        monkeypatch.setenv("ENCRYPTION_KEY", old)
        crypto.get_cipher.cache_clear()
