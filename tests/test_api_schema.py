"""Schemathesis against the /kipu OpenAPI document, mounted in Airflow's API server app, with a token of each
role: no 5xx, and every response matches its schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.slow


def test_no_5xx_and_responses_match_the_schema(api: Any, roles: dict) -> None:
    schema = schemathesis.openapi.from_asgi("/kipu/openapi.json", api.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            for role in ("owner", "member", "viewer", "outsider"):
                response = case.call(headers=roles[role])
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        run()
