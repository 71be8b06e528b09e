"""What a delivery says: one line per event, a digest's subject and body for e-mail and Slack, and the JSON body of
an outgoing webhook."""

from __future__ import annotations

import html
import json
from collections import Counter
from typing import Any

MAX_LINES = 50  # a digest lists this many events, then counts the rest
LABELS = {
    "post.published": "post published",
    "post.failed": "post failed",
    "approval.requested": "approval requested",
    "approval.timed_out": "approval timed out",
    "connection.needs_reconnect": "connection needs reconnecting",
    "ai.budget_spent": "AI budget spent",
    "plan.limit_reached": "plan limit reached",
    "test": "test",
}


def _q(value: Any) -> str:
    return f"“{value}”" if value else ""


def line(kind: str, d: dict[str, Any]) -> str:
    """One event as a sentence, links included."""
    wf = f" ({d['workflow']})" if d.get("workflow") else ""
    if kind == "post.published":
        return f"Published to {d.get('platform')}: {d.get('url') or d.get('post_id')} {_q(d.get('caption'))}{wf}"
    if kind == "post.failed":
        return (
            f"Failed on {d.get('platform')}: {d.get('error')}{wf}. Task log: {d.get('log_url')} "
            f"Post: {d.get('post_url')}"
        )
    if kind == "approval.requested":
        return f"Approval requested{wf} for {_q(d.get('caption'))}: answer at {d.get('url')}"
    if kind == "approval.timed_out":
        return f"Approval timed out{wf} after {d.get('after')} with no answer: {_q(d.get('caption'))}"
    if kind == "connection.needs_reconnect":
        return f"The {d.get('platform')} account {d.get('account')} needs reconnecting: {d.get('reason')}"
    if kind == "ai.budget_spent":
        return (
            f"The daily AI budget of {d.get('budget')} tokens is spent ({d.get('used')} used on {d.get('day')}); "
            "rewrites use the offline rewriter until tomorrow (UTC)"
        )
    if kind == "plan.limit_reached":
        return f"Plan limit reached: {d.get('limit')} ({d.get('used')} of {d.get('allowed')})"
    return str(d.get("message") or "A test notification from Kipu")


def subject(events: list[dict[str, Any]]) -> str:
    """One line: a platform's error may hold line breaks, and a header must not (the e-mail would never build)."""
    if len(events) == 1:
        text = " ".join(line(events[0]["type"], events[0]["data"]).split())
        return "Kipu: " + (text if len(text) <= 120 else text[:119] + "…")
    counts = Counter(LABELS.get(e["type"], e["type"]) for e in events)
    return f"Kipu: {len(events)} events — " + ", ".join(f"{n} {label}" for label, n in counts.most_common())


def text(events: list[dict[str, Any]]) -> str:
    lines = [f"• {line(e['type'], e['data'])}" for e in events[:MAX_LINES]]
    if len(events) > MAX_LINES:
        lines.append(f"…and {len(events) - MAX_LINES} more")
    return "\n".join([subject(events), "", *lines])


def html_body(events: list[dict[str, Any]]) -> str:
    items = "".join(f"<li>{html.escape(line(e['type'], e['data']))}</li>" for e in events[:MAX_LINES])
    more = f"<p>…and {len(events) - MAX_LINES} more</p>" if len(events) > MAX_LINES else ""
    return f"<p>{html.escape(subject(events))}</p><ul>{items}</ul>{more}"


def webhook_body(delivery_id: str, team_id: str, events: list[dict[str, Any]]) -> bytes:
    """``{"delivery_id", "team_id", "events": [{"id", "type", "created_at", "data"}]}``: receivers de-duplicate by
    each event's id (a retried delivery carries the same ids)."""
    payload = {"delivery_id": delivery_id, "team_id": team_id, "events": events}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
