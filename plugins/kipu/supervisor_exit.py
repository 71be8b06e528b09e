"""A worker's task supervisor notices its task process's exit at once, instead of up to a heartbeat interval later.

Installed by ``kipu.celery_config`` in each Celery worker before it forks its pool."""

from __future__ import annotations

import logging
import os
import select
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_kipu_waits_for_exit"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Block until process ``pid`` has exited (without reaping it) or ``timeout`` passes; False where Linux's
    pidfd is not available, so the caller keeps Airflow's own wait."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is already reaped
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # a pidfd turns readable when its process exits
        poller.poll(timeout * 1000)
    finally:
        os.close(fd)
    return True


def install() -> bool:
    """Patch Airflow 3.3's ``WatchedSubprocess._service_subprocess`` (the supervisor's loop body).

    Why: a task process closes its sockets a moment before it exits. When the supervisor reads their EOF first, it
    finds the process still running, and its next ``select`` has no socket left to wake it: it sleeps the whole
    ``[workers] min_heartbeat_interval``, holding the Celery slot. bench/e2e.py saw that after about half of all tasks,
    bare Airflow's and Kipu's alike. Here, once no socket is left, the supervisor waits on the process itself and
    goes on the moment it exits; the wait is never longer than Airflow's, and Airflow still reaps the process and
    reports its exit code. Returns whether the patch is in place."""
    try:
        from airflow.sdk.execution_time.supervisor import WatchedSubprocess
    except ImportError:
        return False
    original = WatchedSubprocess.__dict__.get("_service_subprocess")
    if original is None:
        log.warning("Kipu: Airflow's task supervisor has no _service_subprocess; its exit wait is unchanged")
        return False
    if getattr(original, _MARK, False):
        return True

    def _service_subprocess(
        self: Any, max_wait_time: float, raise_on_timeout: bool = False, expect_signal: int | None = None
    ) -> int | None:
        if getattr(self, "_exit_code", 0) is None and not getattr(self, "_open_sockets", True) and max_wait_time > 0:
            pid = getattr(getattr(self, "_process", None), "pid", None)
            if isinstance(pid, int) and wait_for_exit(pid, max_wait_time):
                max_wait_time = 0  # waited already; Airflow's own check follows at once
        return original(self, max_wait_time, raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)

    setattr(_service_subprocess, _MARK, True)
    _service_subprocess.__wrapped__ = original  # type: ignore[attr-defined]
    WatchedSubprocess._service_subprocess = _service_subprocess  # type: ignore[method-assign]
    return True
