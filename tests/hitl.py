"""Answer or expire HITL approvals of a ``dag.test()`` run from a background thread.

``dag.test()`` parks approval tasks in ``awaiting_input`` until a response arrives from outside. These helpers do
what the HITL REST API handler and the scheduler's timeout sweep do, with Airflow's own functions.
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

from sqlalchemy import select


def _awaiting(session, dag_id: str):  # type: ignore[no-untyped-def]
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState

    return session.scalar(select(TI).where(TI.dag_id == dag_id, TI.state == TaskInstanceState.AWAITING_INPUT))


class Responder(threading.Thread):
    """Answers the first approval of ``dag_id`` with ``option`` as ``user``; records what it saw."""

    def __init__(self, dag_id: str, option: str | None, user: str = "admin", timeout: float = 120) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.option, self.user, self.timeout = dag_id, option, user, timeout
        self.assigned_users: list[dict] | None = None
        self.answered = threading.Event()

    def run(self) -> None:
        from airflow.models.hitl import HITLUser
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils import timezone
        from airflow.utils.session import create_session

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = _awaiting(session, self.dag_id)
                if ti is not None:
                    detail = ti.hitl_detail
                    self.assigned_users = list(detail.assigned_users or [])
                    if self.option is None:  # expire: what the scheduler's timeout sweep does
                        if ti.trigger_timeout and ti.trigger_timeout < timezone.utcnow():
                            from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

                            session.commit()
                            SchedulerJobRunner.check_awaiting_input_timeouts(
                                SimpleNamespace(log=logging.getLogger("test.sweep"))
                            )
                            self.answered.set()
                            return
                    else:
                        detail.responded_by = HITLUser(id=self.user, name=self.user)
                        detail.responded_at = timezone.utcnow()
                        detail.chosen_options = [self.option]
                        detail.params_input = {}
                        session.add(detail)
                        handle_event_submit(
                            TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                        )
                        self.answered.set()
                        return
            time.sleep(0.5)
