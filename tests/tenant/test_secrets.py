"""Class 4: secrets are shown by role. A workflow's webhook secret is stored encrypted, redacted in every document
for everyone, and shown once, to an admin, when rotated. A walk of every response model finds no other field that
holds a secret."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from kipu.store.crypto import get_cipher
from kipu.store.engine import session_scope
from kipu.store.models import Workflow

from tests.api_helpers import recorded_bodies
from tests.helpers import demo_doc

API = "/kipu/api"
SECRET = "whsec-PLAINTEXT-do-not-show-42"


def _webhook_doc() -> dict[str, Any]:
    return demo_doc(
        slug="hooked",
        trigger={"type": "webhook", "platform": "feed", "connection_id": "feed:demo", "webhook_secret": SECRET},
    )


def _stored_secret() -> str:
    with session_scope() as s:
        sealed = s.scalar(sa.select(Workflow).where(Workflow.slug == "hooked")).trigger_config["webhook_secret"]
    assert SECRET not in sealed  # encrypted at rest
    return get_cipher().decrypt(sealed).get_secret_value()


def test_webhook_secret_is_never_shown_and_survives_a_round_trip(api, roles: dict) -> None:
    with recorded_bodies(api) as bodies:
        created = api.post(f"{API}/workflows", json=_webhook_doc(), headers=roles["member"])
        assert created.status_code == 201, created.text
        wid = created.json()["id"]
        assert created.json()["document"]["trigger"]["webhook_secret"] == "**********"
        for role in ("viewer", "member", "owner"):
            assert api.get(f"{API}/workflows/{wid}", headers=roles[role]).status_code == 200
            assert api.get(f"{API}/workflows", headers=roles[role]).status_code == 200
        # The document as given out, sent back unchanged, keeps the stored secret.
        doc = api.get(f"{API}/workflows/{wid}", headers=roles["member"]).json()["document"]
        assert api.put(f"{API}/workflows/{wid}", json=doc, headers=roles["member"]).status_code == 200
        copy = api.post(f"{API}/workflows/{wid}/duplicate", headers=roles["member"])
        assert copy.status_code == 201
    assert all(SECRET not in body for body in bodies)
    assert _stored_secret() == SECRET


def test_only_an_admin_rotates_and_sees_the_new_secret_once(api, roles: dict) -> None:
    wid = api.post(f"{API}/workflows", json=_webhook_doc(), headers=roles["member"]).json()["id"]
    assert api.post(f"{API}/workflows/{wid}/webhook-secret", headers=roles["viewer"]).status_code == 403
    assert api.post(f"{API}/workflows/{wid}/webhook-secret", headers=roles["member"]).status_code == 403
    assert api.post(f"{API}/workflows/{wid}/webhook-secret", headers=roles["outsider"]).status_code == 404
    rotated = api.post(f"{API}/workflows/{wid}/webhook-secret", headers=roles["owner"])
    assert rotated.status_code == 200
    fresh = rotated.json()["webhook_secret"]
    assert len(fresh) >= 32 and fresh != SECRET and _stored_secret() == fresh
    with recorded_bodies(api) as bodies:
        for role in ("viewer", "owner"):
            api.get(f"{API}/workflows/{wid}", headers=roles[role])
    assert all(fresh not in b for b in bodies)
    manual = api.post(f"{API}/workflows", json=demo_doc(slug="manual_one"), headers=roles["member"]).json()
    assert api.post(f"{API}/workflows/{manual['id']}/webhook-secret", headers=roles["owner"]).status_code == 409


def test_cli_export_redacts_the_secret(api, roles: dict, capsys) -> None:
    from kipu.cli import main

    api.post(f"{API}/workflows", json=_webhook_doc(), headers=roles["member"])
    assert main(["workflow", "export", "demo/hooked", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and '"webhook_secret": "**********"' in out


SECRETISH = re.compile(r"secret|password|passwd|token|api_?key|private|credential|signature", re.IGNORECASE)
# Fields whose names look secret but hold none (timestamps, counts), and the one secret shown once to an admin.
NOT_SECRETS = {
    ("ConnectionOut", "token_expires_at"),
    ("OAuthConnectedOut", "token_expires_at"),
    ("RewriteOut", "tokens_in"),  # AI token counts
    ("RewriteOut", "tokens_out"),
    ("ChannelOut", "previous_secret_until"),  # when a rotated webhook secret stops signing
    ("ChannelCreated", "previous_secret_until"),
    ("SecretOut", "previous_secret_until"),
    ("Limits", "ai_daily_tokens"),  # a plan's daily AI token allowance
}
SHOWN_ONCE = {
    ("RotatedSecret", "webhook_secret"),
    ("ChannelCreated", "secret"),  # a notification webhook's signing secret, in the 201 only
    ("SecretOut", "secret"),  # the same after a rotation
}


def _response_models(schema: dict[str, Any]) -> set[str]:
    names: set[str] = set()

    def refs(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in names:
                names.add(ref.rsplit("/", 1)[1])
                refs(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])
            for v in node.values():
                refs(v)
        elif isinstance(node, list):
            for v in node:
                refs(v)

    for path in schema["paths"].values():
        for op in path.values():
            for code, response in (op.get("responses") or {}).items():
                if code.startswith("2"):
                    refs(response)
    return names


def test_no_response_model_has_a_secret_field(api) -> None:
    schema = api.get("/kipu/openapi.json").json()
    models = _response_models(schema)
    assert {"WorkflowOut", "ConnectionOut", "MediaOut", "TeamOut", "RotatedSecret"} <= models
    found = {
        (model, field)
        for model in models
        for field in (schema["components"]["schemas"][model].get("properties") or {})
        if SECRETISH.search(field)
    }
    assert found - NOT_SECRETS == SHOWN_ONCE


def test_a_viewer_cannot_test_guesses_of_a_webhook_secret_through_plan(api, roles: dict) -> None:
    """``POST /teams/{team}/plan`` is open to viewers; it compared a file's secret with the stored one, so a wrong
    and a right guess planned differently. Now a secret in a file is always a change."""
    import json

    from kipu.store.engine import session_scope
    from kipu.store.workflows import save_workflow

    from tests.helpers import demo_doc

    doc = demo_doc(slug="hooked", status="inactive")
    doc["trigger"] = {
        "type": "webhook",
        "connection_id": "feed:demo",
        "platform": "feed",
        "webhook_secret": "summer2026",
    }
    with session_scope() as s:
        save_workflow(s, doc)

    def changes_with(guess: str) -> list:
        file = {**doc, "trigger": {**doc["trigger"], "webhook_secret": guess}}
        out = api.post(
            "/kipu/api/teams/demo/plan", json={"files": {"hooked.json": json.dumps(file)}}, headers=roles["viewer"]
        )
        assert out.status_code == 200, out.text
        return [c for c in out.json()["changes"] if c["slug"] == "hooked"]

    assert changes_with("winter2025") == changes_with("summer2026") != []
