"""``kipu runs list``, ``kipu posts list|show|retry`` and ``kipu connection list|health|refresh``, through the /kipu
API (remote, or in process on the store)."""

from __future__ import annotations

import argparse
from typing import Any

from kipu.cli.client import KipuClient
from kipu.cli.output import emit_json, show
from kipu.cli.workflows import remote_options, resolve_workflow


def _steps(run: dict[str, Any]) -> str:
    return " ".join(f"{s['step']}:{s['status'] or 'pending'}" for s in run["steps"])


RUN_COLUMNS = [
    ("started", lambda r: (r["started_at"] or "")[:19]),
    ("status", lambda r: r["status"]),
    ("item", lambda r: r["platform_post_id"]),
    ("steps", _steps),
    ("error", lambda r: r["error"]),
    ("id", lambda r: r["id"]),
]


def cmd_runs(args: argparse.Namespace) -> int:
    client = KipuClient.connect(args.url)
    wf = resolve_workflow(client, args.workflow, args.team)
    runs = client.call("GET", f"/workflows/{wf['id']}/runs", params={"limit": args.limit})
    if args.status:
        runs = [r for r in runs if r["status"] == args.status]
    show(runs, args, RUN_COLUMNS, f"no runs of {wf['team']}/{wf['slug']}")
    return 0


POST_COLUMNS = [
    ("created", lambda p: p["created_at"][:19]),
    ("platform", lambda p: p["platform"]),
    ("status", lambda p: p["status"]),
    ("caption", lambda p: p["caption"]),
    ("url", lambda p: p["url"] or p["error"]),
    ("id", lambda p: p["id"]),
]


def cmd_posts(args: argparse.Namespace) -> int:
    client = KipuClient.connect(args.url)
    workflow_id = resolve_workflow(client, args.workflow, args.team)["id"] if args.workflow else None
    params = {
        "team": args.team,
        "status": args.status,
        "platform": args.platform,
        "workflow_id": workflow_id,
        "limit": args.limit,
    }
    page = client.call("GET", "/posts", params=params)
    show(page["items"] if not args.json else page, args, None if args.json else POST_COLUMNS, "no posts")
    return 0


def cmd_post_show(args: argparse.Namespace) -> int:
    show(KipuClient.connect(args.url).call("GET", f"/posts/{args.post_id}"), args)
    return 0


def cmd_post_retry(args: argparse.Namespace) -> int:
    result = KipuClient.connect(args.url).call("POST", f"/posts/{args.post_id}/publish")
    if args.json:
        emit_json(result)
        return 0
    post = result["post"]
    already = " (it had already landed; not posted again)" if result["already_published"] else ""
    print(f"post {post['id']} to {post['platform']}: {post['status']}{already} {post['url'] or ''}".rstrip())
    return 0


CONNECTION_COLUMNS = [
    ("team", lambda c: c["team"]),
    ("platform", lambda c: c["platform"]),
    ("account", lambda c: c["username"] or c["platform_user_id"]),
    ("status", lambda c: c["status"]),
    ("expires", lambda c: (c["token_expires_at"] or "")[:19]),
    ("id", lambda c: c["id"]),
]
HEALTH_COLUMNS = [
    *CONNECTION_COLUMNS[:4],
    ("checked", lambda c: (c["last_checked_at"] or "")[:19]),
    ("scopes", lambda c: ",".join(c["scopes"] or [])),
    ("problem", lambda c: c["last_error"]),
]
HEALTHY = ("healthy",)


def cmd_connections(args: argparse.Namespace) -> int:
    show(KipuClient.connect(args.url).call("GET", "/connections", params={"team": args.team}), args, CONNECTION_COLUMNS)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 1 when a connection needs someone: expiring, needs_reconnect, rate_limited or error."""
    client = KipuClient.connect(args.url)
    if args.connection_id:
        rows = [client.call("GET", f"/connections/{args.connection_id}")]
    else:
        rows = client.call("GET", "/connections", params={"team": args.team})
    show(rows, args, HEALTH_COLUMNS, "no connections")
    return 0 if all(c["status"] in HEALTHY for c in rows) else 1


def cmd_refresh(args: argparse.Namespace) -> int:
    conn = KipuClient.connect(args.url).call("POST", f"/connections/{args.connection_id}/refresh")
    if args.json:
        emit_json(conn)
    else:
        print(f"{conn['platform']} {conn['username'] or conn['platform_user_id']}: {conn['status']}")
    return 0 if conn["status"] in HEALTHY else 1


def register(sub: argparse._SubParsersAction, conn: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="a workflow's runs").add_subparsers(dest="sub", required=True)
    rl = runs.add_parser("list", help="a workflow's runs, newest first, with each step's status")
    rl.add_argument("workflow", help="id, TEAM/SLUG or SLUG")
    rl.add_argument("--team")
    rl.add_argument("--status", help="only runs in this status (pending, running, completed, failed, skipped)")
    rl.add_argument("--limit", type=int, default=50, help="at most this many (1-200; default 50)")
    remote_options(rl)
    rl.set_defaults(fn=cmd_runs)

    posts = sub.add_parser("posts", help="published and failed posts").add_subparsers(dest="sub", required=True)
    pl = posts.add_parser("list", help="posts, newest first")
    pl.add_argument("--team")
    pl.add_argument("--workflow", help="only this workflow's posts (id, TEAM/SLUG or SLUG)")
    pl.add_argument("--status", help="pending, published, failed, awaiting_moderation")
    pl.add_argument("--platform")
    pl.add_argument("--limit", type=int, default=50, help="at most this many (1-200; default 50)")
    remote_options(pl)
    pl.set_defaults(fn=cmd_posts)
    ps = posts.add_parser("show", help="one post: its caption, status, link or error")
    ps.add_argument("post_id")
    remote_options(ps)
    ps.set_defaults(fn=cmd_post_show)
    pr = posts.add_parser("retry", help="publish one failed post again, to its own target only (never twice)")
    pr.add_argument("post_id")
    remote_options(pr)
    pr.set_defaults(fn=cmd_post_retry)

    cl = conn.add_parser("list", help="the connected accounts (tokens are never shown)")
    cl.add_argument("--team")
    remote_options(cl)
    cl.set_defaults(fn=cmd_connections)
    ch = conn.add_parser("health", help="each connection's health, expiry and scopes; exit 1 if one needs attention")
    ch.add_argument("connection_id", nargs="?", help="one connection (default: all)")
    ch.add_argument("--team")
    remote_options(ch)
    ch.set_defaults(fn=cmd_health)
    cr = conn.add_parser("refresh", help="refresh a connection's token now and check it with the platform")
    cr.add_argument("connection_id")
    remote_options(cr)
    cr.set_defaults(fn=cmd_refresh)
