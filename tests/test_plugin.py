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
