"""``/kipu/api/ai`` mounted in Airflow's own API server app: Kipu API tokens, team roles, the AI code path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api_helpers import token_for
from tests.fakes.openai_server import Answer, OpenAIServer


@pytest.fixture
def airflow_api(api: TestClient) -> TestClient:
    return api


def token(who: str, role: str = "") -> dict[str, str]:
    emails = {"admin": "owner@demo.test", "vera": "viewer@demo.test", "stranger": "boss@other.test"}
    return token_for(emails[who])


def test_rewrite_and_hashtags_for_a_team_member(airflow_api: TestClient) -> None:
    body = {"team": "demo", "text": "Sunrise bake 🥐 #bread #fyp", "target_platform": "bluesky", "tone": "casual"}
    out = airflow_api.post("/kipu/api/ai/rewrite", json=body, headers=token("admin"))
    assert out.status_code == 200, out.text
    data = out.json()
    assert data["engine"] == "offline" and "#bread" in data["caption"] and "#fyp" not in data["caption"]
    tags = airflow_api.post(
        "/kipu/api/ai/hashtags",
        json={"team": "demo", "text": "Sourdough sourdough at dawn", "platform": "instagram", "count": 2},
        headers=token("admin"),
    )
    assert tags.status_code == 200 and tags.json() == {
        "hashtags": ["sourdough", "dawn"],
        "engine": "offline",
        "fallback": None,
    }


def test_the_api_uses_the_kipu_openai_connection(airflow_api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    with OpenAIServer() as fake:
        conn = {"conn_type": "kipu_openai", "password": "sk-test-API-KEY", "host": fake.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_OPENAI", json.dumps(conn))
        fake.then(Answer(caption="A calm sunrise loaf", hashtags=["bread"]))
        out = airflow_api.post(
            "/kipu/api/ai/rewrite",
            json={"team": "demo", "text": "Sunrise bake", "target_platform": "x"},
            headers=token("admin"),
        )
    assert out.status_code == 200, out.text
    assert out.json()["engine"] == "openai" and out.json()["caption"] == "A calm sunrise loaf\n\n#bread"
    assert "sk-test-API-KEY" not in out.text


def test_the_ai_cache_is_per_team(airflow_api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team repeating a rewrite is answered from the cache; another team sending the same text is not: a shared
    entry would tell it what this team rewrote, and give it this team's paid output."""
    import json
    import uuid

    body = {"text": f"Secret launch {uuid.uuid4().hex[:8]}: Model Z ships 3 March", "target_platform": "x"}
    with OpenAIServer() as fake:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KIPU_OPENAI",
            json.dumps({"conn_type": "kipu_openai", "password": "sk-test", "host": fake.base_url}),
        )
        fake.then(Answer(caption="Demo's own rewrite", hashtags=["launch"]))
        fake.then(Answer(caption="Other's own rewrite", hashtags=["launch"]))
        first = airflow_api.post("/kipu/api/ai/rewrite", json={"team": "demo", **body}, headers=token("admin"))
        again = airflow_api.post("/kipu/api/ai/rewrite", json={"team": "demo", **body}, headers=token("admin"))
        theirs = airflow_api.post("/kipu/api/ai/rewrite", json={"team": "other", **body}, headers=token("stranger"))
    assert [r.status_code for r in (first, again, theirs)] == [200, 200, 200], theirs.text
    assert [r.json()["engine"] for r in (first, again, theirs)] == ["openai", "cache", "openai"]
    assert "Demo's own rewrite" in again.json()["caption"]
    assert "Demo's" not in theirs.json()["caption"] and "Other's own rewrite" in theirs.json()["caption"]


@pytest.mark.parametrize(
    "headers,team,status",
    [
        ({}, "demo", 401),
        ({"Authorization": "Bearer kipu_not-a-token"}, "demo", 401),
        ("stranger", "demo", 404),  # someone with no role in the team
        ("admin", "other", 404),  # a team the caller is not in looks like no team at all
        ("admin", "nope", 404),
    ],
)
def test_callers_outside_the_team_are_refused(airflow_api: TestClient, headers: object, team: str, status: int) -> None:
    hdrs = token(headers) if isinstance(headers, str) else headers
    out = airflow_api.post(
        "/kipu/api/ai/rewrite", json={"team": team, "text": "hi", "target_platform": "x"}, headers=hdrs
    )
    assert out.status_code == status, out.text


def test_viewers_may_not_spend_the_ai_budget(airflow_api: TestClient) -> None:
    out = airflow_api.post(
        "/kipu/api/ai/rewrite", json={"team": "demo", "text": "hi", "target_platform": "x"}, headers=token("vera")
    )
    assert out.status_code == 403 and out.json()["detail"] == "this needs the member role in the team; you are viewer"


def test_bad_bodies_name_the_field(airflow_api: TestClient) -> None:
    out = airflow_api.post(
        "/kipu/api/ai/rewrite",
        json={"team": "demo", "text": "hi", "target_platform": "myspace", "max_length": 0},
        headers=token("admin"),
    )
    assert out.status_code == 422
    fields = {tuple(e["loc"]) for e in out.json()["detail"]}
    assert ("body", "target_platform") in fields and ("body", "max_length") in fields
