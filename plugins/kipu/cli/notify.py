"""``kipu notify channels|add|update|remove|rotate|test|deliveries``: a team's notification channels and the
delivery log, through the /kipu API (remote, or in process on the store)."""

from __future__ import annotations

import argparse
from typing import Any

from kipu.cli.client import KipuClient
from kipu.cli.output import emit_json, show
from kipu.cli.workflows import remote_options
from kipu.notify.events import SUBSCRIBABLE

CHANNEL_COLUMNS = [
    ("kind", lambda c: c["kind"]),
    ("name", lambda c: c["name"]),
    ("target", lambda c: ", ".join(c["recipients"] or []) or c["url_hint"]),
    ("events", lambda c: ",".join(c["events"])),
    ("enabled", lambda c: "yes" if c["enabled"] else "no"),
    ("id", lambda c: c["id"]),
]
DELIVERY_COLUMNS = [
    ("created", lambda d: d["created_at"][:19]),
    ("status", lambda d: d["status"]),
    ("events", lambda d: d["events"]),
    ("attempts", lambda d: " ".join(str(a["status_code"] or "x") for a in d["attempts"])),
    ("next", lambda d: (d["next_attempt_at"] or "")[:19]),
    ("error", lambda d: d["last_error"]),
    ("id", lambda d: d["id"]),
]


def _base(team: str) -> str:
    return f"/teams/{team}/notifications"


def _events(raw: str | None) -> list[str] | None:
    return [e.strip() for e in raw.split(",") if e.strip()] if raw else None


def cmd_channels(args: argparse.Namespace) -> int:
    rows = KipuClient.connect(args.url).call("GET", f"{_base(args.team)}/channels")
    show(rows, args, CHANNEL_COLUMNS, f"team {args.team} has no notification channels")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"kind": args.kind, "name": args.name or args.kind}
    if args.kind == "email":
        body["recipients"] = args.to or []
    else:
        body["url"] = args.target_url
    if args.events:
        body["events"] = _events(args.events)
    made = KipuClient.connect(args.url).call("POST", f"{_base(args.team)}/channels", json=body)
    if args.json:
        emit_json(made)
        return 0
    print(f"channel {made['id']} ({made['kind']} '{made['name']}') added for: {', '.join(made['events'])}")
    if made.get("secret"):
        print(f"signing secret (shown only now): {made['secret']}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.events:
        body["events"] = _events(args.events)
    if args.enable or args.disable:
        body["enabled"] = bool(args.enable)
    if args.name:
        body["name"] = args.name
    if args.target_url:
        body["url"] = args.target_url
    if args.to:
        body["recipients"] = args.to
    row = KipuClient.connect(args.url).call("PATCH", f"{_base(args.team)}/channels/{args.channel_id}", json=body)
    show(row, args) if args.json else print(f"channel {row['id']}: {'enabled' if row['enabled'] else 'disabled'}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    KipuClient.connect(args.url).call("DELETE", f"{_base(args.team)}/channels/{args.channel_id}")
    print(f"channel {args.channel_id} removed")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    path = f"{_base(args.team)}/channels/{args.channel_id}/rotate-secret"
    out = KipuClient.connect(args.url).call("POST", path, params={"grace_hours": args.grace_hours})
    if args.json:
        emit_json(out)
        return 0
    print(f"new signing secret (shown only now): {out['secret']}")
    if out["previous_secret_until"]:
        print(f"the old secret also signs until {out['previous_secret_until']}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    path = f"{_base(args.team)}/channels/{args.channel_id}/test"
    out = KipuClient.connect(args.url).call("POST", path)
    if args.json:
        emit_json(out)
    else:
        print(f"test delivery {out['id']} queued; kipu_notify sends it within a minute")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    params = {"channel_id": args.channel, "status": args.status, "limit": args.limit}
    rows = KipuClient.connect(args.url).call("GET", f"{_base(args.team)}/deliveries", params=params)
    show(rows, args, DELIVERY_COLUMNS, "no deliveries")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    notify = sub.add_parser("notify", help="notification channels (e-mail, Slack, webhooks) and the delivery log")
    n = notify.add_subparsers(dest="sub", required=True, parser_class=type(notify))
    events_help = f"comma-separated event types (default: all): {', '.join(SUBSCRIBABLE)}"

    def leaf(name: str, text: str, fn: Any) -> argparse.ArgumentParser:
        p = n.add_parser(name, help=text)
        p.add_argument("--team", required=True, help="the team's slug or id")
        remote_options(p)
        p.set_defaults(fn=fn)
        return p

    leaf("channels", "the team's channels (URLs show only scheme and host)", cmd_channels)
    add = leaf("add", "add a channel; a webhook's signing secret is printed once", cmd_add)
    add.add_argument("kind", choices=["email", "slack", "webhook"])
    add.add_argument("target_url", nargs="?", help="the Slack incoming-webhook or HTTPS webhook URL")
    add.add_argument("--to", action="append", help="an e-mail recipient (repeat for more)")
    add.add_argument("--name")
    add.add_argument("--events", help=events_help)
    up = leaf("update", "choose events, enable or disable, rename or retarget a channel", cmd_update)
    up.add_argument("channel_id")
    up.add_argument("--events", help=events_help)
    up.add_argument("--enable", action="store_true")
    up.add_argument("--disable", action="store_true")
    up.add_argument("--name")
    up.add_argument("--target-url", dest="target_url")
    up.add_argument("--to", action="append", help="replace the recipients (repeat for more)")
    leaf("remove", "delete a channel and its delivery log", cmd_remove).add_argument("channel_id")
    rot = leaf("rotate", "a new webhook signing secret; the old one also signs during the grace", cmd_rotate)
    rot.add_argument("channel_id")
    rot.add_argument("--grace-hours", type=float, default=24, help="0-168 hours (default 24)")
    leaf("test", "queue a test notification to one channel", cmd_test).add_argument("channel_id")
    dl = leaf("deliveries", "the delivery log: each delivery's status and attempts, newest first", cmd_deliveries)
    dl.add_argument("--channel", help="one channel's deliveries")
    dl.add_argument("--status", choices=["pending", "delivered", "failed"])
    dl.add_argument("--limit", type=int, default=50, help="at most this many (1-200; default 50)")
