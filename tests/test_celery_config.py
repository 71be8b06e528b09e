"""``kipu.celery_config``: Airflow's Celery settings, and Kipu's task-time modules preloaded in the worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

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
        if pid == 0:  # a task process: nothing of Kipu's left to import, no mapper to configure, no CA bundle to load
            from kipu.store.models import WorkflowRun
            from kipu import tls
            ready = {"kipu.store.runs", "kipu.ai.service"} <= set(sys.modules) and WorkflowRun.__mapper__.configured
            ready = ready and tls.context.cache_info().currsize == 1  # the TLS context too: no CA bundle to load
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


SUPERVISED_CHILD = """
    import os, socket, sys, time
    from uuid import uuid4
    import psutil, structlog
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess, PsutilTracker, WatchedSubprocess
    if sys.argv[1] == "worker":
        from celery import Celery
        from celery.signals import import_modules
        import kipu.celery_config
        import_modules.send(sender=Celery("w"))  # the worker installs the shorter exit wait before its pool forks
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        child.close()  # a task process closes its sockets first...
        time.sleep(float(sys.argv[2]))  # ...and exits a moment later
        os._exit(0)
    child.close()
    proc = ActivitySubprocess(
        id=uuid4(), pid=pid, stdin=parent, process=PsutilTracker(psutil.Process(pid)),
        process_log=structlog.get_logger(), client=None,
    )
    proc._service_subprocess(max_wait_time=0.01)  # reads the EOF: no socket is left open
    started = time.monotonic()
    code = proc._service_subprocess(max_wait_time=3.0)  # the supervisor's next turn of its loop
    print(code, round(time.monotonic() - started, 2))
    os.waitpid(pid, 0) if code is None else None
"""


def supervise(mode: str, exits_after: float) -> tuple[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SUPERVISED_CHILD), mode, str(exits_after)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    code, took = out.stdout.split()[-2:]
    return code, float(took)


def test_a_workers_supervisor_frees_the_slot_when_the_task_process_exits() -> None:
    # Airflow alone sleeps out the heartbeat interval (3 s here) once the sockets are closed; the worker does not.
    assert supervise("worker", 0.2) == ("0", pytest.approx(0.2, abs=0.5))
    code, took = supervise("airflow", 0.2)
    assert code == "0" and took >= 2.9


def test_a_task_process_that_closed_its_sockets_but_runs_on_is_still_watched_each_interval() -> None:
    code, took = supervise("worker", 5)  # no exit within the interval: the loop turns as before, for heartbeats
    assert code == "None" and 2.9 <= took < 4
