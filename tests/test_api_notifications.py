"""The notifications API through Airflow's API server app: channels per team and role, secrets shown once, a test
send delivered and logged, rotation, and bad input named."""

from __future__ import annotations

from typing import Any

from kipu.notify.dispatch import dispatch

from tests.api_helpers import assert_no_secret, recorded_bodies
from tests.fakes.receivers import Receiver, signature_ok

API = "/kipu/api/teams/demo/notifications"


def test_a_webhook_channel_from_creation_to_a_logged_test_delivery(api: Any, roles: dict) -> None:
    receiver = Receiver().start()
    try:
        created = api.post(
            f"{API}/channels",
            json={"kind": "webhook", "name": "ops", "url": receiver.url("/hook?token=abc"), "events": ["post.failed"]},
            headers=roles["owner"],
        )
        assert created.status_code == 201, created.text
        channel = created.json()
        secret = channel["secret"]
        assert secret.startswith("whsec_") and channel["signed"] and channel["events"] == ["post.failed"]
        with recorded_bodies(api) as bodies:
            listed = api.get(f"{API}/channels", headers=roles["viewer"]).json()
            assert [c["id"] for c in listed] == [channel["id"]]
            assert listed[0]["url_hint"] == "http://127.0.0.1/…"
            assert api.get(f"{API}/channels", headers=roles["outsider"]).status_code == 404
            test = api.post(f"{API}/channels/{channel['id']}/test", headers=roles["owner"])
            assert test.status_code == 202 and test.json()["status"] == "pending"
            assert dispatch()["delivered"] == 1
            (log,) = api.get(f"{API}/deliveries", headers=roles["owner"]).json()
            assert log["status"] == "delivered" and log["attempts"][0]["status_code"] == 200
            assert api.get(f"{API}/deliveries", headers=roles["member"]).status_code == 403
        assert_no_secret(bodies, [secret, "token=abc"])
        (got,) = receiver.received
        assert got.path == "/hook?token=abc" and signature_ok(secret, got.headers["kipu-signature"], got.body)
        assert got.json()["events"][0]["type"] == "test"

        rotated = api.post(f"{API}/channels/{channel['id']}/rotate-secret?grace_hours=0", headers=roles["owner"])
        assert rotated.status_code == 200 and rotated.json()["secret"] != secret
        assert rotated.json()["previous_secret_until"] is None
        patched = api.patch(f"{API}/channels/{channel['id']}", json={"enabled": False}, headers=roles["owner"])
        assert patched.status_code == 200 and patched.json()["enabled"] is False
        assert api.delete(f"{API}/channels/{channel['id']}", headers=roles["member"]).status_code == 403
        assert api.delete(f"{API}/channels/{channel['id']}", headers=roles["owner"]).status_code == 204
        assert api.get(f"{API}/channels", headers=roles["owner"]).json() == []
    finally:
        receiver.stop()


def test_bad_channels_get_a_422_naming_the_field(api: Any, roles: dict, monkeypatch: Any) -> None:
    monkeypatch.delenv("KIPU_EGRESS_ALLOW_PRIVATE")
    cases = [
        ({"kind": "webhook", "name": "x", "url": "https://169.254.169.254/"}, "url", "link-local"),
        ({"kind": "webhook", "name": "x", "url": "http://hooks.example.com/"}, "url", "https://"),
        ({"kind": "email", "name": "x", "recipients": ["not-an-address"]}, "recipients", "not an e-mail"),
        ({"kind": "email", "name": "x", "recipients": ["a@b.co"], "events": ["post.exploded"]}, "events", "unknown"),
        ({"kind": "slack", "name": "x"}, "body", "needs a url"),
    ]
    for body, field, words in cases:
        resp = api.post(f"{API}/channels", json=body, headers=roles["owner"])
        assert resp.status_code == 422, resp.text
        (problem,) = resp.json()["detail"]
        assert problem["loc"][-1] == field and words in problem["msg"], problem
    email = api.post(
        f"{API}/channels", json={"kind": "email", "name": "x", "recipients": ["a@b.co"]}, headers=roles["owner"]
    ).json()
    wrong = api.post(f"{API}/channels/{email['id']}/rotate-secret", headers=roles["owner"])
    assert wrong.status_code == 422 and "no signing secret" in wrong.text
