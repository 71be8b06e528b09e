"""Class 8: bad input is a 4xx that names the field, never a 5xx. Dates at the edge of their range, deep nesting,
unpaired surrogates, Meta webhooks of unexpected shapes (acknowledged, skipped, logged), and approving through
``kipu api serve``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import httpx
import pytest

from tests.helpers import demo_doc

API = "/kipu/api"
EDGES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


def _no_5xx(out: httpx.Response, field: str) -> None:
    assert out.status_code == 422, (out.status_code, out.text)
    assert any(field in [str(p) for p in e["loc"]] for e in out.json()["detail"]), out.text


@pytest.mark.parametrize("edge", EDGES)
def test_dates_at_the_edge_of_their_range(api, roles: dict, edge: str) -> None:
    viewer = roles["viewer"]
    for name in ("since", "until"):
        _no_5xx(api.get(f"{API}/posts", params={name: edge}, headers=viewer), name)
    wf = api.post(f"{API}/workflows", json=demo_doc(), headers=roles["member"]).json()
    _no_5xx(api.get(f"{API}/workflows/{wf['id']}/runs", params={"before": edge}, headers=viewer), "before")
    cursor = base64.urlsafe_b64encode(f"{edge}|00000000-0000-4000-8000-000000000000".encode()).decode()
    _no_5xx(api.get(f"{API}/posts", params={"cursor": cursor}, headers=viewer), "cursor")
    item = {"platform": "feed", "platform_post_id": "edge", "published_at": edge}
    _no_5xx(api.post(f"{API}/workflows/{wf['id']}/run", json={"item": item}, headers=roles["member"]), "published_at")


def test_a_cursor_without_a_time_zone_is_422(api, roles: dict) -> None:
    naive = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|00000000-0000-4000-8000-000000000000").decode()
    _no_5xx(api.get(f"{API}/posts", params={"cursor": naive}, headers=roles["viewer"]), "cursor")
    assert api.get(f"{API}/posts", params={"cursor": "%%%"}, headers=roles["viewer"]).status_code == 422


def test_json_nested_300_deep_in_platform_options(api, roles: dict) -> None:
    doc = demo_doc()
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    next(s for s in doc["steps"] if s["type"] == "publish")["config"] = {"platform_options": deep}
    out = api.post(f"{API}/workflows", json=doc, headers=roles["member"])
    assert out.status_code == 422 and "nested deeper than the limit" in out.text, out.text


def test_unpaired_surrogates_in_names_are_an_encodable_422(api, roles: dict) -> None:
    body = b'{"name": "rocket \\ud83d"}'
    headers = {**roles["owner"], "Content-Type": "application/json"}
    out = api.patch(f"{API}/teams/demo", content=body, headers=headers)
    assert out.status_code == 422 and out.json()["detail"][0]["loc"] == ["body", "name"]
    folder = b'{"team": "demo", "name": "\\udc00 folder"}'
    out = api.post(
        f"{API}/media/folders", content=folder, headers={**roles["member"], "Content-Type": "application/json"}
    )
    assert out.status_code == 422 and out.json()["detail"][0]["loc"] == ["body", "name"]
    paired = b'{"name": "rocket \\ud83d\\ude80"}'
    assert api.patch(f"{API}/teams/demo", content=paired, headers=headers).json()["name"] == "rocket \U0001f680"


@pytest.fixture
def meta_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KIPU_FACEBOOK_APP_SECRET", "meta-app-secret")
    return "meta-app-secret"


def _signed(api, secret: str, payload: object):  # type: ignore[no-untyped-def]
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return api.post(
        f"{API}/webhooks/facebook",
        content=body,
        headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page", "entry": [1, 2]},
        {"object": "page", "entry": [{"id": "1234", "changes": ["x"]}]},
        {
            "object": "page",
            "entry": [{"id": "1234", "changes": [{"value": {"post_id": "1_2", "created_time": 10**30}}]}],
        },
        {"object": "page", "entry": [{"id": "1234", "changes": [{"value": {"post_id": "p" * 600}}]}]},
        {"object": "page", "entry": [{"id": {"x": 1}, "changes": [{"value": []}]}]},
        {"object": "page", "entry": "nope"},
        [1, 2, 3],
        {"object": "page", "entry": [{"id": "1234", "changes": [{"value": {"post_id": True, "message": {"a": 1}}}]}]},
    ],
)
def test_signed_meta_webhooks_of_unexpected_shapes_are_acknowledged_and_skipped(
    api, meta_secret: str, payload: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        out = _signed(api, meta_secret, payload)
    assert out.status_code == 200, out.text
    assert out.json()["recorded"] == 0


def test_a_skip_is_logged(api, meta_secret: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kipu.platforms.meta.webhooks"):
        _signed(api, meta_secret, {"object": "page", "entry": [1, {"id": "9", "changes": ["x"]}]})
    assert "skipped 2 entries or changes of an unexpected shape" in caplog.text
