"""Class 3: a team's plan, limits and billing state are the team's own; changing one team changes no other."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from kipu.store.accounts import get_or_create_profile, get_or_create_team
from kipu.store.engine import reset_engines, session_scope
from kipu.store.migrate import upgrade
from kipu.store.models import Team

from tests import pg
from tests.conftest import use_store

API = "/kipu/api"


def test_changing_one_teams_plan_leaves_the_owners_other_teams_alone(api, roles: dict) -> None:
    with session_scope() as s:
        owner = get_or_create_profile(s, "owner@demo.test")
        get_or_create_team(s, "Second", owner, "second")
    assert api.patch(f"{API}/teams/second", json={"plan": "business"}, headers=roles["owner"]).status_code == 200
    plans = {t["slug"]: t["plan"] for t in api.get(f"{API}/teams", headers=roles["owner"]).json()}
    assert plans == {"demo": "free", "second": "business"}
    with session_scope() as s:
        assert {t.slug: t.plan for t in s.scalars(sa.select(Team))} == {
            "demo": "free",
            "second": "business",
            "other": "free",
        }
    # Only the team's owner changes it; a member of the team cannot, another team's owner sees no team.
    assert api.patch(f"{API}/teams/demo", json={"plan": "pro"}, headers=roles["member"]).status_code == 403
    assert api.patch(f"{API}/teams/demo", json={"plan": "pro"}, headers=roles["outsider"]).status_code == 404


def test_upgrade_gives_each_team_the_plan_its_owner_had() -> None:
    url = pg.create_database()
    try:
        upgrade(url, "0007")
        engine = sa.create_engine(url)
        owner, a, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO profiles (id, email, plan) VALUES (:i, 'p@x.test', 'pro')"), {"i": owner})
            for tid, slug in ((a, "a"), (c, "c")):
                conn.execute(
                    sa.text("INSERT INTO teams (id, name, slug, owner_id) VALUES (:i, :s, :s, :o)"),
                    {"i": tid, "s": slug, "o": owner},
                )
        engine.dispose()
        upgrade(url)
        use_store(url)
        with session_scope() as s:
            assert {t.slug: (t.plan, t.billing_status) for t in s.scalars(sa.select(Team))} == {
                "a": ("pro", "none"),
                "c": ("pro", "none"),
            }
            s.get(Team, c).plan = "free"
        with session_scope() as s:
            assert s.get(Team, a).plan == "pro"
    finally:
        reset_engines()
        pg.drop_database(url)
