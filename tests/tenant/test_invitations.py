"""Joining a team takes the invitee's own yes: an admin's invitation tells nothing about the e-mail it names (whether
anyone uses Kipu with it, their name, their teams), and only the person with that e-mail accepts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from kipu.store.accounts import add_member, find_team, get_or_create_profile
from kipu.store.engine import session_scope
from kipu.store.invitations import MAX_PENDING
from kipu.store.models import Profile, TeamInvitation, TeamMember

from tests.api_helpers import token_for

API = "/kipu/api"


def _name_boss(name: str = "Bruce Hidden-Name") -> None:
    with session_scope() as s:
        s.scalar(sa.select(Profile).where(Profile.email == "boss@other.test")).name = name


def _members(api, roles: dict) -> set[str]:
    return {m["email"] for m in api.get(f"{API}/teams/demo/members", headers=roles["viewer"]).json()}


def test_an_invitation_reveals_nothing_about_the_email_and_adds_no_one(api, roles: dict) -> None:
    _name_boss()
    known = api.post(
        f"{API}/teams/demo/invitations", json={"email": "boss@other.test", "role": "member"}, headers=roles["owner"]
    )
    unknown = api.post(
        f"{API}/teams/demo/invitations", json={"email": "ghost@nowhere.test", "role": "member"}, headers=roles["owner"]
    )
    assert known.status_code == unknown.status_code == 201, (known.text, unknown.text)
    assert set(known.json()) == set(unknown.json()) == {"email", "role", "expires_at"}
    assert "Bruce" not in known.text
    assert "boss@other.test" not in _members(api, roles)  # invited, not a member
    assert [t["slug"] for t in api.get(f"{API}/teams", headers=roles["outsider"]).json()] == ["other"]
    # Changing a non-member's role is the same 404 whether or not the e-mail has a profile.
    put_known = api.put(
        f"{API}/teams/demo/members", json={"email": "boss@other.test", "role": "admin"}, headers=roles["owner"]
    )
    put_unknown = api.put(
        f"{API}/teams/demo/members", json={"email": "ghost@nowhere.test", "role": "admin"}, headers=roles["owner"]
    )
    assert put_known.status_code == put_unknown.status_code == 404
    assert "invite them" in put_known.json()["detail"] and "Bruce" not in put_known.text
    with session_scope() as s:  # no profile was made for the unknown e-mail
        assert s.scalar(sa.select(Profile).where(Profile.email == "ghost@nowhere.test")) is None
    listed = api.get(f"{API}/teams/demo/invitations", headers=roles["owner"]).json()
    assert [(i["email"], i["role"]) for i in listed] == [
        ("boss@other.test", "member"),
        ("ghost@nowhere.test", "member"),
    ]


def test_only_the_invitee_accepts_and_then_holds_the_role(api, roles: dict) -> None:
    made = api.post(
        f"{API}/teams/demo/invitations", json={"email": "Boss@Other.TEST", "role": "member"}, headers=roles["owner"]
    )
    assert made.status_code == 201 and made.json()["email"] == "boss@other.test"
    assert api.get(f"{API}/invitations", headers=roles["viewer"]).json() == []  # not theirs
    mine = api.get(f"{API}/invitations", headers=roles["outsider"]).json()
    assert [(i["team"], i["team_name"], i["role"]) for i in mine] == [("demo", "Demo", "member")]
    inv = mine[0]["id"]
    for other in ("owner", "viewer", "member"):  # the inviting team cannot accept for them
        assert api.post(f"{API}/invitations/{inv}/accept", headers=roles[other]).status_code == 404
        assert api.delete(f"{API}/invitations/{inv}", headers=roles[other]).status_code == 404
    assert "boss@other.test" not in _members(api, roles)
    joined = api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"])
    assert joined.status_code == 200 and joined.json() == {"team": "demo", "role": "member"}
    assert "boss@other.test" in _members(api, roles)
    assert api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"]).status_code == 404  # used
    assert api.get(f"{API}/teams/demo/invitations", headers=roles["owner"]).json() == []
    # Now a member: invited again is a 409, and admins change the role with PUT.
    again = api.post(
        f"{API}/teams/demo/invitations", json={"email": "boss@other.test", "role": "admin"}, headers=roles["owner"]
    )
    assert again.status_code == 409 and "already a member" in again.json()["detail"]
    put = api.put(
        f"{API}/teams/demo/members", json={"email": "boss@other.test", "role": "admin"}, headers=roles["owner"]
    )
    assert put.status_code == 200 and put.json()["role"] == "admin"


def test_declined_revoked_and_expired_invitations_are_gone(api, roles: dict) -> None:
    def invite(email: str) -> None:
        r = api.post(f"{API}/teams/demo/invitations", json={"email": email, "role": "viewer"}, headers=roles["owner"])
        assert r.status_code == 201, r.text

    invite("boss@other.test")
    inv = api.get(f"{API}/invitations", headers=roles["outsider"]).json()[0]["id"]
    assert api.delete(f"{API}/invitations/{inv}", headers=roles["outsider"]).status_code == 204
    assert api.get(f"{API}/invitations", headers=roles["outsider"]).json() == []
    assert api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"]).status_code == 404

    invite("boss@other.test")
    inv = api.get(f"{API}/invitations", headers=roles["outsider"]).json()[0]["id"]
    assert api.delete(f"{API}/teams/demo/invitations/boss@other.test", headers=roles["member"]).status_code == 403
    assert api.delete(f"{API}/teams/demo/invitations/boss@other.test", headers=roles["owner"]).status_code == 204
    assert api.delete(f"{API}/teams/demo/invitations/boss@other.test", headers=roles["owner"]).status_code == 404
    assert api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"]).status_code == 404

    invite("boss@other.test")
    with session_scope() as s:
        s.execute(sa.update(TeamInvitation).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert api.get(f"{API}/invitations", headers=roles["outsider"]).json() == []
    assert api.get(f"{API}/teams/demo/invitations", headers=roles["owner"]).json() == []
    with session_scope() as s:
        inv = s.scalar(sa.select(TeamInvitation.id))
    assert api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"]).status_code == 404
    assert "boss@other.test" not in _members(api, roles)


def test_who_may_invite_whom(api, roles: dict, monkeypatch) -> None:
    monkeypatch.setenv("KIPU_API_AUTH_CACHE_SECONDS", "0")
    with session_scope() as s:
        add_member(s, find_team(s, "demo"), get_or_create_profile(s, "admin@demo.test"), "admin")
    admin = token_for("admin@demo.test")
    body = {"email": "boss@other.test", "role": "viewer"}
    assert api.post(f"{API}/teams/demo/invitations", json=body, headers=roles["member"]).status_code == 403
    assert api.post(f"{API}/teams/demo/invitations", json=body, headers=roles["outsider"]).status_code == 404
    owner_role = api.post(f"{API}/teams/demo/invitations", json={**body, "role": "owner"}, headers=admin)
    assert owner_role.status_code == 403 and "only an owner" in owner_role.json()["detail"]
    assert api.post(f"{API}/teams/demo/invitations", json=body, headers=admin).status_code == 201
    bad = api.post(f"{API}/teams/demo/invitations", json={"email": "no-at-sign", "role": "viewer"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "email"
    god = api.post(f"{API}/teams/demo/invitations", json={**body, "role": "god"}, headers=admin)
    assert god.status_code == 422 and god.json()["detail"][0]["loc"][-1] == "role"

    # The admin loses the role before the invitee answers: the invitation dies with it.
    with session_scope() as s:
        admin_id = s.scalar(sa.select(Profile.id).where(Profile.email == "admin@demo.test"))
        s.get(TeamMember, (find_team(s, "demo").id, admin_id)).role = "member"
    inv = api.get(f"{API}/invitations", headers=roles["outsider"]).json()[0]["id"]
    assert api.post(f"{API}/invitations/{inv}/accept", headers=roles["outsider"]).status_code == 404
    assert "boss@other.test" not in _members(api, roles)


def test_a_team_holds_a_bounded_number_of_pending_invitations(api, roles: dict) -> None:
    for n in range(MAX_PENDING):
        r = api.post(
            f"{API}/teams/demo/invitations", json={"email": f"p{n}@x.test", "role": "viewer"}, headers=roles["owner"]
        )
        assert r.status_code == 201, r.text
    over = api.post(
        f"{API}/teams/demo/invitations", json={"email": "one-more@x.test", "role": "viewer"}, headers=roles["owner"]
    )
    assert over.status_code == 409 and f"at most {MAX_PENDING} pending invitations" in over.json()["detail"]
    renew = api.post(
        f"{API}/teams/demo/invitations", json={"email": "p0@x.test", "role": "member"}, headers=roles["owner"]
    )
    assert renew.status_code == 201 and renew.json()["role"] == "member"  # renewing is not a new one


def test_two_invitations_at_once_to_one_email_make_one_and_no_500(pg_demo_team: dict, monkeypatch) -> None:
    import threading
    import time

    from fastapi.testclient import TestClient
    from kipu.api.app import create_app
    from kipu.store import invitations

    real = invitations.check
    monkeypatch.setattr(invitations, "check", lambda *a, **k: (time.sleep(0.5), real(*a, **k))[1])
    app, owner, codes = create_app(), token_for("owner@demo.test"), []

    def invite() -> None:
        with TestClient(app, raise_server_exceptions=False) as c:
            body = {"email": "new@x.test", "role": "viewer"}
            codes.append(c.post("/api/teams/demo/invitations", json=body, headers=owner).status_code)

    threads = [threading.Thread(target=invite) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [201, 201]
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TeamInvitation)) == 1


def test_members_with_non_ascii_emails_are_found_in_any_case(api, roles: dict) -> None:
    with session_scope() as s:
        team = find_team(s, "demo")
        add_member(s, team, get_or_create_profile(s, "İnci@demo.test"), "viewer")
        add_member(s, team, get_or_create_profile(s, "Élise@demo.test"), "viewer")
    for email in ("İnci@demo.test", "élise@demo.test"):
        put = api.put(f"{API}/teams/demo/members", json={"email": email, "role": "member"}, headers=roles["owner"])
        assert put.status_code == 200, (email, put.text)
        again = api.post(
            f"{API}/teams/demo/invitations", json={"email": email, "role": "member"}, headers=roles["owner"]
        )
        assert again.status_code == 409, email
    assert api.delete(f"{API}/teams/demo/members/ÉLISE@demo.test", headers=roles["owner"]).status_code == 204
    assert "Élise@demo.test" not in _members(api, roles)


def test_a_member_is_found_by_email_in_python_on_both_stores(store_url: str) -> None:
    from kipu.store.accounts import get_or_create_team
    from kipu.store.invitations import member_by_email

    with session_scope() as s:
        owner = get_or_create_profile(s, "Élise@x.test")
        team = get_or_create_team(s, "X", owner, "x")
        assert member_by_email(s, team.id, "élise@X.test") is not None  # SQLite's lower() knows ASCII only
        assert member_by_email(s, team.id, "elise@x.test") is None
