"""Meta webhooks into /kipu/api/webhooks/{platform}: verification, HMAC signatures checked in constant time,
and runs recorded through the same path as polling (once, whatever repeats)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import WorkflowRun
from sqlalchemy import select

from tests.fakes import meta_webhook
from tests.helpers import demo_doc

API = "/kipu/api/webhooks"
SECRET = "meta-app-secret-for-tests"


@pytest.fixture
def page(api: TestClient, roles: dict, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Facebook Page connection and an active workflow triggered by its webhooks."""
    monkeypatch.setenv("KIPU_FACEBOOK_APP_SECRET", SECRET)
    monkeypatch.setenv("KIPU_FACEBOOK_VERIFY_TOKEN", "verify-me")
    with session_scope() as s:
        upsert_connection(s, find_team(s, "demo"), "facebook", "1234", username="Ana's Kitchen")
    doc = demo_doc(slug="fb_hooks", name="From the Page")
    doc["trigger"] = {"type": "webhook", "connection_id": "facebook:1234", "platform": "facebook"}
    assert api.post("/kipu/api/workflows", json=doc, headers=roles["member"]).status_code == 201
    return "1234"


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return meta_webhook.signed(body, secret)


def payload(post_id: str = "1234_99", message: str = "New reel is up #pasta") -> bytes:
    return meta_webhook.page_post("1234", post_id, message, item="video", created_time=1795000000)


def runs() -> list[WorkflowRun]:
    with session_scope() as s:
        return list(s.scalars(select(WorkflowRun)))


def test_subscription_verification(api: TestClient, page: str) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    ok = api.get(API + "/facebook", params=params)
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = api.get(API + "/facebook", params={**params, "hub.verify_token": "nope"})
    assert bad.status_code == 403


def test_a_signed_post_records_one_webhook_run_and_repeats_do_not(api: TestClient, page: str) -> None:
    body = payload()
    first = api.post(API + "/facebook", content=body, headers=signed(body))
    assert first.status_code == 200 and first.json()["recorded"] == 1
    again = api.post(API + "/facebook", content=body, headers=signed(body))  # Meta retries deliveries
    assert again.json() == {"recorded": 0, "duplicates": 1, "started": 0}
    (run,) = runs()
    assert run.source == "webhook" and run.platform_post_id == "1234_99" and run.dag_id == "kipu.demo.fb_hooks"
    assert run.trigger_data["content_type"] == "video" and run.trigger_data["caption"] == "New reel is up #pasta"


@pytest.mark.parametrize(
    "headers,status",
    [
        ({"Content-Type": "application/json"}, 401),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"}, 403),
        ("wrong-secret", 403),
    ],
)
def test_unsigned_or_wrongly_signed_calls_start_nothing(
    api: TestClient, page: str, headers: object, status: int
) -> None:
    body = payload()
    hdrs = signed(body, "not-the-secret") if headers == "wrong-secret" else headers
    out = api.post(API + "/facebook", content=body, headers=hdrs)  # type: ignore[arg-type]
    assert out.status_code == status and runs() == []


def hook_doc(team: str, slug: str, page: str) -> dict:
    """An active workflow of ``team`` started by ``page``'s webhooks, publishing to the team's outbox."""
    return {
        "name": slug,
        "slug": slug,
        "team": team,
        "status": "active",
        "trigger": {"type": "webhook", "connection_id": f"facebook:{page}", "platform": "facebook"},
        "steps": [{"id": "out", "type": "publish", "connection_id": f"outbox:{team}", "platform": "outbox"}],
    }


def test_a_delivery_reaches_each_team_watching_the_page_and_reads_no_other_teams_workflows(
    api: TestClient, page: str, tmp_path
) -> None:
    from kipu.store.accounts import get_or_create_profile, get_or_create_team
    from kipu.store.workflows import save_workflow
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with session_scope() as s:
        other = find_team(s, "other")
        upsert_connection(s, other, "facebook", "1234", username="Ana's Kitchen")
        upsert_connection(s, other, "outbox", "other", metadata={"path": str(tmp_path / "other")})
        save_workflow(s, hook_doc("other", "their_hooks", "1234"))
        third = get_or_create_team(s, "Third", get_or_create_profile(s, "boss@third.test"), "third")
        upsert_connection(s, third, "facebook", "777", username="Someone else")
        upsert_connection(s, third, "outbox", "third", metadata={"path": str(tmp_path / "third")})
        for i in range(40):
            save_workflow(s, hook_doc("third", f"hooks_{i}", "777"))
    read: list[int] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FROM workflows" in statement:
            read.append(cursor.rowcount)

    event.listen(Engine, "after_cursor_execute", count)
    try:
        body = payload()
        out = api.post(API + "/facebook", content=body, headers=signed(body))
    finally:
        event.remove(Engine, "after_cursor_execute", count)
    assert out.status_code == 200 and out.json()["recorded"] == 2  # one run per team's workflow on the page
    assert sorted(r.dag_id for r in runs()) == ["kipu.demo.fb_hooks", "kipu.other.their_hooks"]
    assert read and sum(read) < 40, read  # the third team's 40 workflows were never read
