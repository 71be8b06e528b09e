"""``kipu.celery_config``: Airflow's Celery settings, and Kipu's task-time modules preloaded in the worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_the_config_is_airflows_and_imports_no_kipu_task_module_by_itself() -> None:
    # The scheduler and api-server read this module too: only a worker's import signal preloads.
    out = run_python(
        """
        import sys
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
        from kipu.celery_config import CELERY_CONFIG
        assert CELERY_CONFIG == DEFAULT_CELERY_CONFIG and CELERY_CONFIG is not DEFAULT_CELERY_CONFIG
        print(sorted(m for m in sys.modules if m.startswith(("kipu.factory", "kipu.operators", "kipu.store"))))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_worker_signal_preloads_every_task_module_and_a_forked_task_inherits_them() -> None:
    out = run_python(
        """
        import os, sys
        from celery import Celery
        from celery.signals import import_modules
        import kipu.celery_config

        import_modules.send(sender=Celery("w"))  # what a worker's loader sends before its pool forks
        wanted = {"kipu.factory.loader", "kipu.operators.publish", "kipu.operators.start_runs", "kipu.ingest"}
        assert wanted <= set(sys.modules), wanted - set(sys.modules)
        pid = os.fork()
        if pid == 0:  # a task process: nothing of Kipu's left to import, and no mapper left to configure
            from kipu.store.models import WorkflowRun
            ready = {"kipu.store.runs", "kipu.ai.service"} <= set(sys.modules) and WorkflowRun.__mapper__.configured
            os._exit(0 if ready else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("0")
    assert "could not preload" not in out.stderr, out.stderr[-2000:]


def test_a_module_that_fails_to_import_is_logged_and_skipped(monkeypatch) -> None:
    import kipu.celery_config as cc

    monkeypatch.setattr(cc, "PRELOAD", ("kipu.no_such_module", "kipu.ingest"))
    monkeypatch.setattr(cc, "PRELOAD_PACKAGES", ())
    assert cc.preload_modules() == ["kipu.ingest"]
