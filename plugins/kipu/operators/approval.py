"""The approval step: the standard provider's HITL ``ApprovalOperator``, recording the decision in the store."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from airflow.providers.standard.exceptions import HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from kipu.notify.events import EventKind, airflow_url, clip, emit, task_url
from kipu.operators.base import KipuStepOperator, RunState
from kipu.store.engine import session_scope
from kipu.store.runs import finish_step


class KipuApprovalOperator(KipuStepOperator, ApprovalOperator):
    """``approvers`` → ``assigned_users``; ``timeout_hours`` → ``response_timeout``; auto-approve → defaults.

    Without auto-approve, a timeout ends the item as skipped with the reason recorded.
    """

    ui_color = "#ffe6e6"
    template_fields = ("subject", "body")

    def __init__(self, *, assigned_users: list[dict[str, str]], **kwargs: Any) -> None:
        cfg = kwargs["step_config"]["config"]
        super().__init__(
            subject=kwargs.pop("subject", "Approve this post?"),
            body=kwargs.pop("body", None),
            assigned_users=assigned_users or None,
            response_timeout=timedelta(hours=float(cfg.get("timeout_hours", 24))),
            defaults=["Approve"] if cfg.get("auto_approve_on_timeout") else None,
            **kwargs,
        )

    def step_execute(self, context: Context) -> Any:
        state = self.resolve_run(context)
        self.subject, self.body = self._question(state)
        with self.recorded(context, state):
            state.output["awaiting"] = [u["id"] for u in self.assigned_users or []]
            self._tell("approval.requested", context, state, {"approvers": state.output["awaiting"]})
            return ApprovalOperator.execute(self, context)

    def _question(self, state: RunState) -> tuple[str, str]:
        """What the approvers read on Airflow's Required Actions page: the item, its caption, each rewrite, and a
        link to Kipu's approvals page (which shows the media too)."""
        item = state.item
        subject = f"{self.subject} — {clip(item.title or item.caption or item.platform_post_id, 80)}"
        parts = [f"**Caption** ({item.platform}):", "", f"> {clip(item.caption, 1500)}"]
        for platform, caption in state.captions.items():
            parts += ["", f"**Rewritten for {platform}:**", "", f"> {clip(caption, 1500)}"]
        if item.media:
            parts += ["", "**Media:** " + ", ".join(m.url.rsplit("/", 1)[-1] for m in item.media[:10])]
        parts += ["", f"[Open in Kipu]({airflow_url('/plugin/kipu-approvals')})"]
        return subject, "\n".join(parts)

    def _tell(self, kind: EventKind, context: Context, state: RunState, extra: dict[str, Any]) -> None:
        """The team's notification of this approval (once per DAG run and step)."""
        ti = context["ti"]
        data = {
            "workflow": context["dag"].dag_id,
            "step": self.task_id,
            "caption": clip(state.item.caption, 200),
            "url": task_url(ti.dag_id, ti.run_id, ti.task_id, "/required_actions"),
            **extra,
        }
        with session_scope() as session:
            emit(session, state.team_id, kind, data, f"{kind}:{ti.dag_id}:{ti.run_id}:{ti.task_id}")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        state = self.resolve_run(context)
        step_id = uuid.UUID(self.step_id)
        if "error" not in event:
            chosen = (event.get("chosen_options") or ["?"])[0]
            who = (event.get("responded_by_user") or {}).get("name") or "the timeout default"
            if not event.get("responded_by_user"):  # nobody answered: the defaults applied at the timeout
                self._tell(
                    "approval.timed_out", context, state, {"after": str(self.response_timeout), "default": chosen}
                )
            output = {"decision": chosen, "responded_by": who}
            if chosen != self.APPROVE:
                output["dropped"] = f"rejected by {who} at '{self.task_id}'"
                self.item_ended = True
            # Recorded first: on Reject the provider signals the skip by raising.
            with session_scope() as session:
                finish_step(session, state.run_id, step_id, "completed", output)
        try:
            return ApprovalOperator.execute_complete(self, context, event)
        except HITLTimeoutError:
            reason = f"approval '{self.task_id}' timed out after {self.response_timeout} with no answer"
            self._tell("approval.timed_out", context, state, {"after": str(self.response_timeout)})
            with session_scope() as session:
                finish_step(
                    session,
                    state.run_id,
                    step_id,
                    "skipped",
                    {"decision": "timeout", "dropped": reason},
                    reason,
                )
            raise AirflowSkipException(reason) from None
