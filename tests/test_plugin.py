"""The Kipu plugin as Airflow loads it: registered once, from its entry point, with no plugin import errors, both
with an empty plugins folder and with the repository's ``plugins/`` as the folder (as compose mounts it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("folder", ["empty", "repository"])
def test_airflow_loads_the_kipu_plugin_once_without_import_errors(folder: str, tmp_path: Path) -> None:
    plugins = tmp_path if folder == "empty" else REPO / "plugins"
    probe = (
        "import json; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print(json.dumps({'kipu': [p.name for p in plugins].count('kipu'), 'errors': errors}))"
    )
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"kipu": 1, "errors": {}}, loaded


def test_the_api_server_builds_the_kipu_app_at_start_up_and_a_bad_build_does_not_stop_it(tmp_path: Path) -> None:
    """Airflow's own API server app, started (its lifespan) and then asked: the /kipu app is built before the first
    request, once; importing the plugin alone builds nothing (every task process imports it). When the build fails,
    the server still starts and every other route answers."""
    probe = """
import json, sys
from airflow.api_fastapi.app import create_app
from fastapi.testclient import TestClient
import kipu.plugin as plugin
if sys.argv[1] == "broken":
    import kipu.api.app
    def broken():
        raise RuntimeError("no app today")
    kipu.api.app.create_app = broken
app = create_app("all")
out = {"after_import": plugin.KIPU_API._app is not None}
with TestClient(app, raise_server_exceptions=False) as client:
    out["after_start"] = plugin.KIPU_API._app is not None
    first = plugin.KIPU_API._app
    out["version"] = client.get("/api/v2/version").status_code
    out["kipu"] = client.get("/kipu/api/teams").status_code
    out["same_app"] = first is not None and plugin.KIPU_API._app is first
print(json.dumps(out))
"""
    for mode, expected in (
        ("ok", {"after_import": False, "after_start": True, "version": 200, "kipu": 401, "same_app": True}),
        ("broken", {"after_import": False, "after_start": False, "version": 200, "kipu": 500, "same_app": False}),
    ):
        run = subprocess.run(
            [sys.executable, "-c", probe, mode], capture_output=True, text=True, env=dict(os.environ), cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads(run.stdout.strip().splitlines()[-1]) == expected, mode
        if mode == "broken":
            assert "Kipu could not build its API at start-up" in run.stderr + run.stdout
