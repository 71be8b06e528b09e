"""The Kipu plugin as Airflow loads it: registered once, from its entry point, with no plugin import errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_airflow_loads_the_kipu_plugin_once_without_import_errors() -> None:
    probe = (
        "import json; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print(json.dumps({'kipu': [p.name for p in plugins].count('kipu'), 'errors': errors}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"kipu": 1, "errors": {}}, loaded
