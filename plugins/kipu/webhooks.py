"""Webhooks: the contract every platform's handler meets, and what they share (app settings, the HMAC check, who
watches an account, recording and starting what a delivery announced). A platform package provides its handler
(``Platform.webhook``); the API route only dispatches to it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select

from kipu.specs.items import ContentItem

log = logging.getLogger(__name__)
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


class WebhookRefused(Exception):
    """A call the handler refuses: the HTTP status to answer and why (never what a secret should have been)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Delivery:
    """What a signed delivery announced: ``(account id, item)`` pairs, and how many entries were ignored."""

    items: list[tuple[str, ContentItem]] = field(default_factory=list)
    # Entries left out (stale, or of an account nobody watches); None when the platform's answer does not count them.
    ignored: int | None = None


class Webhook(Protocol):
    platform: str

    def verify(self, query: Mapping[str, str]) -> str:
        """The subscription check (``GET``): the challenge to echo, or WebhookRefused."""

    def receive(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """A delivery (``POST``): its signature checked in constant time, then its items; WebhookRefused."""


def app_setting(platform: str, what: str) -> str | None:
    """The app secret (``secret``) or verify token (``verify_token``): Airflow connection ``kipu_<platform>_app``
    (password / extra.verify_token), else ``KIPU_<PLATFORM>_APP_SECRET`` / ``KIPU_<PLATFORM>_VERIFY_TOKEN``."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(f"kipu_{platform}_app")
        value = conn.password if what == "secret" else (conn.extra_dejson or {}).get("verify_token")
        if value:
            return str(value)
    except Exception as exc:  # not configured in Airflow: the environment
        log.debug("no Airflow connection kipu_%s_app (%s); reading the environment", platform, type(exc).__name__)
    env = "APP_SECRET" if what == "secret" else "VERIFY_TOKEN"
    return os.environ.get(f"KIPU_{platform.upper()}_{env}")


def check_signature(header: str, body: bytes, secret: str | None, header_name: str) -> None:
    """``<algorithm>=<hex HMAC of the body>``, compared in constant time: none is 401, a wrong one 403."""
    method, _, digest = header.partition("=")
    if method not in ALGORITHMS or not digest:
        raise WebhookRefused(401, f"{header_name} (an HMAC of the body) is required")
    expected = hmac.new((secret or "").encode(), body, ALGORITHMS[method]).hexdigest()
    if not secret or not hmac.compare_digest(digest.strip().lower().encode(), expected.encode()):
        raise WebhookRefused(403, "the signature does not match")


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest((given or "").encode(), (expected or "").encode())


def watchers(session: Any, platform: str, accounts: Collection[str] | None = None) -> dict[str, list[Any]]:
    """Account id -> the active webhook workflows watching it; read once per delivery, not per item.

    With ``accounts`` (a delivery's), only those accounts' connections and their teams' workflows are read, so a
    delivery costs what its own accounts' teams hold, not what every team on the server holds."""
    from kipu.store.models import Connection, Workflow

    conns = select(Connection).where(Connection.platform == platform)
    if accounts is not None:
        conns = conns.where(Connection.platform_user_id.in_(sorted(set(accounts))))
    accounts_by_ref = {
        (c.team_id, ref): c.platform_user_id
        for c in session.scalars(conns)
        for ref in (str(c.id), f"{platform}:{c.platform_user_id}")
    }
    flows = select(Workflow.id, Workflow.team_id, Workflow.trigger_config).where(Workflow.status == "active")
    if accounts is not None:
        teams = {team for team, _ in accounts_by_ref}
        if not teams:
            return {}
        flows = flows.where(Workflow.team_id.in_(teams))
    out: dict[str, list[Any]] = {}
    for wf_id, team_id, cfg in session.execute(flows):
        ref = (cfg or {}).get("connection_id") if (cfg or {}).get("type") == "webhook" else None
        account = accounts_by_ref.get((team_id, ref))
        if account is not None:
            out.setdefault(account, []).append(wf_id)
    return out


def enter(platform: str, delivery: Delivery) -> dict[str, int]:
    """Record every announced item for every workflow watching its account, then start each new run (``ingest``)."""
    from kipu.ingest import enter_and_start
    from kipu.store.engine import session_scope

    counts = {"recorded": 0, "duplicates": 0, "started": 0}
    if delivery.ignored is not None:
        counts["ignored"] = delivery.ignored
    with session_scope() as s:
        watching = watchers(s, platform, {account for account, _ in delivery.items})
    for account, item in delivery.items:
        if not watching.get(account):
            if "ignored" in counts:
                counts["ignored"] += 1
            continue
        entered = enter_and_start(watching[account], item, source="webhook")
        counts["recorded"] += entered.created
        counts["duplicates"] += entered.duplicates
        counts["started"] += entered.started
    return counts
