"""Class 7: the body guard cannot be bypassed. Every media type FastAPI reads as JSON (any case, ``+json``
suffixes, a charset, or no Content-Type at all) goes through the same door: NUL and unpaired surrogates are a 422
naming the field, and a body over the limit is 413; nothing is stored. Through a real ``airflow api-server``."""

from __future__ import annotations

import json

import httpx
import pytest
from kipu.store.engine import session_scope
from kipu.store.models import Workflow

from tests.conftest import use_store
from tests.helpers import demo_doc
from tests.tenant.conftest import Server

pytestmark = pytest.mark.slow
SPELLINGS = ["APPLICATION/JSON", "application/vnd.kipu+json", "Application/Json; charset=utf-8", "text/x-json", None]


def _post(server: Server, body: bytes, content_type: str | None) -> httpx.Response:
    headers = {**server.tokens["member"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{server.url}/kipu/api/workflows", content=body, headers=headers, timeout=30)


def _stored(server: Server) -> int:
    use_store(server.store)
    with session_scope() as s:
        return s.query(Workflow).count()


@pytest.mark.parametrize("content_type", SPELLINGS)
def test_nul_and_lone_surrogates_are_422_naming_the_field_whatever_the_type(
    airflow_server: Server, content_type: str | None
) -> None:
    before = _stored(airflow_server)
    nul = json.dumps(demo_doc(description="pasta\x00")).encode()
    out = _post(airflow_server, nul, content_type)
    assert out.status_code == 422, out.text
    assert out.json()["detail"][0]["loc"] == ["body", "description"]
    lone = json.dumps(demo_doc(name="rocket \ud83d")).encode()  # json.dumps writes it as \\ud83d
    out = _post(airflow_server, lone, content_type)
    assert out.status_code == 422 and out.json()["detail"][0]["loc"] == ["body", "name"], out.text
    assert "surrogate" in out.json()["detail"][0]["msg"]
    assert _stored(airflow_server) == before


@pytest.mark.parametrize("content_type", SPELLINGS)
def test_an_oversized_body_is_413_whatever_the_type(airflow_server: Server, content_type: str | None) -> None:
    before = _stored(airflow_server)
    big = json.dumps(demo_doc(slug="big", description="d" * (2 * 1024 * 1024))).encode()
    assert _post(airflow_server, big, content_type).status_code == 413
    assert _stored(airflow_server) == before


def test_a_long_description_under_the_body_limit_names_its_own_limit(airflow_server: Server) -> None:
    out = _post(airflow_server, json.dumps(demo_doc(description="d" * 5000)).encode(), "application/vnd.kipu+json")
    assert out.status_code == 422 and "description" in out.text and "2000" in out.text


def test_a_well_formed_body_in_any_json_spelling_still_works(airflow_server: Server) -> None:
    out = _post(airflow_server, json.dumps(demo_doc(slug="spelled")).encode(), "APPLICATION/JSON")
    assert out.status_code == 201, out.text
