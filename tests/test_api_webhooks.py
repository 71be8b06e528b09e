"""Meta webhooks into /kipu/api/webhooks/{platform}: verification, HMAC signatures checked in constant time,
and runs recorded through the same path as polling (once, whatever repeats)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from fastapi.testclient import TestClient
from kipu.store.accounts import find_team, upsert_connection
from kipu.store.engine import session_scope
from kipu.store.models import WorkflowRun
from sqlalchemy import select

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
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"}


def payload(post_id: str = "1234_99", message: str = "New reel is up #pasta") -> bytes:
    value = {"item": "video", "verb": "add", "post_id": post_id, "message": message, "created_time": 1795000000}
    entry = {"id": "1234", "time": 1795000000, "changes": [{"field": "feed", "value": value}]}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


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
