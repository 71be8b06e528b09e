"""The kipu command as a user runs it: db upgrade, workflow validate/import/export, keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from kipu.store.migrate import head

from tests.helpers import REPO, demo_doc


def kipu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kipu.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=120,
    )


def test_db_upgrade_can_run_twice(tmp_path: Path) -> None:
    env = {"KIPU_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    for _ in range(2):
        out = kipu("db", "upgrade", env=env)
        assert out.returncode == 0, out.stderr
        assert f"revision {head()}" in out.stdout


def test_validate_ok_and_errors(tmp_path: Path) -> None:
    ok = kipu("workflow", "validate", "--offline", "include/demo/workflow.yaml")
    assert ok.returncode == 0 and "valid" in ok.stdout
    doc = demo_doc()
    doc["steps"][3] = {"id": "wait_morning", "type": "delay", "config": {"delay_until_time": "25:00"}}
    doc["steps"][2]["config"]["if_true_steps"] = ["wait_morning", "team_review"]
    doc["timezone"] = "Nowhere/Land"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    out = kipu("workflow", "validate", "--offline", str(bad))
    assert out.returncode == 1
    assert "steps[3] (delay 'wait_morning').config.delay_until_time: '25:00' is not a valid HH:MM time" in out.stderr
    assert "timezone: 'Nowhere/Land' is not a valid IANA time zone name" in out.stderr


def test_import_checks_team_connections_and_approvers(tmp_path: Path, sqlite_url: str) -> None:
    env = {"KIPU_DATABASE_URL": sqlite_url}
    assert (
        kipu(
            "team",
            "create",
            "Demo",
            "--slug",
            "demo",
            "--owner",
            "owner@demo.test",
            "--owner-airflow-user",
            "admin",
            env=env,
        ).returncode
        == 0
    )
    out = kipu("workflow", "import", "include/demo/workflow.yaml", env=env)
    assert out.returncode == 1
    assert "trigger.connection_id: 'feed:demo' is not a connection of team 'demo'" in out.stderr
    assert "steps[6] (publish 'publish_outbox').connection_id: 'outbox:demo' is not a connection" in out.stderr
    kipu("connection", "add", "--team", "demo", "--platform", "feed", "--user-id", "demo", env=env)
    kipu("connection", "add", "--team", "demo", "--platform", "outbox", "--user-id", "demo", env=env)
    doc = demo_doc()
    doc["steps"][4]["config"]["approvers"] = ["admin", "stranger@evil.test"]
    f = tmp_path / "w.yaml"
    f.write_text(yaml.safe_dump(doc))
    out = kipu("workflow", "import", str(f), env=env)
    assert "config.approvers[1]: 'stranger@evil.test' is not a member of team 'demo'" in out.stderr

    out = kipu("workflow", "import", "include/demo/workflow.yaml", env=env)
    assert out.returncode == 0, out.stderr
    wf_id = out.stdout.strip()
    exported = kipu("workflow", "export", wf_id, "-o", str(tmp_path / "out.yaml"), env=env)
    assert exported.returncode == 0
    reimported = kipu("workflow", "import", str(tmp_path / "out.yaml"), env=env)
    assert reimported.stdout.strip() == wf_id
    from kipu.specs.workflow import parse_workflow

    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == parse_workflow(demo_doc()).to_document()


def test_missing_key_is_a_startup_error(sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_KEY"} | {"KIPU_DATABASE_URL": sqlite_url}
    out = subprocess.run(
        [sys.executable, "-m", "kipu.cli", "keys", "rotate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 3 and "ENCRYPTION_KEY is not set" in out.stderr


def test_ai_usage_reports_team_totals(demo_team: dict, store_url: str) -> None:
    from kipu.ai.usage import record_usage
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope

    with session_scope() as s:
        team = find_team(s, "demo")
        for tin, tout, cached in ((100, 20, False), (0, 0, True), (50, 10, False)):
            record_usage(
                s,
                team_id=team.id,
                run_id=None,
                purpose="rewrite",
                model="gpt-4o-mini",
                tokens_in=tin,
                tokens_out=tout,
                cost_usd=0.001 * tin,
                cached=cached,
            )
    out = kipu("ai", "usage", "--json", env={"KIPU_DATABASE_URL": store_url})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {"team": "demo", "calls": 3, "cache_hits": 1, "tokens_in": 150, "tokens_out": 30, "cost_usd": 0.15}
    ]
    table = kipu("ai", "usage", "--today", env={"KIPU_DATABASE_URL": store_url}).stdout
    assert "demo" in table and "150" in table


def test_oauth_state_and_code_may_start_with_a_dash() -> None:
    # URL-safe base64 starts with "-" one time in 64; argparse alone reads it as an option.
    from kipu.cli import parse_args

    args = parse_args(["connect", "finish", "tiktok", "--state", "-Ab3", "--code", "-x*0!9"])
    assert (args.state, args.code) == ("-Ab3", "-x*0!9")
    args = parse_args(["connect", "finish", "tiktok", "--state=-s", "--code", "c"])
    assert (args.state, args.code) == ("-s", "c")


def test_every_command_has_help_with_an_example_and_no_markup() -> None:
    import argparse

    from kipu.cli import build_parser

    def leaves(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(path, parser)]
        return [leaf for name, child in subs[0].choices.items() for leaf in leaves(child, f"{path} {name}")]

    found = leaves(build_parser(), "kipu")
    assert {"kipu plan", "kipu apply", "kipu workflow test", "kipu runs list", "kipu connection health"} <= {
        p for p, _ in found
    }
    for path, parser in found:
        text = parser.format_help()
        assert "\nexample:\n  " in text, f"{path} --help has no example"
        for markup in ("``", ":class:", ":func:", ":meth:", ".. "):
            assert markup not in text, f"{path} --help shows {markup!r}"
        assert parser.description, f"{path} --help has no description"


def test_user_add_creates_or_links_a_profile_and_one_airflow_login_is_one_person(sqlite_url: str) -> None:
    env = {"KIPU_DATABASE_URL": sqlite_url}
    first = kipu("user", "add", "bo@acme.test", "--name", "Bo", env=env)
    assert first.returncode == 0, first.stderr
    again = kipu("user", "add", "bo@acme.test", "--airflow-user", "bo", env=env)
    assert again.returncode == 0 and again.stdout == first.stdout  # the same profile, now with its login
    taken = kipu("user", "add", "eve@evil.test", "--airflow-user", "bo", env=env)
    assert taken.returncode != 0 and "Airflow user 'bo' is already the login of 'bo@acme.test'" in taken.stderr

    from kipu.store.engine import reset_engines, session_scope
    from kipu.store.models import Profile
    from sqlalchemy import select

    reset_engines()
    with session_scope() as s:
        rows = s.execute(select(Profile.email, Profile.name, Profile.airflow_username)).all()
    assert [tuple(r) for r in rows] == [("bo@acme.test", "Bo", "bo")]


def test_user_add_treats_emails_in_any_case_as_one_person_and_lists_their_teams(sqlite_url: str) -> None:
    env = {"KIPU_DATABASE_URL": sqlite_url}
    assert kipu("user", "add", "Bo@acme.test", "--airflow-user", "bo", env=env).returncode == 0
    again = kipu("user", "add", "bo@acme.test", "--airflow-user", "bo", "--name", "Bo", env=env)
    assert again.returncode == 0, again.stderr
    made = kipu(
        "team", "create", "Acme", "--slug", "acme", "--owner", "ana@acme.test", "--member", "Bo@acme.test", env=env
    )
    assert made.returncode == 0, made.stderr
    listed = kipu("user", "add", "BO@ACME.TEST", env=env)
    assert listed.returncode == 0 and "Bo@acme.test is a member of: acme (member)" in listed.stderr

    from kipu.store.engine import reset_engines, session_scope
    from kipu.store.models import Profile
    from sqlalchemy import select

    reset_engines()
    with session_scope() as s:
        rows = s.execute(select(Profile.email, Profile.name, Profile.airflow_username).order_by(Profile.email)).all()
    assert [tuple(r) for r in rows] == [("Bo@acme.test", "Bo", "bo"), ("ana@acme.test", "ana", None)]
