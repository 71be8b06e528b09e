"""Schemathesis against the /kipu OpenAPI document, mounted in Airflow's API server app, with a token of each
role: no 5xx, and every response matches its schema, for valid and for invalid input (negative mode reaches date
edges, deep bodies and wrong types). A stateful pass aims every operation at another team's real objects."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import REPO
from tests.helpers import demo_doc

pytestmark = pytest.mark.slow
API = "/kipu/api"


def _operations(api: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/kipu/openapi.json", api.app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize(("mode", "examples"), [(GenerationMode.POSITIVE, 10), (GenerationMode.NEGATIVE, 6)])
def test_no_5xx_and_responses_match_the_schema(api: Any, roles: dict, mode: GenerationMode, examples: int) -> None:
    operations = _operations(api)
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            for role in ("owner", "member", "viewer", "outsider"):
                response = case.call(headers=roles[role])
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation with no input has no invalid input either
            assert mode is GenerationMode.NEGATIVE


def _team_objects(api: Any, roles: dict) -> dict[str, str]:
    """Real objects of team 'demo', by the path parameter that names each."""
    owner, member = roles["owner"], roles["member"]
    wf = api.post(f"{API}/workflows", json=demo_doc(), headers=member).json()
    png = (REPO / "include/demo/media/sunrise.png").read_bytes()
    media = api.post(
        f"{API}/media/upload", params={"team": "demo"}, files={"file": ("s.png", png, "image/png")}, headers=member
    ).json()
    connection = api.get(f"{API}/connections", headers=owner).json()[0]
    run = api.post(
        f"{API}/workflows/{wf['id']}/run",
        json={"item": {"platform": "feed", "platform_post_id": "stateful-1"}},
        headers=member,
    ).json()
    return {
        "workflow_id": wf["id"],
        "media_id": media["id"],
        "connection_id": connection["id"],
        "team": "demo",
        "dag_id": wf["dag_id"],
        "dag_run_id": f"kipu__{run['workflow_run_id']}",
        "task_id": "team_review",
        "email": "editor@demo.test",
    }


def test_another_teams_ids_reveal_nothing(api: Any, roles: dict) -> None:
    """Every operation that takes an id, aimed at team demo's real objects by the owner of another team: never a
    success, never a 403 (which would say the object exists), never a 5xx, and never demo's data."""
    objects = _team_objects(api, roles)
    # What only team demo knows (the ids are the caller's own input, so an answer may repeat them).
    secrets = {"Demo cross-post", "owner@demo.test", "viewer@demo.test", "sunrise", "s.png"}
    checked = 0
    for operation in _operations(api):
        names = set(re.findall(r"{(\w+)}", operation.path))
        if not names & set(objects) or not names <= set(objects) | {"action", "platform"}:
            continue
        fixed = {n: objects[n] for n in names if n in objects}

        @given(case=operation.as_strategy(path_parameters=fixed))
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call(headers=roles["outsider"])
            assert response.status_code < 500, (case.path, response.text)
            assert response.status_code not in (200, 201, 202, 204, 403, 409), (case.path, response.text)
            assert not any(s in response.text for s in secrets), (case.path, response.text)

        run()
        checked += 1
    assert checked >= 12
