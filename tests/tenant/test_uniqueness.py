"""Class 2: uniqueness is per team, create always creates (or answers 409 naming the field), and no answer tells a
team anything about another team's objects."""

from __future__ import annotations

from typing import Any

from kipu.store.engine import session_scope
from kipu.store.models import Connection, Workflow
from kipu.store.workflows import save_workflow
from sqlalchemy import func, select

from tests.helpers import demo_doc

API = "/kipu/api"


def _theirs(slug: str, name: str) -> None:
    doc = demo_doc(team="other", slug=slug, name=name, trigger={"type": "manual"})
    doc["steps"] = [{"id": "out", "type": "publish", "platform": "outbox", "connection_id": "outbox:theirs"}]
    with session_scope() as s:
        save_workflow(s, doc)


def _named(name: str) -> dict[str, Any]:
    doc = demo_doc(name=name)
    doc.pop("slug", None)
    return doc


def test_another_teams_slug_and_name_are_free_in_mine(api, roles: dict) -> None:
    _theirs("their_flow", "Their flow")
    _theirs("shared_name", "Shared name")
    by_slug = api.post(f"{API}/workflows", json=demo_doc(slug="their_flow"), headers=roles["member"])
    by_name = api.post(f"{API}/workflows", json=_named("Shared name"), headers=roles["member"])
    assert by_slug.status_code == 201, by_slug.text
    assert by_name.status_code == 201, by_name.text
    assert by_slug.json()["dag_id"] == "kipu.demo.their_flow"
    assert by_name.json()["dag_id"] == "kipu.demo.shared_name"
    # Now the slug is mine: a second one derived from a name answers 409, and names nothing of the other team.
    again = api.post(f"{API}/workflows", json=_named("Their flow"), headers=roles["member"])
    assert again.status_code == 409 and again.json()["detail"][0]["loc"] == ["body", "name"]
    assert "'other'" not in again.text and "another team" not in again.text and "taken" not in again.text


def test_create_never_overwrites_it_answers_409_naming_the_field(api, roles: dict) -> None:
    first = api.post(
        f"{API}/workflows", json=_named("Demo cross-post") | {"description": "the original"}, headers=roles["member"]
    )
    assert first.status_code == 201
    again = api.post(
        f"{API}/workflows", json=_named("Demo cross-post") | {"description": "overwritten?"}, headers=roles["member"]
    )
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert detail[0]["loc"] == ["body", "name"] and "demo_cross_post" in detail[0]["msg"]
    explicit = api.post(
        f"{API}/workflows", json=demo_doc(name="Another", slug="demo_cross_post"), headers=roles["member"]
    )
    assert explicit.status_code == 409 and explicit.json()["detail"][0]["loc"] == ["body", "slug"]
    got = api.get(f"{API}/workflows/{first.json()['id']}", headers=roles["viewer"]).json()
    assert got["document"]["description"] == "the original"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Workflow)) == 1
    # Changing goes through PUT.
    put = api.put(f"{API}/workflows/{first.json()['id']}", json=demo_doc(description="new"), headers=roles["member"])
    assert put.status_code == 200 and put.json()["document"]["description"] == "new"


def _same_answer(a: Any, b: Any, theirs: str, missing: str) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.text.replace(theirs, "X") == b.text.replace(missing, "X")


def test_another_teams_objects_answer_exactly_like_missing_ones(api, roles: dict) -> None:
    """Referring to another team's team, connection or member reads the same as referring to nothing."""
    with session_scope() as s:
        other_conn_id = str(s.scalar(select(Connection.id).where(Connection.platform_user_id == "theirs")))
    missing_id = "00000000-0000-4000-8000-000000000000"
    member = roles["member"]
    _same_answer(
        api.post(f"{API}/workflows", json=demo_doc(team="other"), headers=member),
        api.post(f"{API}/workflows", json=demo_doc(team="nosuchteam"), headers=member),
        "other",
        "nosuchteam",
    )
    doc_theirs, doc_missing = demo_doc(), demo_doc()
    for doc, ref in ((doc_theirs, other_conn_id), (doc_missing, missing_id)):
        next(s for s in doc["steps"] if s["type"] == "publish")["connection_id"] = ref
    _same_answer(
        api.post(f"{API}/workflows", json=doc_theirs, headers=member),
        api.post(f"{API}/workflows", json=doc_missing, headers=member),
        other_conn_id,
        missing_id,
    )
    approver_theirs, approver_missing = demo_doc(), demo_doc()
    for doc, who in ((approver_theirs, "boss@other.test"), (approver_missing, "nobody@nowhere.test")):
        next(s for s in doc["steps"] if s["type"] == "approval")["config"]["approvers"] = [who]
    _same_answer(
        api.post(f"{API}/workflows", json=approver_theirs, headers=member),
        api.post(f"{API}/workflows", json=approver_missing, headers=member),
        "boss@other.test",
        "nobody@nowhere.test",
    )
    _same_answer(
        api.get(f"{API}/connections/{other_conn_id}", headers=member),
        api.get(f"{API}/connections/{missing_id}", headers=member),
        other_conn_id,
        missing_id,
    )
