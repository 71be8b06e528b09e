"""``kipu workflow list|show|run|pause|activate|delete|test`` and ``kipu plan|apply``: through the /kipu API, on a
remote Kipu or in process on the store (``kipu.cli.client``)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from kipu.cli.admin import load_file
from kipu.cli.client import ApiError, KipuClient
from kipu.cli.output import emit_json, show

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")


def remote_options(p: argparse.ArgumentParser, json_output: bool = True) -> None:
    """--url (or KIPU_URL, with KIPU_TOKEN) for a remote Kipu; the local store otherwise."""
    p.add_argument("--url", help="a remote Kipu (Airflow's API server URL); default: KIPU_URL, else the local store")
    if json_output:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def resolve_workflow(client: KipuClient, ref: str, team: str | None = None) -> dict[str, Any]:
    """A workflow by id, TEAM/SLUG, or SLUG (with --team, or when only one of the caller's teams has it)."""
    try:
        return client.call("GET", f"/workflows/{uuid.UUID(ref)}")  # type: ignore[no-any-return]
    except ValueError:
        pass
    if "/" in ref and team is None:
        team, ref = ref.split("/", 1)
    found = [w for w in client.call("GET", "/workflows", params={"team": team}) if w["slug"] == ref]
    if not found:
        raise ApiError(404, f"workflow '{ref}' not found" + (f" in team '{team}'" if team else ""))
    if len(found) > 1:
        teams = ", ".join(f"{w['team']}/{ref}" for w in found)
        raise ApiError(409, f"several teams have a workflow '{ref}': name one ({teams})")
    return found[0]  # type: ignore[no-any-return]


# -- the stored workflows --------------------------------------------------------------------------------------------
WORKFLOW_COLUMNS = [
    ("team", lambda w: w["team"]),
    ("slug", lambda w: w["slug"]),
    ("status", lambda w: w["status"]),
    ("name", lambda w: w["name"]),
    ("dag id", lambda w: w["dag_id"]),
    ("id", lambda w: w["id"]),
]


def cmd_list(args: argparse.Namespace) -> int:
    rows = KipuClient.connect(args.url).call("GET", "/workflows", params={"team": args.team})
    if args.status:
        rows = [w for w in rows if w["status"] == args.status]
    show(rows, args, WORKFLOW_COLUMNS, "no workflows")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    wf = resolve_workflow(KipuClient.connect(args.url), args.workflow, args.team)
    if args.json:
        emit_json(wf)
    else:
        print(f"# {wf['team']}/{wf['slug']}  id {wf['id']}  DAG {wf['dag_id']}  {wf['status']}")
        sys.stdout.write(yaml.safe_dump(wf["document"], sort_keys=False, allow_unicode=True))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = KipuClient.connect(args.url)
    wf = resolve_workflow(client, args.workflow, args.team)
    if args.action == "delete":
        client.call("DELETE", f"/workflows/{wf['id']}")
        wf = {**wf, "status": "inactive"}
        message = f"deleted {wf['team']}/{wf['slug']}: its DAG is removed, its runs and posts are kept"
    else:
        wf = client.call("POST", f"/workflows/{wf['id']}/{args.action}")
        message = f"{wf['team']}/{wf['slug']} is {wf['status']}"
    if args.json:
        emit_json(wf)
    else:
        print(message)
    return 0


def _given_item(args: argparse.Namespace) -> dict[str, Any]:
    given = load_file(args.item) if args.item else {}
    if not isinstance(given, dict):
        raise ApiError(0, f"{args.item}: an item is a mapping (caption, media, ...)")
    item: dict[str, Any] = dict(given)
    if args.caption is not None:
        item["caption"] = args.caption
    if args.media:
        item["media"] = [*item.get("media", []), *({"url": m} for m in args.media)]
    if getattr(args, "key", None):
        item["idempotency_key"] = args.key
    if not item:
        raise ApiError(0, "give the item: --caption TEXT (and --media), or --item FILE")
    return item


def cmd_run(args: argparse.Namespace) -> int:
    client = KipuClient.connect(args.url)
    wf = resolve_workflow(client, args.workflow, args.team)
    started = client.call("POST", f"/workflows/{wf['id']}/run", json={"item": _given_item(args)})
    if args.json:
        emit_json(started)
        return 0
    what = "started" if started["started"] else ("already recorded" if not started["created"] else "recorded")
    print(f"run {started['workflow_run_id']} of {wf['team']}/{wf['slug']}: {what} ({started['status']})")
    if started.get("dag_run_id"):
        print(f"  DAG run {started['dag_id']} / {started['dag_run_id']}")
    if started.get("detail"):
        print(f"  {started['detail']}")
    return 0


# -- dry runs --------------------------------------------------------------------------------------------------------
def cmd_test(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"item": _given_item(args), "ai": args.ai, "at": args.at}
    if args.offline:
        preview = _offline_preview(args, body)
    elif Path(args.workflow).exists() or args.workflow == "-":
        body["document"] = load_file(args.workflow)
        if args.team and isinstance(body["document"], dict):
            body["document"]["team"] = args.team
        preview = KipuClient.connect(args.url).call("POST", "/workflows/preview", json=body)
    else:
        client = KipuClient.connect(args.url)
        wf = resolve_workflow(client, args.workflow, args.team)
        preview = client.call("POST", f"/workflows/{wf['id']}/preview", json=body)
    if args.json:
        emit_json(preview)
    else:
        print_preview(preview)
    return 0


def _offline_preview(args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    """The spec alone, without the store: no connection or member checks, the offline rewriter only."""
    from datetime import datetime

    from pydantic import ValidationError

    from kipu.preview import dry_run
    from kipu.specs.items import given_item
    from kipu.specs.workflow import WorkflowSpecError, format_errors, parse_workflow

    try:
        spec = parse_workflow(load_file(args.workflow))
    except WorkflowSpecError as exc:
        raise ApiError(0, exc.errors) from None
    try:
        item = given_item(body["item"], "manual:preview")
    except ValidationError as exc:
        raise ApiError(0, format_errors(exc, "item")) from None
    at = datetime.fromisoformat(args.at) if args.at else None
    if at is not None and at.tzinfo is None:
        raise ApiError(0, "--at: give a time zone (e.g. 2026-03-29T01:30:00Z)")
    return dry_run(spec, item, now=at).model_dump(mode="json")


def print_preview(p: dict[str, Any]) -> None:
    print(f"Dry run of '{p['workflow']}' (time zone {p['timezone']}); nothing was published or stored.")
    for s in p["steps"]:
        print(f"  {s['step']:<24} {s['type']:<11} {s['outcome']:<11} {s['detail']}")
    for t in p["targets"]:
        verdict = "OK" if not t["problems"] else "REFUSED: " + "; ".join(t["problems"])
        print(f"\n  -> {t['platform']} ({t['connection_id']}): {t['length']}/{t['limit']} {t['unit']}, {verdict}")
        for line in t["caption"].splitlines() or [""]:
            print(f"     | {line}")
        if t["media"]:
            print(f"     media: {', '.join(t['media'])}")
    print(f"\nOutcome: {p['outcome']}")


# -- plan and apply --------------------------------------------------------------------------------------------------
def read_folder(folder: str) -> dict[str, str]:
    """The folder's workflow files (recursively), by path relative to it."""
    from kipu.specs.document import MAX_FILE_BYTES

    root = Path(folder)
    if not root.is_dir():
        raise ApiError(0, f"{folder}: not a folder of workflow files")
    files: dict[str, str] = {}
    problems: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in WORKFLOW_SUFFIXES and p.is_file()):
        name = str(path.relative_to(root))
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            problems.append(f"{name}: the file is over the limit of {MAX_FILE_BYTES} bytes")
            continue
        try:
            files[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 (byte {exc.start})")
    if problems:
        raise ApiError(0, problems)
    if not files:  # a mistyped path must not pause every workflow of the team
        raise ApiError(0, f"{folder}: no workflow files (.yaml, .yml, .json) in it")
    return files


def _folder_team(files: dict[str, str], given: str | None) -> str:
    if given:
        return given
    teams = set()
    for text in files.values():
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and isinstance(data.get("team"), str):
            teams.add(data["team"])
    if len(teams) != 1:
        found = ", ".join(sorted(teams)) or "none"
        raise ApiError(0, f"name the folder's team with --team (the files name: {found})")
    return teams.pop()


SYMBOLS = {"create": "+", "update": "~", "pause": "=", "delete": "-"}


def print_plan(plan: dict[str, Any], verb: str) -> None:
    for change in plan["changes"]:
        where = f" ({change['file']})" if change.get("file") else ""
        print(f"{SYMBOLS[change['action']]} {change['action']} {plan['team']}/{change['slug']}{where}")
        if change["action"] == "update" or (change["action"] != "create" and change["diff"]):
            for line in change["diff"].splitlines():
                print(f"    {line}")
    counts = {a: sum(1 for c in plan["changes"] if c["action"] == a) for a in SYMBOLS}
    print(
        f"{verb}: {counts['create']} to create, {counts['update']} to change, {counts['pause']} to pause, "
        f"{counts['delete']} to delete."
    )


def cmd_plan(args: argparse.Namespace) -> int:
    files = read_folder(args.dir)
    team = _folder_team(files, args.team)
    plan = KipuClient.connect(args.url).call("POST", f"/teams/{team}/plan", json={"files": files, "prune": args.prune})
    if args.out:
        Path(args.out).write_text(json.dumps(plan, indent=2))
    if args.json:
        emit_json(plan)
    if plan["errors"]:
        if not args.json:
            print(f"{len(plan['errors'])} error(s); nothing can be applied until every file is valid:", file=sys.stderr)
            for e in plan["errors"]:
                print(f"  {e}", file=sys.stderr)
        return 1
    if not args.json:
        if plan["changes"]:
            print_plan(plan, "Plan")
        else:
            print(f"No changes: team '{team}' matches {args.dir}.")
    return 2 if plan["changes"] else 0


def cmd_apply(args: argparse.Namespace) -> int:
    files = read_folder(args.dir)
    body: dict[str, Any] = {"files": files, "prune": args.prune}
    team = args.team
    if args.plan_file:
        try:
            saved = json.loads(Path(args.plan_file).read_text())
            saved_team, saved_prune = saved["team"], saved["prune"]
            expected = {"fingerprint": str(saved["fingerprint"]), "source": str(saved["source"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ApiError(0, f"{args.plan_file}: not a plan written by kipu plan --out ({exc})") from None
        team = team or saved_team
        if team != saved_team or args.prune != saved_prune:
            raise ApiError(0, f"the plan file is for team '{saved_team}' with prune={saved_prune}")
        body.update(expected)
    team = _folder_team(files, team)
    applied = KipuClient.connect(args.url).call("POST", f"/teams/{team}/apply", json=body)
    if args.json:
        emit_json(applied)
    elif applied["changes"]:
        print_plan(applied, "Applied")
    else:
        print(f"No changes: team '{team}' already matches {args.dir}.")
    return 0


def register(sub: argparse._SubParsersAction, wf: argparse._SubParsersAction) -> None:
    ls = wf.add_parser("list", help="the stored workflows, with status and DAG id")
    ls.add_argument("--team", help="one team (slug or id); default: every team you are in")
    ls.add_argument("--status", choices=("active", "paused", "inactive"))
    remote_options(ls)
    ls.set_defaults(fn=cmd_list)

    sh = wf.add_parser("show", help="one stored workflow's document")
    sh.add_argument("workflow", help="id, TEAM/SLUG or SLUG")
    sh.add_argument("--team")
    remote_options(sh)
    sh.set_defaults(fn=cmd_show)

    for action, text in (
        ("activate", "activate a workflow: its DAG takes items"),
        ("pause", "pause a workflow: it takes no new items and keeps its history and poll cursor"),
        ("delete", "delete a workflow: its DAG goes, its runs and posts stay (admins)"),
    ):
        a = wf.add_parser(action, help=text)
        a.add_argument("workflow", help="id, TEAM/SLUG or SLUG")
        a.add_argument("--team")
        remote_options(a)
        a.set_defaults(fn=cmd_status, action=action)

    run = wf.add_parser("run", help="run a workflow on one item given by hand; prints the run")
    run.add_argument("workflow", help="id, TEAM/SLUG or SLUG")
    run.add_argument("--team")
    _item_options(run)
    run.add_argument("--key", help="an idempotency key: the same key runs the item once, however often it is sent")
    remote_options(run)
    run.set_defaults(fn=cmd_run)

    test = wf.add_parser(
        "test", help="dry-run one item through a workflow file (or a stored workflow); nothing is published or stored"
    )
    test.add_argument("workflow", help="a workflow file, or a stored workflow's id or TEAM/SLUG")
    test.add_argument("--team", help="the file's team, when it names none")
    _item_options(test)
    test.add_argument("--ai", action="store_true", help="let ai_rewrite steps call the model (counts against budget)")
    test.add_argument("--at", help="when the item arrives, ISO 8601 with a time zone (default: now)")
    test.add_argument("--offline", action="store_true", help="the spec alone: no store, no connection checks")
    remote_options(test)
    test.set_defaults(fn=cmd_test)

    plan = sub.add_parser(
        "plan",
        help="compare a folder of workflow files with a team's workflows; exit 0: nothing to do, 2: changes, 1: errors",
    )
    _folder_options(plan)
    plan.add_argument("--out", help="write the plan to this file, for apply --plan-file")
    plan.set_defaults(fn=cmd_plan)

    apply = sub.add_parser("apply", help="make a team's workflows match a folder of workflow files, in one transaction")
    _folder_options(apply)
    apply.add_argument("--plan-file", help="apply only if the store and the files are as this plan saw them")
    apply.set_defaults(fn=cmd_apply)


def _item_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--caption", help="the item's caption")
    p.add_argument("--media", action="append", help="kipu-media:ID from the media library, or an https URL; repeatable")
    p.add_argument("--item", help="the item as a JSON or YAML file (caption, media, title, ...); - for stdin")


def _folder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="the folder of workflow files (.yaml, .yml, .json; read recursively)")
    p.add_argument("--team", help="the team the folder describes (default: the team the files name)")
    p.add_argument("--prune", action="store_true", help="delete the team's workflows no file names (else: pause)")
    remote_options(p)
