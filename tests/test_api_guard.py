"""The /kipu app's door checks (``kipu.api.guard``) in Airflow's API server app: NUL characters answer 422 naming
where they were, JSON bodies over the limit answer 413 with or without a Content-Length, and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

from fastapi.testclient import TestClient
from kipu.api.guard import MAX_JSON
from kipu.store.engine import session_scope
from kipu.store.models import Workflow

from tests.helpers import demo_doc

API = "/kipu/api"


def _workflows() -> int:
    with session_scope() as s:
        return s.query(Workflow).count()


def test_nul_in_query_path_or_body_is_422_naming_where(api: TestClient, roles: dict) -> None:
    before = _workflows()
    query = api.get(f"{API}/posts", params={"platform": "x\x00"}, headers=roles["viewer"])
    assert query.status_code == 422 and query.json()["detail"][0]["loc"] == ["query"]
    path = api.get(f"{API}/workflows/abc%00def", headers=roles["viewer"])
    assert path.status_code == 422 and path.json()["detail"][0]["loc"] == ["path"]
    doc = demo_doc()
    doc["name"] = "pasta\x00"
    body = api.post(f"{API}/workflows", json=doc, headers=roles["member"])  # json.dumps escapes it as \u0000
    assert body.status_code == 422 and body.json()["detail"][0]["loc"] == ["body", "name"]  # names the field
    assert _workflows() == before


def test_a_body_read_by_the_guard_still_reaches_the_route(api: TestClient, roles: dict) -> None:
    out = api.post(f"{API}/workflows", json=demo_doc(), headers=roles["member"])
    assert out.status_code == 201, out.text
    assert out.json()["name"] == demo_doc()["name"]


def test_oversized_json_is_413_with_or_without_content_length(api: TestClient, roles: dict) -> None:
    before = _workflows()
    headers = {**roles["member"], "Content-Type": "application/json"}
    declared = api.post(f"{API}/workflows", content=b" " * (MAX_JSON + 1), headers=headers)
    assert declared.status_code == 413 and str(MAX_JSON) in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no Content-Length to refuse up front
        for _ in range(MAX_JSON // 65536 + 2):
            yield b" " * 65536

    streamed = api.post(f"{API}/workflows", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert _workflows() == before


def test_gc_tuning_freezes_once_and_can_be_turned_off() -> None:
    probe = (
        "import gc; from kipu.api.gc_tuning import tune_gc; "
        "print(tune_gc(), tune_gc(), gc.get_freeze_count() > 0, gc.get_threshold()[0])"
    )
    on = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ)
    assert on.stdout.split() == ["True", "False", "True", "10000"]
    env = {**os.environ, "KIPU_API_GC_TUNING": "0"}
    off = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert off.stdout.split() == ["False", "False", "False", "700"]
