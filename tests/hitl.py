"""Answer or expire HITL approvals of a ``dag.test()`` run from a background thread.

``dag.test()`` parks approval tasks in ``awaiting_input`` until a response arrives from outside. These helpers do
what the HITL REST API handler and the scheduler's timeout sweep do, with Airflow's own functions.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from types import SimpleNamespace

from sqlalchemy import select, update


class Responder(threading.Thread):
    """Answers the first approval of ``dag_id`` with ``option`` as ``user`` (``None``: let it time out).

    On any error the parked task is failed, so ``dag.test()`` ends and the test sees ``error``.
    """

    def __init__(self, dag_id: str, option: str | None, user: str = "admin", timeout: float = 240) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.option, self.user, self.timeout = dag_id, option, user, timeout
        self.assigned_users: list[dict] | None = None
        self.error: str | None = None
        self.answered = threading.Event()

    def run(self) -> None:
        try:
            self._answer()
        except Exception:
            self.error = traceback.format_exc()
        if not self.answered.is_set():
            self.error = self.error or f"no approval of {self.dag_id} answered within {self.timeout}s"
            self._fail_parked()

    def _parked(self, session):  # type: ignore[no-untyped-def]
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.state import TaskInstanceState

        return session.scalar(select(TI).where(TI.dag_id == self.dag_id, TI.state == TaskInstanceState.AWAITING_INPUT))

    def _answer(self) -> None:
        from airflow.models.hitl import HITLDetail, HITLUser
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.models.trigger import handle_event_submit
        from airflow.sdk import timezone
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                found = self._parked(session)
                if found is None:
                    time.sleep(0.5)
                    continue
                # The REST handler's lock order: the task instance first, then its HITL row.
                ti = session.get(TI, found.id, with_for_update={"of": TI})
                detail = session.scalar(
                    select(HITLDetail).where(HITLDetail.ti_id == ti.id).with_for_update(of=HITLDetail)
                )
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

    def _fail_parked(self, wait: float = 180) -> None:
        """Fail the parked approval so ``dag.test()`` ends; if the task has not parked yet (the helper failed early),
        wait for it to park: failing nothing would leave ``dag.test()`` waiting for input forever."""
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with create_session() as session:
                failed = session.execute(
                    update(TI)
                    .where(TI.dag_id == self.dag_id, TI.state == TaskInstanceState.AWAITING_INPUT)
                    .values(state=TaskInstanceState.FAILED)
                ).rowcount
            if failed:
                return
            time.sleep(1)


def pending_approval(api: object, headers: dict[str, str], timeout: float = 240) -> dict:
    """The one approval ``GET /kipu/api/approvals`` lists, once a ``dag.test()`` run has parked it; then a few
    seconds more, since Airflow 3.3.2 races an answer that comes within the park's own beat."""
    deadline = time.monotonic() + timeout
    pending: list = []
    while not pending:
        assert time.monotonic() < deadline, "the approval never appeared"
        time.sleep(0.5)
        pending = api.get("/kipu/api/approvals", headers=headers).json()  # type: ignore[attr-defined]
    (approval,) = pending
    time.sleep(6)
    return approval
