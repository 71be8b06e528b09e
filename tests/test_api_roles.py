"""Every role against every route class: viewer reads; member creates, runs and uploads; admin manages connections
and members; owner manages the team and its plan. Below the class's role is 403; at or above it is never 403."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api_helpers import token_for
from tests.helpers import demo_doc

API = "/kipu/api"
ORDER = ("viewer", "member", "admin", "owner")
NO_ID = "00000000-0000-4000-8000-000000000000"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

Call = Callable[[TestClient, dict[str, str], str], Any]

# (route class, the least role it needs, a representative call per class)
ROUTES: list[tuple[str, str, Call]] = [
    ("read teams", "viewer", lambda api, h, r: api.get(f"{API}/teams/demo/members", headers=h)),
    ("read workflows", "viewer", lambda api, h, r: api.get(f"{API}/workflows?team=demo", headers=h)),
    ("read posts", "viewer", lambda api, h, r: api.get(f"{API}/posts?team=demo", headers=h)),
    ("read connections", "viewer", lambda api, h, r: api.get(f"{API}/connections?team=demo", headers=h)),
    ("read media", "viewer", lambda api, h, r: api.get(f"{API}/media?team=demo", headers=h)),
    ("read media folders", "viewer", lambda api, h, r: api.get(f"{API}/media/folders?team=demo", headers=h)),
    (
        "read notification channels",
        "viewer",
        lambda api, h, r: api.get(f"{API}/teams/demo/notifications/channels", headers=h),
    ),
    (
        "create workflows",
        "member",
        lambda api, h, r: api.post(f"{API}/workflows", json=demo_doc(slug=f"roles_{r}"), headers=h),
    ),
    (
        "upload media",
        "member",
        lambda api, h, r: api.post(
            f"{API}/media/upload?team=demo", files={"file": (f"{r}.png", PNG, "image/png")}, headers=h
        ),
    ),
    (
        "spend AI",
        "member",
        lambda api, h, r: api.post(
            f"{API}/ai/hashtags", json={"team": "demo", "text": "Bread at dawn", "platform": "x"}, headers=h
        ),
    ),
    (
        "manage notifications",
        "admin",
        lambda api, h, r: api.post(
            f"{API}/teams/demo/notifications/channels",
            json={"kind": "email", "name": r, "recipients": [f"{r}@demo.test"]},
            headers=h,
        ),
    ),
    # A channel id no team has: at or above admin the answer is 404, below it 403 (the role is checked first).
    (
        "change a notification channel",
        "admin",
        lambda api, h, r: api.patch(
            f"{API}/teams/demo/notifications/channels/{NO_ID}", json={"enabled": False}, headers=h
        ),
    ),
    (
        "delete a notification channel",
        "admin",
        lambda api, h, r: api.delete(f"{API}/teams/demo/notifications/channels/{NO_ID}", headers=h),
    ),
    (
        "rotate a webhook secret",
        "admin",
        lambda api, h, r: api.post(f"{API}/teams/demo/notifications/channels/{NO_ID}/rotate-secret", headers=h),
    ),
    (
        "send a test notification",
        "admin",
        lambda api, h, r: api.post(f"{API}/teams/demo/notifications/channels/{NO_ID}/test", headers=h),
    ),
    (
        "read the delivery log",
        "admin",
        lambda api, h, r: api.get(f"{API}/teams/demo/notifications/deliveries", headers=h),
    ),
    ("connect accounts", "admin", lambda api, h, r: api.post(f"{API}/connections/oauth/x?team=demo", headers=h)),
    (
        "manage members",
        "admin",
        lambda api, h, r: api.post(
            f"{API}/teams/demo/invitations", json={"email": f"new-{r}@demo.test", "role": "viewer"}, headers=h
        ),
    ),
    ("read plan usage", "viewer", lambda api, h, r: api.get(f"{API}/teams/demo/usage", headers=h)),
    (
        "start a checkout",
        "owner",
        lambda api, h, r: api.post(f"{API}/teams/demo/billing/checkout", json={"plan": "pro"}, headers=h),
    ),
    ("open the billing portal", "owner", lambda api, h, r: api.post(f"{API}/teams/demo/billing/portal", headers=h)),
    (
        "manage team and plan",
        "owner",
        lambda api, h, r: api.patch(f"{API}/teams/demo", json={"plan": "pro"}, headers=h),
    ),
]


@pytest.fixture
def every_role(roles: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    from kipu.store.accounts import add_member, find_team, get_or_create_profile
    from kipu.store.engine import session_scope

    with session_scope() as s:
        add_member(s, find_team(s, "demo"), get_or_create_profile(s, "admin@demo.test"), "admin")
    return {**roles, "admin": token_for("admin@demo.test")}


@pytest.mark.parametrize(("route", "least", "call"), ROUTES, ids=[r[0] for r in ROUTES])
def test_each_role_on_each_route_class(
    api: TestClient, every_role: dict[str, dict[str, str]], route: str, least: str, call: Call
) -> None:
    for role in ORDER:
        resp = call(api, every_role[role], role)
        allowed = ORDER.index(role) >= ORDER.index(least)
        if allowed:
            assert resp.status_code != 403 and resp.status_code < 500, (route, role, resp.status_code, resp.text)
        else:
            assert resp.status_code == 403, (route, role, resp.status_code, resp.text)
    # Someone from another team learns nothing, not even that the team exists: 404.
    outsider = call(api, every_role["outsider"], "outsider")
    assert outsider.status_code == 404, (route, outsider.status_code, outsider.text)
