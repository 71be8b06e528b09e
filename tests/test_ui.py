"""Kipu's pages inside Airflow's UI, through Airflow's own API server app: one login (Airflow's session cookie
decides who you are; Kipu's team roles what you may do), no Kipu token in the browser, CSRF on every form, each
team seeing only its own objects, and the tabs on Airflow's DAG and DAG-run pages."""

from __future__ import annotations

from typing import Any

import pytest
from kipu.store.accounts import get_or_create_profile
from kipu.store.engine import session_scope
from kipu.store.models import Profile, Workflow
from kipu.store.workflows import save_workflow
from sqlalchemy import select, update

from tests.api_helpers import session_cookie
from tests.helpers import demo_doc


@pytest.fixture
def people(api: Any) -> dict[str, str]:
    """Airflow users mapped to Kipu profiles: admin is demo's owner (seeded), viewer and boss get a user each."""
    with session_scope() as s:
        get_or_create_profile(s, "viewer@demo.test").airflow_username = "viewer"
        get_or_create_profile(s, "boss@other.test").airflow_username = "boss"
        save_workflow(s, demo_doc())
    return {name: session_cookie(name) for name in ("admin", "viewer", "boss", "stranger")}


def get(api: Any, path: str, who: str | None, people: dict[str, str]) -> Any:
    api.cookies.clear()
    if who:
        api.cookies.set("_token", people[who])
    return api.get(path, follow_redirects=False)


def test_signed_out_is_sent_to_airflows_login_and_cannot_post(api: Any, people: dict[str, str]) -> None:
    resp = get(api, "/kipu/ui/workflows", None, people)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/auth/login?next=")
    api.cookies.clear()
    assert api.post("/kipu/ui/workflows/x/pause", data={"csrf": "x"}).status_code == 401
    api.cookies.set("_token", people["admin"][:-4] + "AAAA")  # a forged session is no session
    assert api.get("/kipu/ui/workflows", follow_redirects=False).status_code == 303


def test_the_owner_sees_controls_and_a_viewer_sees_none(api: Any, people: dict[str, str]) -> None:
    owner = get(api, "/kipu/ui/workflows", "admin", people)
    assert owner.status_code == 200 and "kipu.demo.demo_crosspost" in owner.text
    assert (
        ">Pause</button>" in owner.text and ">Duplicate</button>" in owner.text and "signed in as admin" in owner.text
    )
    assert "kipu_" not in owner.text and "Bearer" not in owner.text  # no Kipu API token ever reaches the browser
    viewer = get(api, "/kipu/ui/workflows", "viewer", people)
    assert viewer.status_code == 200 and "kipu.demo.demo_crosspost" in viewer.text
    assert "<button" not in viewer.text.replace("<button>Go</button>", "")
    conns = get(api, "/kipu/ui/connections", "viewer", people)
    assert "outbox" in conns.text and "Delete…" not in conns.text
    stranger = get(api, "/kipu/ui/workflows", "stranger", people)
    assert "is in no Kipu team yet" in stranger.text


def test_another_teams_objects_never_appear(api: Any, people: dict[str, str]) -> None:
    boss = get(api, "/kipu/ui/workflows?team=demo", "boss", people)  # asking for demo shows their own team
    assert boss.status_code == 200 and "kipu.demo." not in boss.text
    posts = get(api, "/kipu/ui/posts?team=demo", "boss", people)
    assert posts.status_code == 200 and "Demo cross-post" not in posts.text and 'value="other" selected' in posts.text
    tab = get(api, "/kipu/ui/dag?dag_id=kipu.demo.demo_crosspost", "boss", people)
    assert "not a workflow of your teams" in tab.text and "steps:" not in tab.text
    mine = get(api, "/kipu/ui/dag?dag_id=kipu.demo.demo_crosspost", "viewer", people)
    assert "skip_ads_and_text" in mine.text and "publish_outbox" in mine.text


def test_forms_need_this_sessions_csrf_token_and_act_through_the_api(api: Any, people: dict[str, str]) -> None:
    with session_scope() as s:
        wf_id = s.scalar(select(Workflow.id).where(Workflow.slug == "demo_crosspost"))
    page = get(api, "/kipu/ui/workflows", "admin", people)
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    forged = api.post(f"/kipu/ui/workflows/{wf_id}/pause?team=demo", data={"csrf": "0" * 40}, follow_redirects=False)
    assert forged.status_code == 403
    done = api.post(f"/kipu/ui/workflows/{wf_id}/pause?team=demo", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and "Workflow+paused" in done.headers["location"]
    with session_scope() as s:
        assert s.get(Workflow, wf_id).status == "paused"
    # A viewer's session has a valid token but not the role: the API's 403 comes back as a message.
    viewer_page = get(api, "/kipu/ui/posts", "viewer", people)
    viewer_token = (
        viewer_page.text.split('name="csrf" value="')[1].split('"')[0] if 'name="csrf"' in viewer_page.text else None
    )
    api.cookies.set("_token", people["viewer"])
    from kipu.ui.session import csrf_token

    refused = api.post(
        f"/kipu/ui/workflows/{wf_id}/activate?team=demo",
        data={"csrf": viewer_token or csrf_token(people["viewer"])},
        follow_redirects=False,
    )
    assert (
        refused.status_code == 303
        and "err=" in refused.headers["location"]
        and "member+role" in refused.headers["location"]
    )


def test_the_plugin_puts_kipu_in_airflows_navigation_and_tabs(api: Any, people: dict[str, str]) -> None:
    api.cookies.clear()
    views = api.get("/api/v2/plugins", headers={"Authorization": f"Bearer {people['admin']}"}).json()
    kipu = next(p for p in views["plugins"] if p["name"] == "kipu")
    by_route = {v["url_route"]: v for v in kipu["external_views"]}
    assert (
        by_route["kipu-workflows"]["href"] == "/kipu/ui/workflows" and by_route["kipu-workflows"]["category"] == "Kipu"
    )
    assert by_route["kipu"]["destination"] == "dag" and "{DAG_ID}" in by_route["kipu"]["href"]
    assert by_route["kipu-item"]["destination"] == "dag_run" and "{RUN_ID}" in by_route["kipu-item"]["href"]


def test_run_notes_read_like_a_content_log() -> None:
    from types import SimpleNamespace as Post

    from kipu.operators.finalize import run_note

    two = [Post(platform="x", status="published"), Post(platform="bluesky", status="published")]
    assert run_note("Market tour", "completed", None, two) == "Market tour — published to 2 (x, bluesky)"
    filtered = "filtered out by 'skip_ads_and_text': hashtag #ad is present"
    assert (
        run_note("Sponsored", "skipped", filtered, [])
        == "Sponsored — filtered by 'skip_ads_and_text': hashtag #ad is present"
    )
    assert run_note("Draft", "skipped", "rejected by ana at 'review'", []) == "Draft — rejected by ana at 'review'"
    failed = run_note(None, "failed", "step 'publish' failed: HTTP 500", [])
    assert failed == "item — failed: step 'publish' failed: HTTP 500"
    assert len(run_note("x" * 5000, "failed", "y" * 5000, [])) <= 1000


def test_run_with_a_test_item_and_export_the_file(api: Any, people: dict[str, str]) -> None:
    from kipu.store.models import WorkflowRun

    with session_scope() as s:
        wf_id = s.scalar(select(Workflow.id).where(Workflow.slug == "demo_crosspost"))
    page = get(api, "/kipu/ui/workflows", "admin", people)
    assert "Run with a test item" in page.text and 'label for="item-' in page.text
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    ran = api.post(
        f"/kipu/ui/workflows/{wf_id}/run?team=demo",
        data={"csrf": token, "caption": "Hello from the UI"},
        follow_redirects=False,
    )
    assert ran.status_code == 303 and "Test+item+recorded" in ran.headers["location"]
    with session_scope() as s:
        (run,) = s.scalars(select(WorkflowRun).where(WorkflowRun.workflow_id == wf_id))
        assert run.source == "manual" and run.trigger_data["caption"] == "Hello from the UI"
    listed = get(api, "/kipu/ui/workflows", "viewer", people).text  # the last run and the month's outcome counts
    assert "Runs, 30 days" in listed and f"1 {run.status}" in listed and "never" not in listed
    exported = get(api, f"/kipu/ui/workflows/{wf_id}/export.yaml", "viewer", people)
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert "skip_ads_and_text" in exported.text and exported.text.startswith("name:")
    assert get(api, f"/kipu/ui/workflows/{wf_id}/export.yaml", "boss", people).status_code == 303  # not theirs


def x_app_env(server_url: str, base: str) -> str:
    """An X OAuth app whose endpoints are the fake at ``server_url``, redirecting back to Kipu at ``base``."""
    import json

    from tests.fakes.x_server import XState

    st = XState()
    return json.dumps(
        {
            "conn_type": "kipu_x_app",
            "login": st.client_id,
            "password": st.client_secret,
            "extra": {
                "redirect_uri": f"{base}/kipu/api/auth/callback/x",
                "authorize_url": f"{server_url}/i/oauth2/authorize",
                "token_url": f"{server_url}/2/oauth2/token",
                "api_base_url": server_url,
            },
        }
    )


def test_connect_is_bound_to_the_session_that_started_it(
    api: Any, people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlparse

    import httpx
    from kipu.store.models import Connection

    from tests.fakes.x_server import XServer

    with XServer() as x:
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_X_APP", x_app_env(x.url, "http://testserver"))
        page = get(api, "/kipu/ui/connections", "admin", people)
        assert ">Connect x</button>" in page.text and 'for="bsky-password"' in page.text
        token = page.text.split('name="csrf" value="')[1].split('"')[0]
        started = api.post("/kipu/ui/connections/connect/x?team=demo", data={"csrf": token}, follow_redirects=False)
        assert started.status_code == 303 and started.headers["location"].startswith(x.url)
        consent = httpx.get(started.headers["location"], follow_redirects=False)  # the platform's consent page
        back = urlparse(consent.headers["location"])
        callback = f"{back.path}?{back.query}"
        # A link crafted by one team's admin, opened by someone else (signed in or not), connects nothing.
        for who in ("viewer", "boss", None):
            victim = get(api, callback, who, people)
            assert victim.status_code == 400 and "another person's signed-in session" in victim.text
        done = get(api, callback, "admin", people)
        assert done.status_code == 303 and done.headers["location"].startswith("/kipu/ui/connections?team=demo&msg=")
        with session_scope() as s:
            assert s.scalars(select(Connection).where(Connection.platform == "x")).one().team_id is not None
        again = get(api, callback, "admin", people)  # the state is single use
        assert again.status_code == 400 and "unknown or already used" in again.text


def test_an_api_started_connect_is_bound_to_the_callers_own_session(
    api: Any, people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Team other's admin starts connecting X through the API and hands the link to someone else: whoever opens
    it, signed in as anyone else or not at all, connects nothing; only the admin's own signed-in browser does. A
    caller whose profile has no Airflow user cannot start (409): nothing could bind the flow."""
    from urllib.parse import urlparse

    import httpx
    from kipu.store.accounts import find_team
    from kipu.store.models import Connection

    from tests.api_helpers import token_for
    from tests.fakes.x_server import XServer

    def landed() -> int:
        with session_scope() as s:
            where = (Connection.platform == "x", Connection.team_id == find_team(s, "other").id)
            return len(s.scalars(select(Connection).where(*where)).all())

    with XServer() as x:
        monkeypatch.setenv("AIRFLOW_CONN_KIPU_X_APP", x_app_env(x.url, "http://testserver"))
        started = api.post(
            "/kipu/api/connections/oauth/x", params={"team": "other"}, headers=token_for("boss@other.test")
        )
        assert started.status_code == 200, started.text
        consent = httpx.get(started.json()["authorization_url"], follow_redirects=False)  # someone else consents
        back = urlparse(consent.headers["location"])
        callback = f"{back.path}?{back.query}"
        for who in ("admin", "viewer", None):
            victim = get(api, callback, who, people)
            assert victim.status_code == 400 and "another person's signed-in session" in victim.text, victim.text
        assert landed() == 0
        done = get(api, callback, "boss", people)
        assert done.status_code == 200 and landed() == 1, done.text
        set_user = update(Profile).where(Profile.email == "boss@other.test")
        with session_scope() as s:
            s.execute(set_user.values(airflow_username=None))
        try:
            unbound = api.post(
                "/kipu/api/connections/oauth/x", params={"team": "other"}, headers=token_for("boss@other.test")
            )
        finally:
            with session_scope() as s:
                s.execute(set_user.values(airflow_username="boss"))
        assert unbound.status_code == 409 and "Airflow user" in unbound.text


def test_the_bluesky_form_names_what_is_wrong(
    api: Any, people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KIPU_EGRESS_ALLOW_PRIVATE")
    page = get(api, "/kipu/ui/connections", "admin", people)
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    form = {"csrf": token, "handle": "ana.test", "app_password": "abcd-efgh-ijkl-mnop", "service": "https://10.0.0.7"}
    sent = api.post("/kipu/ui/connections/bluesky?team=demo", data=form, follow_redirects=False)
    assert sent.status_code == 303 and "err=" in sent.headers["location"] and "service" in sent.headers["location"]
    assert "abcd-efgh" not in sent.headers["location"]


def test_validate_checks_a_file_as_import_would_and_writes_nothing(api: Any, roles: dict) -> None:
    import yaml as pyyaml

    good = pyyaml.safe_dump(demo_doc(slug="checked_only"))
    ok = api.post("/kipu/api/workflows/validate", json={"text": good}, headers=roles["viewer"])
    assert ok.status_code == 200 and ok.json() == {"valid": True, "errors": []}
    broken = api.post("/kipu/api/workflows/validate", json={"text": "name: [unclosed\n"}, headers=roles["viewer"])
    assert broken.json()["valid"] is False and "line" in broken.json()["errors"][0]
    theirs = api.post("/kipu/api/workflows/validate", json={"text": good}, headers=roles["outsider"])
    assert theirs.json()["errors"] == ["team: 'demo' is not one of your teams"]
    with session_scope() as s:
        assert s.scalar(select(Workflow.id).where(Workflow.slug == "checked_only")) is None


def test_a_media_preview_is_served_to_its_team_only(api: Any, people: dict[str, str], tmp_path: Any) -> None:
    import uuid

    from kipu.store.accounts import find_team
    from kipu.store.models import Media

    picture = tmp_path / "p.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    media_id = uuid.uuid4()
    with session_scope() as s:
        s.add(
            Media(
                id=media_id,
                team_id=find_team(s, "demo").id,
                filename="p.png",
                storage_path=str(picture),
                mime_type="image/png",
                size_bytes=24,
            )
        )
    mine = get(api, f"/kipu/ui/media/{media_id}/content", "viewer", people)
    assert mine.status_code == 200 and mine.content.startswith(b"\x89PNG")
    assert get(api, f"/kipu/ui/media/{media_id}/content", "boss", people).status_code == 404
    page = get(api, "/kipu/ui/media?team=demo", "viewer", people)
    assert "p.png" in page.text and "24 bytes" in page.text and 'id="upload"' not in page.text  # a viewer cannot upload


def test_an_invited_person_joins_from_the_page_and_nobody_else_can(api: Any, people: dict[str, str]) -> None:
    from tests.api_helpers import token_for

    owner = token_for("owner@demo.test")
    made = api.post(
        "/kipu/api/teams/demo/invitations", json={"email": "boss@other.test", "role": "viewer"}, headers=owner
    )
    assert made.status_code == 201, made.text
    stranger = get(api, "/kipu/ui/workflows", "viewer", people)
    assert "Invitations" not in stranger.text  # someone else's invitation is not shown
    page = get(api, "/kipu/ui/workflows", "boss", people)
    assert "Invitations" in page.text and ">Join</button>" in page.text and "Demo" in page.text
    accept = page.text.split('action="/kipu/ui/invitations/')[1].split('"')[0]
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    # Another signed-in person posting the same answer with their own session's form token: the API refuses it.
    from kipu.ui.session import csrf_token

    theirs = csrf_token(people["viewer"])
    api.cookies.set("_token", people["viewer"])
    other = api.post(f"/kipu/ui/invitations/{accept}", data={"csrf": theirs}, follow_redirects=False)
    assert other.status_code == 303 and "not+found" in other.headers["location"], other.headers
    api.cookies.set("_token", people["boss"])
    forged = api.post(f"/kipu/ui/invitations/{accept}", data={"csrf": "0" * 40}, follow_redirects=False)
    assert forged.status_code == 403
    done = api.post(f"/kipu/ui/invitations/{accept}", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and "team=demo" in done.headers["location"], done.headers
    joined = get(api, "/kipu/ui/workflows?team=demo", "boss", people)
    assert "kipu.demo.demo_crosspost" in joined.text and "Invitations" not in joined.text


def test_the_team_page_invites_changes_roles_and_removes_through_the_api(api: Any, people: dict[str, str]) -> None:
    from urllib.parse import unquote_plus

    from kipu.ui.session import csrf_token

    page = get(api, "/kipu/ui/team", "admin", people)
    assert page.status_code == 200 and "viewer@demo.test" in page.text and ">Invite</button>" in page.text
    csrf = csrf_token(people["admin"])

    def post(path: str, **form: str) -> str:
        resp = api.post(f"/kipu/ui/team/{path}?team=demo", data={"csrf": csrf, **form}, follow_redirects=False)
        assert resp.status_code == 303, resp.text
        return unquote_plus(resp.headers["location"])

    assert "Invited new@demo.test" in post("invite", email="new@demo.test", role="member")
    assert "new@demo.test" in get(api, "/kipu/ui/team", "admin", people).text.split("Pending invitations")[1]
    assert "role: Input should be" in post("invite", email="x@demo.test", role="god")  # the API's words, on the page
    assert "Revoked the invitation to new@demo.test" in post("invitations/revoke", email="new@demo.test")
    assert "No pending invitations." in get(api, "/kipu/ui/team", "admin", people).text
    assert "Role changed for viewer@demo.test" in post("members", email="viewer@demo.test", role="admin")
    assert "keeps at least one owner" in post(
        "members", email="owner@demo.test", role="viewer"
    )  # a team keeps one owner
    assert "Removed editor@demo.test" in post("members/remove", email="editor@demo.test")
    members = get(api, "/kipu/ui/team", "viewer", people)  # now an admin
    assert "editor@demo.test" not in members.text and ">Invite</button>" in members.text
    with session_scope() as s:
        from kipu.store.accounts import add_member, find_team

        add_member(s, find_team(s, "demo"), get_or_create_profile(s, "boss@other.test"), "viewer")
    seen = get(api, "/kipu/ui/team?team=demo", "boss", people)
    assert "owner@demo.test" in seen.text and "<button" not in seen.text.replace("<button>Go</button>", "")
    refused = api.post(
        "/kipu/ui/team/invite?team=demo",
        data={"csrf": csrf_token(people["boss"]), "email": "a@b.c", "role": "viewer"},
        follow_redirects=False,
    )
    assert "needs the admin role" in unquote_plus(refused.headers["location"])


def test_a_page_action_never_falls_back_to_another_team(api: Any, people: dict[str, str]) -> None:
    from kipu.store.accounts import add_member, find_team
    from kipu.ui.session import csrf_token

    with session_scope() as s:  # viewer is also a member of boss's team
        add_member(s, find_team(s, "other"), get_or_create_profile(s, "viewer@demo.test"), "member")
    api.cookies.clear()
    api.cookies.set("_token", people["boss"])
    form = {"csrf": csrf_token(people["boss"]), "email": "viewer@demo.test"}
    refused = api.post("/kipu/ui/team/members/remove?team=demo", data=form, follow_redirects=False)
    assert refused.status_code == 404 and "not in team 'demo'" in refused.text
    unnamed = api.post("/kipu/ui/team/members/remove", data=form, follow_redirects=False)
    assert unnamed.status_code == 404
    with session_scope() as s:
        from kipu.store.models import TeamMember

        team_id = find_team(s, "other").id
        assert len(s.scalars(select(TeamMember).where(TeamMember.team_id == team_id)).all()) == 2
