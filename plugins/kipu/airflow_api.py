"""A small client for the Airflow 3 REST API: trigger runs idempotently and answer HITL approvals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from kipu import tls


class AirflowAPIError(RuntimeError):
    pass


@dataclass
class PendingApproval:
    dag_id: str
    dag_run_id: str
    task_id: str
    map_index: int
    subject: str


class AirflowAPI:
    """Token auth against ``/auth/token`` (SimpleAuthManager) or a given bearer token."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, verify=tls.context())
        self._username, self._password, self._token = username, password, token

    def __repr__(self) -> str:
        return f"AirflowAPI({self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            resp = self._client.post("/auth/token", json={"username": self._username, "password": self._password})
            if resp.status_code >= 300:
                raise AirflowAPIError(f"Airflow login as {self._username!r} failed: HTTP {resp.status_code}")
            self._token = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Every call this client makes is safe to repeat (reads, PATCHes, triggers with deterministic run ids), so a
        5xx is tried again a few times: on SQLite (the demo) Airflow answers 500 while another process holds the
        write lock."""
        import time

        for attempt in range(4):
            resp = self._client.request(method, "/api/v2" + path, headers=self._auth(), **kwargs)
            if resp.status_code == 401:  # token expired: log in once more
                self._token = None
                resp = self._client.request(method, "/api/v2" + path, headers=self._auth(), **kwargs)
            if resp.status_code < 500 or attempt == 3:
                return resp
            time.sleep(1 + attempt)
        return resp

    def healthy(self) -> bool:
        try:
            return self._client.get("/api/v2/monitor/health").status_code == 200
        except httpx.HTTPError:
            return False

    def dag_exists(self, dag_id: str) -> bool:
        return self.request("GET", f"/dags/{dag_id}").status_code == 200

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's record (``last_parsed_time``, ``file_token``, ...); None if Airflow has none."""
        from urllib.parse import quote

        resp = self.request("GET", f"/dags/{quote(dag_id, safe='')}")
        return resp.json() if resp.status_code == 200 else None

    def reparse(self, file_token: str) -> None:
        """``PUT /parseDagFile/{file_token}``: a priority parsing request for the DAG file behind the token."""
        resp = self.request("PUT", f"/parseDagFile/{file_token}")
        if resp.status_code >= 300:
            raise AirflowAPIError(f"asking for a parse failed: HTTP {resp.status_code}")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        """Start a run with a deterministic id; False if that run already exists (a no-op)."""
        resp = self.request(
            "POST", f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf}
        )
        if resp.status_code == 409:
            return False
        if resp.status_code >= 300:
            raise AirflowAPIError(f"triggering {dag_id}/{run_id} failed: HTTP {resp.status_code} {resp.text[:300]}")
        return True

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        resp = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return resp.json().get("state") if resp.status_code == 200 else None

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
        resp = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return resp.json() if resp.status_code == 200 else None

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        ti = self.task_instance(dag_id, run_id, task_id)
        return ti.get("state") if ti else None

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> int:
        """How many times the task started (Airflow's ``try_number``)."""
        ti = self.task_instance(dag_id, run_id, task_id)
        return int(ti.get("try_number") or 0) if ti else 0

    def pending_approvals(self, dag_id: str) -> list[PendingApproval]:
        resp = self.request("GET", f"/dags/{dag_id}/dagRuns/~/hitlDetails", params={"response_received": False})
        if resp.status_code >= 300:
            raise AirflowAPIError(f"listing approvals failed: HTTP {resp.status_code} {resp.text[:300]}")
        out = []
        for d in resp.json().get("hitl_details", []):
            ti = d.get("task_instance") or {}
            if d.get("response_received"):
                continue
            out.append(
                PendingApproval(
                    ti.get("dag_id", dag_id),
                    ti["dag_run_id"],
                    ti["task_id"],
                    ti.get("map_index", -1),
                    d.get("subject", ""),
                )
            )
        return out

    def answer(self, approval: PendingApproval, option: str) -> None:
        path = (
            f"/dags/{approval.dag_id}/dagRuns/{approval.dag_run_id}/taskInstances/"
            f"{approval.task_id}/{approval.map_index}/hitlDetails"
        )
        resp = self.request("PATCH", path, json={"chosen_options": [option], "params_input": {}})
        if resp.status_code >= 300:
            raise AirflowAPIError(f"answering {approval.task_id} failed: HTTP {resp.status_code} {resp.text[:300]}")

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        """The DAG run's note, shown in Airflow's runs list (at most 1,000 characters)."""
        from urllib.parse import quote

        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        resp = self.request("PATCH", path, json={"note": note[:1000]}, params={"update_mask": "note"})
        if resp.status_code >= 300:
            raise AirflowAPIError(f"setting the note of {dag_id}/{run_id} failed: HTTP {resp.status_code}")


CONN_ID = "kipu_airflow_api"


def from_connection(conn_id: str = CONN_ID) -> AirflowAPI | None:
    """The Airflow REST API a task may call, from the ``kipu_airflow_api`` connection (host: the API server's URL,
    login and password, or a token in the extra); None when it is not defined."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not configured: notes are a convenience
        return None
    scheme = conn.schema or "http"
    base = conn.host if "://" in (conn.host or "") else f"{scheme}://{conn.host}:{conn.port or 8080}"
    token = (conn.extra_dejson or {}).get("token")
    return AirflowAPI(base, username=conn.login, password=conn.password, token=token, timeout=10)
