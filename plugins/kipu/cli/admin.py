"""``kipu`` commands that work on the store directly: migrations, workflow files, keys, teams, tokens, connecting
accounts, the API server, AI usage and the DAG set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def load_file(path: str) -> Any:
    """A workflow or item file (YAML or JSON; - for stdin) through the one document loader: size, nesting, aliases
    and duplicate keys bounded. A problem exits 1 with the file's name."""
    from kipu.specs.document import MAX_FILE_BYTES, DocumentError, load_document

    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SystemExit(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return load_document(raw, path)
    except DocumentError as exc:
        raise SystemExit("\n".join(exc.errors)) from None


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from kipu.config import database_url
    from kipu.store.migrate import current, upgrade

    upgrade()
    url = database_url()
    print(f"Kipu store at revision {current()} ({url.split('@')[-1]})")
    return 0


def cmd_workflow_validate(args: argparse.Namespace) -> int:
    from kipu.specs.workflow import WorkflowSpecError
    from kipu.store.workflows import validate_document

    data = load_file(args.file)
    try:
        if args.offline:
            validate_document(None, data)
        else:
            from kipu.store.engine import session_scope

            with session_scope() as session:
                validate_document(session, data)
    except WorkflowSpecError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid")
    return 0


def cmd_workflow_import(args: argparse.Namespace) -> int:
    from kipu.specs.workflow import WorkflowSpecError
    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    data = load_file(args.file)
    if args.team:
        data["team"] = args.team
    try:
        with session_scope() as session:
            wf = save_workflow(session, data)
            print(wf.id)
    except WorkflowSpecError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_workflow_export(args: argparse.Namespace) -> int:
    from kipu.store.engine import session_scope
    from kipu.store.workflows import export_workflow

    with session_scope() as session:
        try:
            doc = export_workflow(session, args.id, args.team)
        except LookupError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    text = (
        json.dumps(doc, indent=2, ensure_ascii=False)
        if args.format == "json"
        else yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    )
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from kipu.store.crypto import generate_key

    print(generate_key())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from kipu.store.accounts import rotate_tokens
    from kipu.store.engine import session_scope

    with session_scope() as session:
        n = rotate_tokens(session)
    print(f"re-encrypted the tokens of {n} connection(s) under the primary key")
    return 0


def cmd_team_create(args: argparse.Namespace) -> int:
    from kipu.store.accounts import add_member, get_or_create_profile, get_or_create_team
    from kipu.store.engine import session_scope

    with session_scope() as session:
        owner = get_or_create_profile(session, args.owner, airflow_username=args.owner_airflow_user)
        team = get_or_create_team(session, args.name, owner, args.slug)
        for spec in args.member or []:
            email, _, role = spec.partition(":")
            add_member(session, team, get_or_create_profile(session, email), role or "member")
        print(team.id)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create a person's profile, or update its name and Airflow login; it joins teams by accepting invitations."""
    from sqlalchemy import select

    from kipu.store.accounts import get_or_create_profile
    from kipu.store.engine import session_scope
    from kipu.store.invitations import normal_email
    from kipu.store.models import Profile, Team, TeamMember

    wanted = normal_email(args.email)
    with session_scope() as session:
        # E-mails compare as invitations compare them: Bo@x and bo@x are one person.
        same = [p for p in session.scalars(select(Profile)) if p.email and normal_email(p.email) == wanted]
        if len(same) > 1:
            raise SystemExit(f"{len(same)} profiles have the e-mail {wanted!r}: {', '.join(p.email for p in same)}")
        if args.airflow_user:
            taken = session.scalar(
                select(Profile.email)
                .where(Profile.airflow_username == args.airflow_user)
                .where(Profile.id != (same[0].id if same else None))
            )
            if taken is not None:
                raise SystemExit(f"Airflow user {args.airflow_user!r} is already the login of {taken!r}")
        profile = same[0] if same else get_or_create_profile(session, args.email, args.name)
        if args.name:
            profile.name = args.name
        if args.airflow_user:
            profile.airflow_username = args.airflow_user
        teams = session.execute(
            select(Team.slug, TeamMember.role)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(TeamMember.user_id == profile.id)
        ).all()
        if teams:  # an existing profile may have been put in teams before invitations existed: say which
            listed = ", ".join(f"{slug} ({role})" for slug, role in sorted(teams))
            print(f"{profile.email} is a member of: {listed}", file=sys.stderr)
        print(profile.id)
    return 0


def cmd_connection_add(args: argparse.Namespace) -> int:
    from kipu.store.accounts import find_team, upsert_connection
    from kipu.store.engine import session_scope

    with session_scope() as session:
        team = find_team(session, args.team)
        if team is None:
            print(f"team '{args.team}' does not exist", file=sys.stderr)
            return 1
        meta = dict(kv.split("=", 1) for kv in args.meta or [])
        conn = upsert_connection(
            session,
            team,
            args.platform,
            args.user_id,
            username=args.username,
            access_token=args.access_token,
            metadata=meta,
        )
        print(conn.id)
    return 0


def _team(session, ref: str):  # type: ignore[no-untyped-def]
    from kipu.store.accounts import find_team

    team = find_team(session, ref)
    if team is None:
        raise SystemExit(f"team '{ref}' does not exist")
    return team


def cmd_connect_bluesky(args: argparse.Namespace) -> int:
    """Sign in with an app password (read from an environment variable, never from the command line)."""
    import os

    from pydantic import SecretStr

    from kipu.platforms.bluesky.hook import connect_with_app_password
    from kipu.store.engine import session_scope

    password = os.environ.get(args.password_env)
    if not password:
        raise SystemExit(f"set the app password in ${args.password_env} (Bluesky → Settings → App passwords)")
    with session_scope() as session:
        conn = connect_with_app_password(
            session, _team(session, args.team), args.service, args.handle, SecretStr(password)
        )
        print(conn.id)
    return 0


def cmd_connect_start(args: argparse.Namespace) -> int:
    from kipu.auth import oauth
    from kipu.store.engine import session_scope

    with session_scope() as session:
        app = oauth.app_for(args.platform, args.instance, session)
        print(oauth.begin(session, app, _team(session, args.team)))
    return 0


def cmd_connect_finish(args: argparse.Namespace) -> int:
    """The OAuth callback by hand: the ``state`` and ``code`` from the redirect URL. Prints one connection id per
    account connected (Facebook: one per Page)."""
    from kipu.auth import oauth
    from kipu.store.engine import session_scope

    with session_scope() as session:
        for conn in oauth.finish(session, args.platform, args.state, args.code, args.api_base):
            print(conn.id, conn.platform_username or conn.platform_user_id, sep="\t")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    """Print a new API token once; only its hash is stored."""
    from sqlalchemy import select

    from kipu.store.engine import session_scope
    from kipu.store.models import Profile
    from kipu.store.tokens import create_token

    with session_scope() as s:
        profile = s.scalar(select(Profile).where(Profile.email == args.user))
        if profile is None:
            raise SystemExit(f"no profile with email {args.user!r}")
        row, plain = create_token(s, profile, args.name)
        print(plain)
        print(f"token {row.id} ({row.prefix}…) for {args.user}; it is shown only now", file=sys.stderr)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    import uuid

    from kipu.store.engine import session_scope
    from kipu.store.tokens import revoke_token

    with session_scope() as s:
        if not revoke_token(s, uuid.UUID(args.token_id)):
            raise SystemExit(f"no active token {args.token_id}")
    return 0


def cmd_api_serve(args: argparse.Namespace) -> int:
    """The /kipu API alone, for development (in production the plugin mounts it in Airflow's API server)."""
    import uvicorn
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.common.http_access_log import HttpAccessLogMiddleware
    from fastapi import FastAPI

    from kipu.api.access_log import RedactTokensInQuery
    from kipu.api.app import create_app
    from kipu.api.gc_tuning import tune_gc

    root = FastAPI(title="Kipu (standalone)")
    # Approvals are answered through Airflow's HITL handler, which asks the auth manager who answered.
    init_auth_manager(root)
    root.mount("/kipu", create_app())
    # The access log as in Airflow's API server: Airflow's middleware, with Kipu tokens blanked before it.
    root.add_middleware(RedactTokensInQuery)
    root.add_middleware(HttpAccessLogMiddleware)
    tune_gc()
    uvicorn.run(root, host=args.host, port=args.port, access_log=False)
    return 0


def cmd_ai_usage(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, time

    from kipu.ai.usage import team_totals
    from kipu.store.engine import session_scope

    since = datetime.combine(datetime.now(UTC).date(), time.min, tzinfo=UTC) if args.today else None
    with session_scope() as s:
        rows = team_totals(s, since)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'team':<20} {'calls':>7} {'cached':>7} {'tokens in':>10} {'tokens out':>10} {'cost USD':>10}")
    for r in rows:
        print(
            f"{r['team'] or '-':<20} {r['calls']:>7} {r['cache_hits']:>7} {r['tokens_in']:>10} "
            f"{r['tokens_out']:>10} {r['cost_usd']:>10.4f}"
        )
    return 0


def _dags_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder"))


def cmd_dags_shards(args: argparse.Namespace) -> int:
    from kipu.factory.shards import shard_count, write_files

    count = args.count or shard_count()
    folder = _dags_folder(args.dir)
    done = write_files(folder, count)
    print(f"{count} shard files in {folder}: {len(done.written)} written, {len(done.removed)} removed")
    if args.count and args.count != shard_count():
        print(f"set KIPU_DAG_SHARDS={args.count} for every Airflow component (it is {shard_count()} here)")
    return 0


def cmd_dags_doctor(args: argparse.Namespace) -> int:
    from kipu.factory.doctor import examine, render
    from kipu.factory.shards import shard_count

    report = examine(_dags_folder(args.dir), shard_count())
    print(json.dumps(report.to_json(), indent=2) if args.json else render(report))
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from kipu import demo

    return demo.main(args)


def register(sub: argparse._SubParsersAction, wf: argparse._SubParsersAction, conn: argparse._SubParsersAction) -> None:
    """The store, keys, teams, tokens, connecting accounts, the API server, AI usage, the DAG set and the demo."""
    from kipu.specs.common import OAUTH_PLATFORMS

    db = sub.add_parser("db", help="the Kipu store").add_subparsers(dest="sub", required=True)
    db.add_parser("upgrade", help="migrate the store to the latest schema (idempotent)").set_defaults(fn=cmd_db_upgrade)

    v = wf.add_parser("validate", help="validate a YAML/JSON workflow file; prints every error")
    v.add_argument("file")
    v.add_argument("--offline", action="store_true", help="check the spec only, not team members and connections")
    v.set_defaults(fn=cmd_workflow_validate)
    i = wf.add_parser("import", help="store a workflow file and print its id")
    i.add_argument("file")
    i.add_argument("--team", help="team slug or id (overrides the file's 'team')")
    i.set_defaults(fn=cmd_workflow_import)
    e = wf.add_parser("export", help="write a stored workflow back out")
    e.add_argument("id", help="workflow id or slug")
    e.add_argument("--format", choices=("yaml", "json"), default="yaml")
    e.add_argument("--team", help="team slug or id, when several teams use the slug (or give TEAM/SLUG)")
    e.add_argument("-o", "--output")
    e.set_defaults(fn=cmd_workflow_export)

    keys = sub.add_parser("keys", help="token encryption keys").add_subparsers(dest="sub", required=True)
    keys.add_parser("generate", help="print a new Fernet key").set_defaults(fn=cmd_keys_generate)
    keys.add_parser("rotate", help="re-encrypt every token under the first key of ENCRYPTION_KEY").set_defaults(
        fn=cmd_keys_rotate
    )

    team = sub.add_parser("team", help="teams").add_subparsers(dest="sub", required=True)
    t = team.add_parser("create", help="create a team (idempotent) and print its id")
    t.add_argument("name")
    t.add_argument("--slug")
    t.add_argument("--owner", required=True, help="owner e-mail")
    t.add_argument("--owner-airflow-user", help="the owner's Airflow username (answers approvals)")
    t.add_argument("--member", action="append", help="EMAIL[:ROLE], repeatable")
    t.set_defaults(fn=cmd_team_create)

    user = sub.add_parser("user", help="people (profiles)").add_subparsers(dest="sub", required=True)
    ua = user.add_parser("add", help="create or update a profile and print its id; teams invite it by e-mail")
    ua.add_argument("email")
    ua.add_argument("--name")
    ua.add_argument("--airflow-user", help="their Airflow username: Kipu's pages and approvals use it")
    ua.set_defaults(fn=cmd_user_add)

    c = conn.add_parser("add", help="add or update a connection and print its id")
    c.add_argument("--team", required=True)
    c.add_argument("--platform", required=True)
    c.add_argument("--user-id", required=True, help="platform user id (feed: its URL or path)")
    c.add_argument("--username")
    c.add_argument("--access-token", help="stored encrypted")
    c.add_argument("--meta", action="append", help="KEY=VALUE metadata, repeatable")
    c.set_defaults(fn=cmd_connection_add)

    connect = sub.add_parser("connect", help="connect accounts").add_subparsers(dest="sub", required=True)
    b = connect.add_parser("bluesky", help="connect a Bluesky account with an app password")
    b.add_argument("--team", required=True)
    b.add_argument("--handle", required=True, help="e.g. ana.bsky.social")
    b.add_argument("--service", default="https://bsky.social", help="the account's PDS")
    b.add_argument("--password-env", default="BLUESKY_APP_PASSWORD", help="environment variable with the app password")
    b.set_defaults(fn=cmd_connect_bluesky)
    cs = connect.add_parser("start", help="print the OAuth authorization URL for a platform")
    cs.add_argument("platform", choices=OAUTH_PLATFORMS)
    cs.add_argument("--team", required=True)
    cs.add_argument("--instance", help="a federated platform's instance, e.g. mastodon.social")
    cs.set_defaults(fn=cmd_connect_start)
    cf = connect.add_parser("finish", help="complete an OAuth authorization with the state and code it returned")
    cf.add_argument("platform", choices=OAUTH_PLATFORMS)
    cf.add_argument("--state", required=True)
    cf.add_argument("--code", required=True)
    cf.add_argument(
        "--api-base",
        help="the platform API's base URL (default: the app's extra.api_base_url, else the platform's own)",
    )
    cf.set_defaults(fn=cmd_connect_finish)

    tokens = sub.add_parser("tokens", help="/kipu API tokens").add_subparsers(dest="sub", required=True)
    tc = tokens.add_parser("create", help="create an API token for a profile and print it (shown once)")
    tc.add_argument("--user", required=True, help="the profile's email")
    tc.add_argument("--name", default="cli", help="a label for the token")
    tc.set_defaults(fn=cmd_tokens_create)
    tr = tokens.add_parser("revoke", help="revoke an API token by id")
    tr.add_argument("token_id")
    tr.set_defaults(fn=cmd_tokens_revoke)

    api = sub.add_parser("api", help="the /kipu REST API").add_subparsers(dest="sub", required=True)
    sv = api.add_parser("serve", help="serve /kipu alone with uvicorn (development)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8081)
    sv.set_defaults(fn=cmd_api_serve)

    ai = sub.add_parser("ai", help="AI captions").add_subparsers(dest="sub", required=True)
    u = ai.add_parser("usage", help="AI calls, cache hits, tokens and estimated cost per team")
    u.add_argument("--today", action="store_true", help="since 00:00 UTC only")
    u.add_argument("--json", action="store_true", help="machine-readable output")
    u.set_defaults(fn=cmd_ai_usage)

    dags = sub.add_parser("dags", help="the workflow DAG set and its shard files").add_subparsers(
        dest="sub", required=True
    )
    sh = dags.add_parser(
        "shards",
        help="write the shard DAG files (KIPU_DAG_SHARDS of them) and remove extra ones",
    )
    sh.add_argument("--count", type=int, help="how many shards (default: KIPU_DAG_SHARDS, 32)")
    sh.add_argument("--dir", help="the DAG folder (default: Airflow's [core] dags_folder)")
    sh.set_defaults(fn=cmd_dags_shards)
    dd = dags.add_parser(
        "doctor",
        help="parse every shard as the dag-processor does; report sizes, parse times, snapshots and import errors; "
        "exit 1 if a problem is listed",
    )
    dd.add_argument("--dir", help="the DAG folder (default: Airflow's [core] dags_folder)")
    dd.add_argument("--json", action="store_true", help="machine-readable output")
    dd.set_defaults(fn=cmd_dags_doctor)

    d = sub.add_parser("demo", help="run the end-to-end demo (make demo)")
    d.add_argument("--no-airflow", action="store_true", help=argparse.SUPPRESS)
    d.set_defaults(fn=cmd_demo)
