"""The Kipu pages (``/kipu/ui/…``): workflows, posts, approvals and connections, plus the "Kipu" tab of a workflow's
DAG and the "Kipu item" tab of a DAG run. Every read and every action is a call to the /kipu API, in process, as the
signed-in person, so the pages hold exactly the API's rules (roles, teams, limits)."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from kipu.api.auth import ROLE_RANK, Caller
from kipu.ui.layout import button_form, e, page, table
from kipu.ui.session import COOKIE, csrf_ok, csrf_token

router = APIRouter(prefix="/ui", include_in_schema=False)


class _AsCaller:
    def __init__(self, app: Any, caller: Caller) -> None:
        self.app, self.caller = app, caller

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("state", {})["kipu_caller"] = self.caller
        await self.app(scope, receive, send)


class Ctx:
    """Who is asking, in which team, and the form token of their session."""

    def __init__(self, request: Request, user: str, caller: Caller, slugs: dict[uuid.UUID, str]) -> None:
        self.request, self.user, self.caller = request, user, caller
        self.slugs = slugs  # team id -> slug, the caller's teams only
        wanted = request.query_params.get("team")
        self.team = wanted if wanted in slugs.values() else next(iter(sorted(slugs.values())), None)
        self.csrf = csrf_token(request.cookies.get(COOKIE, ""))

    def role(self, team: str | None = None) -> str | None:
        slug = team or self.team
        team_id = next((t for t, s in self.slugs.items() if s == slug), None)
        return self.caller.roles.get(team_id) if team_id else None

    def may(self, role: str, team: str | None = None) -> bool:
        have = self.role(team)
        return have is not None and ROLE_RANK[have] >= ROLE_RANK[role]

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=_AsCaller(self.request.app, self.caller))
        async with httpx.AsyncClient(transport=transport, base_url="http://kipu.local") as http:
            resp = await http.request(method, f"/api{path}", **kwargs)
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text
        return resp.status_code, body

    def render(self, title: str, body: str, current: str = "") -> HTMLResponse:
        q = self.request.query_params
        return HTMLResponse(
            page(
                title,
                body,
                user=self.user,
                current=current,
                team=self.team,
                teams=sorted(self.slugs.values()),
                message=q.get("msg"),
                error=q.get("err"),
            )
        )


def _messages(body: Any) -> list[str]:
    """The API's error body as sentences: each validation problem with its place (after ``body``/``query``)."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if not isinstance(detail, list):
        return [str(detail)]
    out = []
    for d in detail:
        if not isinstance(d, dict):
            out.append(str(d))
            continue
        where = ".".join(str(p) for p in d.get("loc", [])[1:])
        out.append(f"{where}: {d.get('msg')}" if where else str(d.get("msg")))
    return out


def _detail(body: Any) -> str:
    return "; ".join(_messages(body))


async def context(request: Request, *, csrf_header: bool = False) -> Ctx | Response:
    """Who is asking; a script's request (``csrf_header``) must carry this session's token in ``X-Kipu-CSRF``."""
    if csrf_header and not csrf_ok(request.cookies.get(COOKIE), request.headers.get("x-kipu-csrf")):
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": "the page is stale or not from this session"}, status_code=403)
    signed = getattr(request.state, "kipu_ui", None)
    if signed is None:  # not signed in to Airflow: its login page, then back here
        return RedirectResponse(f"/auth/login?next={quote(str(request.url), safe='')}", status_code=303)
    user, caller = signed
    from starlette.concurrency import run_in_threadpool

    def slugs() -> dict[uuid.UUID, str]:
        from kipu.store.engine import session_scope
        from kipu.store.models import Team

        if not caller.roles:
            return {}
        with session_scope() as s:
            rows = s.execute(select(Team.id, Team.slug).where(Team.id.in_(list(caller.roles))))
            return {team_id: slug for team_id, slug in rows}

    return Ctx(request, user, caller, await run_in_threadpool(slugs))


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form if its CSRF token belongs to this session, else None."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    return form if csrf_ok(request.cookies.get(COOKIE), form.get("csrf")) else None


async def team_context(request: Request, title: str, current: str) -> Ctx | Response:
    """The context of a team's page; a page saying so when the person is in no team yet."""
    ctx = await context(request)
    if isinstance(ctx, Response) or ctx.team is not None:
        return ctx
    return ctx.render(title, "<p>You are in no Kipu team yet.</p>", current)


async def posted(request: Request) -> tuple[Ctx, dict[str, str]] | Response:
    """The context and form of a page's POST: signed in, and with this session's CSRF token (else 403)."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    form = await _form(request)
    if form is None:
        return HTMLResponse("refused: the form is stale or not from this session", status_code=403)
    named = request.query_params.get("team")
    if named is not None and named != ctx.team:  # a page shows a fallback team; an action never falls back
        return HTMLResponse(f"refused: you are not in team {named!r} (any more)", status_code=404)
    return ctx, form


def _back(path: str, team: str | None, **msg: str) -> RedirectResponse:
    params = {"team": team, **msg} if team else msg
    return RedirectResponse(f"/kipu/ui/{path}?{urlencode({k: v for k, v in params.items() if v})}", status_code=303)


def _status(value: str | None) -> str:
    return f'<span class="status">{e(value or "—")}</span>'


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    return _back("workflows", ctx.team)


# -- workflows ---------------------------------------------------------------------------------------------------
@router.get("/workflows")
async def workflows(request: Request) -> Response:
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    invited = await _invitations(ctx)
    if ctx.team is None:
        alone = f"<p>Your Airflow user <b>{e(ctx.user)}</b> is in no Kipu team yet.</p>"
        return ctx.render("Workflows", invited + alone)
    code, rows = await ctx.api("GET", "/workflows", params={"team": ctx.team})
    if code != 200:
        return ctx.render("Workflows", invited, "workflows")
    _, acts = await ctx.api("GET", "/workflows/activity", params={"team": ctx.team})
    activity = {a["workflow_id"]: a for a in acts or []}
    edit = ctx.may("member")
    lines = []
    for w in rows:
        actions = ""
        if edit:
            for action, label in (("activate", "Activate"), ("pause", "Pause"), ("duplicate", "Duplicate")):
                if (action, w["status"]) in (("activate", "active"), ("pause", "paused"), ("pause", "inactive")):
                    continue
                actions += button_form(f"/kipu/ui/workflows/{w['id']}/{action}?team={ctx.team}", label, ctx.csrf)
        if edit and w["status"] == "active":
            field = f"item-{w['id']}"
            actions += (
                f'<form method="post" action="/kipu/ui/workflows/{e(w["id"])}/run?team={e(ctx.team)}">'
                f'<input type="hidden" name="csrf" value="{e(ctx.csrf)}"><label for="{field}">Test caption</label>'
                f'<input id="{field}" name="caption" required maxlength="5000"> <button>Run with a test item</button>'
                "</form>"
            )
        dag = f'<a href="/dags/{e(w["dag_id"])}" target="_top">{e(w["dag_id"])}</a>'
        export = f'<a href="/kipu/ui/workflows/{e(w["id"])}/export.yaml" download>YAML</a>'
        if edit:
            export += f' · <a href="/kipu/ui/workflows/{e(w["id"])}/edit?team={e(ctx.team)}">Edit</a>'
        act = activity.get(w["id"]) or {}
        last = (
            f"{e((act.get('last_run_at') or '')[:16].replace('T', ' '))} {_status(act.get('last_status'))}"
            if act.get("last_run_at")
            else '<span class="muted">never</span>'
        )
        counts = ", ".join(f"{n} {e(k)}" for k, n in sorted((act.get("counts") or {}).items())) or "—"
        lines.append([e(w["name"]), _status(w["status"]), last, e(counts), dag, export, actions])
    headers = [
        "Workflow",
        "Status",
        "Last run (UTC)",
        "Runs, 30 days",
        "Airflow DAG",
        "File",
        "Actions" if edit else "",
    ]
    body = invited + table(headers, lines, "No workflows yet.")
    if edit:
        body += f'<p><a href="/kipu/ui/workflows/new?team={e(ctx.team)}">Import a workflow…</a></p>'
    return ctx.render("Workflows", body, "workflows")


async def _invitations(ctx: Ctx) -> str:
    """The teams inviting this person, each with Join and Decline; nothing when there are none."""
    code, rows = await ctx.api("GET", "/invitations")
    if code != 200 or not rows:
        return ""
    lines = [
        [
            f"{e(i['team_name'])} <span class=muted>({e(i['team'])})</span>",
            e(i["role"]),
            e(i["expires_at"][:16].replace("T", " ")),
            button_form(f"/kipu/ui/invitations/{i['id']}/accept", "Join", ctx.csrf)
            + button_form(f"/kipu/ui/invitations/{i['id']}/decline", "Decline", ctx.csrf, danger=True),
        ]
        for i in rows
    ]
    return "<h2>Invitations</h2>" + table(["Team", "Role", "Expires (UTC)", ""], lines, "")


@router.post("/invitations/{invitation_id}/{answer}")
async def answer_invitation(request: Request, invitation_id: uuid.UUID, answer: str) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, _ = got
    if answer not in ("accept", "decline"):
        return HTMLResponse(f"unknown answer {answer!r}", status_code=404)
    if answer == "decline":
        code, body = await ctx.api("DELETE", f"/invitations/{invitation_id}")
        return _back(
            "workflows", ctx.team, **({"msg": "Invitation declined."} if code < 300 else {"err": _detail(body)})
        )
    code, body = await ctx.api("POST", f"/invitations/{invitation_id}/accept")
    if code >= 300:
        return _back("workflows", ctx.team, err=_detail(body))
    return _back("workflows", body["team"], msg=f"You joined {body['team']} as {body['role']}.")


EDITOR_JS = """
const box = document.getElementById('yaml'), list = document.getElementById('problems');
const state = document.getElementById('state'); let timer = null;
async function check() {
  const r = await fetch('/kipu/ui/validate', {method: 'POST', headers: {'Content-Type': 'application/json',
    'X-Kipu-CSRF': box.dataset.csrf}, body: JSON.stringify({text: box.value})});
  const out = await r.json();
  list.replaceChildren(...out.errors.map(t => { const li = document.createElement('li'); li.textContent = t;
    return li; }));
  state.textContent = out.valid ? 'Valid.' : out.errors.length + ' problem(s):';
  box.setAttribute('aria-invalid', out.valid ? 'false' : 'true');
}
box.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(check, 300); });
check();
"""


def _editor(ctx: Ctx, action: str, text: str, errors: list[str], label: str) -> str:
    problems = "".join(f"<li>{e(x)}</li>" for x in errors)
    return (
        f'<form method="post" action="{e(action)}"><input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
        '<label for="yaml">Workflow YAML</label>'
        f'<textarea id="yaml" name="yaml" rows="28" spellcheck="false" data-csrf="{e(ctx.csrf)}"'
        f' aria-describedby="state problems" style="font-family:monospace">{e(text)}</textarea>'
        f'<p id="state" role="status">{"" if not errors else f"{len(errors)} problem(s):"}</p>'
        f'<ul id="problems" aria-live="polite">{problems}</ul><button>{e(label)}</button></form>'
        f"<script>{EDITOR_JS}</script>"
    )


@router.post("/validate")
async def validate(request: Request) -> Response:
    """The editor's check as you type: the API's validation of the text (nothing is written)."""
    from fastapi.responses import JSONResponse

    ctx = await context(request, csrf_header=True)
    if isinstance(ctx, Response):
        return ctx
    try:
        text = str((await request.json()).get("text") or "")
    except ValueError:
        return JSONResponse({"valid": False, "errors": ["the request is not JSON"]}, status_code=422)
    code, body = await ctx.api("POST", "/workflows/validate", json={"text": text})
    if code != 200:
        return JSONResponse({"valid": False, "errors": [_detail(body)]})
    return JSONResponse(body)


def _document(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    from kipu.specs.document import load_document
    from kipu.specs.workflow import WorkflowSpecError

    try:
        return load_document(text.encode("utf-8", "surrogatepass"), "workflow.yaml"), []
    except WorkflowSpecError as exc:
        return None, list(exc.errors)


@router.get("/workflows/new")
async def new_workflow(request: Request) -> Response:
    """Import: paste or type a workflow file; it is checked as you type and created on save."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    if not ctx.may("member"):
        return _back("workflows", ctx.team, err="importing workflows needs the member role in the team")
    start = f"name: New workflow\nteam: {ctx.team}\nstatus: paused\ntrigger:\n  type: manual\nsteps: []\n"
    return ctx.render("Import a workflow", _editor(ctx, f"/kipu/ui/workflows/new?team={ctx.team}", start, [], "Create"))


@router.post("/workflows/new")
async def create_workflow(request: Request) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    return await _save_text(ctx, form, "POST", "/workflows", "/kipu/ui/workflows/new", "Import a workflow", "Create")


async def _save_text(
    ctx: Ctx, form: dict[str, str], method: str, path: str, page: str, title: str, label: str
) -> Response:
    """Import or edit: the YAML through the API (which checks it again); refused, the editor keeps the text and says
    why."""
    text = form.get("yaml", "")
    doc, errors = _document(text)
    if doc is not None:
        code, body = await ctx.api(method, path, json=doc)
        if code < 300:
            done = "created" if method == "POST" else "saved"
            return _back("workflows", ctx.team, msg=f"Workflow '{body['name']}' {done}.")
        errors = _messages(body)
    return ctx.render(title, _editor(ctx, f"{page}?team={ctx.team}", text, errors, label), "workflows")


async def _workflow_file(ctx: Ctx, workflow_id: uuid.UUID) -> tuple[dict[str, Any], str] | Response:
    """The workflow (through the API, so only the caller's teams') and its file as YAML."""
    code, body = await ctx.api("GET", f"/workflows/{workflow_id}")
    if code != 200:
        return _back("workflows", ctx.team, err=_detail(body))
    return body, yaml.safe_dump(body["document"], sort_keys=False, allow_unicode=True)


@router.get("/workflows/{workflow_id}/edit")
async def edit_workflow(request: Request, workflow_id: uuid.UUID) -> Response:
    """The workflow's YAML, checked as you type; saving replaces it (members and up)."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    got = await _workflow_file(ctx, workflow_id)
    if isinstance(got, Response):
        return got
    body, text = got
    action = f"/kipu/ui/workflows/{workflow_id}/edit?team={ctx.team}"
    return ctx.render(f"Edit {body['name']}", _editor(ctx, action, text, [], "Save"), "workflows")


@router.post("/workflows/{workflow_id}/edit")
async def save_workflow_text(request: Request, workflow_id: uuid.UUID) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    page = f"/kipu/ui/workflows/{workflow_id}/edit"
    return await _save_text(ctx, form, "PUT", f"/workflows/{workflow_id}", page, "Edit the workflow", "Save")


@router.get("/workflows/{workflow_id}/export.yaml")
async def export(request: Request, workflow_id: uuid.UUID) -> Response:
    """The workflow file, as ``kipu workflow export`` writes it (secrets masked)."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    got = await _workflow_file(ctx, workflow_id)
    if isinstance(got, Response):
        return got
    body, text = got
    name = f"{body['slug'] or 'workflow'}.yaml"
    return Response(
        text, media_type="application/yaml", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.post("/workflows/{workflow_id}/run")
async def run_test_item(request: Request, workflow_id: uuid.UUID) -> Response:
    """Run the workflow with a test item made of a caption: the API's manual run, as `kipu workflow run` does."""
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    item = {"caption": form.get("caption", ""), "idempotency_key": f"ui-{uuid.uuid4()}"}
    code, body = await ctx.api("POST", f"/workflows/{workflow_id}/run", json={"item": item})
    if code < 300:
        where = f" as run {body['dag_run_id']}" if body.get("dag_run_id") else ""
        return _back("workflows", ctx.team, msg=f"Test item recorded{where}: {body['status']}.")
    return _back("workflows", ctx.team, err=_detail(body))


@router.post("/workflows/{workflow_id}/{action}")
async def workflow_action(request: Request, workflow_id: uuid.UUID, action: str) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, _ = got
    if action not in ("activate", "pause", "duplicate"):
        return HTMLResponse(f"unknown action {action!r}", status_code=404)
    code, body = await ctx.api("POST", f"/workflows/{workflow_id}/{action}")
    done = {"activate": "activated", "pause": "paused", "duplicate": "duplicated"}[action]
    return _back("workflows", ctx.team, **({"msg": f"Workflow {done}."} if code < 300 else {"err": _detail(body)}))


# -- team ---------------------------------------------------------------------------------------------------------
ROLE_CHOICES = ("viewer", "member", "admin", "owner")


def _role_select(field_id: str, chosen: str, owner: bool) -> str:
    """A role picker; only an owner is offered ownership to grant."""
    options = "".join(
        f'<option value="{r}"{" selected" if r == chosen else ""}>{r}</option>'
        for r in ROLE_CHOICES
        if owner or r != "owner" or chosen == "owner"
    )
    return f'<select id="{e(field_id)}" name="role">{options}</select>'


@router.get("/team")
async def team_page(request: Request) -> Response:
    """The team's members; admins change roles, remove members, invite by e-mail and revoke invitations."""
    ctx = await team_context(request, "Team", "team")
    if isinstance(ctx, Response):
        return ctx
    _, members = await ctx.api("GET", f"/teams/{ctx.team}/members")
    admin, owner = ctx.may("admin"), ctx.may("owner")
    lines = []
    for n, m in enumerate(members or []):
        act = ""
        if admin:
            act = (
                f'<form method="post" action="/kipu/ui/team/members?team={e(ctx.team)}" class="inline">'
                f'<input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
                f'<input type="hidden" name="email" value="{e(m["email"])}">'
                f'<label for="role-{n}" class="sr">Role of {e(m["email"])}</label>'
                f"{_role_select(f'role-{n}', m['role'], owner)} <button>Change role</button></form> "
                + button_form(
                    f"/kipu/ui/team/members/remove?team={ctx.team}",
                    "Remove",
                    ctx.csrf,
                    danger=True,
                    fields={"email": m["email"] or ""},
                )
            )
        lines.append([e(m["email"]), e(m["name"] or ""), e(m["role"]), act])
    body = table(["E-mail", "Name", "Role", ""], lines, "No members.")
    if admin:
        _, pending = await ctx.api("GET", f"/teams/{ctx.team}/invitations")
        rows = [
            [
                e(i["email"]),
                e(i["role"]),
                e(i["expires_at"][:16].replace("T", " ")),
                button_form(
                    f"/kipu/ui/team/invitations/revoke?team={ctx.team}",
                    "Revoke",
                    ctx.csrf,
                    danger=True,
                    fields={"email": i["email"]},
                ),
            ]
            for i in pending or []
        ]
        body += "<h2>Pending invitations</h2>" + table(
            ["E-mail", "Role", "Expires (UTC)", ""], rows, "No pending invitations."
        )
        body += (
            f'<h2>Invite someone</h2><form method="post" action="/kipu/ui/team/invite?team={e(ctx.team)}"'
            f' class="filters"><input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
            '<div><label for="invite-email">E-mail</label><input id="invite-email" name="email" type="email" required'
            ' maxlength="320"></div>'
            f'<div><label for="invite-role">Role</label>{_role_select("invite-role", "member", owner)}</div>'
            "<div><button>Invite</button></div></form>"
            "<p class=muted>They join when they accept: on their Workflows page, or with the API.</p>"
        )
    return ctx.render("Team", body, "team")


@router.post("/team/{action}")
@router.post("/team/{action}/{what}")
async def team_action(request: Request, action: str, what: str = "") -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    email, role = form.get("email", ""), form.get("role", "")
    quoted = quote(email, safe="")
    calls = {
        ("invite", ""): ("POST", f"/teams/{ctx.team}/invitations", {"email": email, "role": role}, "Invited"),
        ("members", ""): ("PUT", f"/teams/{ctx.team}/members", {"email": email, "role": role}, "Role changed for"),
        ("members", "remove"): ("DELETE", f"/teams/{ctx.team}/members/{quoted}", None, "Removed"),
        ("invitations", "revoke"): (
            "DELETE",
            f"/teams/{ctx.team}/invitations/{quoted}",
            None,
            "Revoked the invitation to",
        ),
    }
    call = calls.get((action, what))
    if call is None or request.query_params.get("team") is None:
        return HTMLResponse("unknown team action", status_code=404)
    method, path, body, done = call
    code, answer = await ctx.api(method, path, **({"json": body} if body is not None else {}))
    return _back("team", ctx.team, **({"msg": f"{done} {email}."} if code < 300 else {"err": _detail(answer)}))


# -- posts ----------------------------------------------------------------------------------------------------------
@router.get("/posts")
async def posts(request: Request) -> Response:
    ctx = await team_context(request, "Posts", "posts")
    if isinstance(ctx, Response):
        return ctx
    q = request.query_params
    params = {"team": ctx.team, "limit": 100, **{k: q[k] for k in ("status", "platform", "workflow_id") if q.get(k)}}
    code, data = await ctx.api("GET", "/posts", params=params)
    _, flows = await ctx.api("GET", "/workflows", params={"team": ctx.team})
    names = {w["id"]: w["name"] for w in flows or []}
    retry = ctx.may("member")
    rows = []
    for p in (data or {}).get("items", []) if code == 200 else []:
        link = f'<a href="{e(p["url"])}" target="_blank" rel="noopener">open</a>' if p["url"] else e(p["error"] or "")
        act = (
            button_form(f"/kipu/ui/posts/{p['id']}/retry?team={ctx.team}", "Retry", ctx.csrf)
            if (retry and p["status"] == "failed")
            else ""
        )
        rows.append(
            [
                e(p["created_at"][:16].replace("T", " ")),
                e(p["platform"]),
                _status(p["status"]),
                e((p["caption"] or "")[:140]),
                e(names.get(p["workflow_id"], "")),
                link,
                act,
            ]
        )

    def select_box(name: str, label: str, options: list[tuple[str, str]]) -> str:
        opts = "".join(
            f'<option value="{e(v)}"{" selected" if q.get(name) == v else ""}>{e(t)}</option>' for v, t in options
        )
        return (
            f'<div><label for="f-{name}">{label}</label><select id="f-{name}" name="{name}">'
            f'<option value="">all</option>{opts}</select></div>'
        )

    statuses = [(s, s) for s in ("published", "failed", "publishing", "awaiting_moderation")]
    platforms = sorted(
        {(p["platform"], p["platform"]) for p in (data or {}).get("items", [])}
        | ({(q["platform"], q["platform"])} if q.get("platform") else set())
    )
    filters = (
        f'<form method="get" class="filters"><input type="hidden" name="team" value="{e(ctx.team)}">'
        + select_box("status", "Status", statuses)
        + select_box("platform", "Platform", platforms)
        + select_box("workflow_id", "Workflow", sorted(((k, v) for k, v in names.items()), key=lambda kv: kv[1]))
        + "<div><button>Filter</button></div></form>"
    )
    calendar_link = f'<p><a href="/kipu/ui/calendar?team={e(ctx.team)}">Calendar by day</a></p>'
    body = (
        calendar_link
        + filters
        + table(["When (UTC)", "Platform", "Status", "Caption", "Workflow", "Post", ""], rows, "No posts.")
    )
    return ctx.render("Posts", body, "posts")


@router.get("/calendar")
async def calendar(request: Request) -> Response:
    """The team's posts by day (UTC) for a month, each with its status and link."""
    import calendar as cal
    from datetime import UTC, datetime, timedelta

    ctx = await team_context(request, "Calendar", "posts")
    if isinstance(ctx, Response):
        return ctx
    try:
        first = datetime.strptime(request.query_params.get("month", ""), "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        now = datetime.now(UTC)
        first = datetime(now.year, now.month, 1, tzinfo=UTC)
    after = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
    params: dict[str, Any] = {"team": ctx.team, "limit": 200, "since": first.isoformat(), "until": after.isoformat()}
    by_day: dict[int, list[dict[str, Any]]] = {}
    for _ in range(10):  # at most 2,000 posts a month on one page
        code, page = await ctx.api("GET", "/posts", params=params)
        if code != 200:
            break
        for p in page["items"]:
            by_day.setdefault(int(p["created_at"][8:10]), []).append(p)
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]

    def cell(day: int) -> str:
        if day == 0:
            return ""
        items = "".join(
            "<li>"
            + (
                f'<a href="{e(p["url"])}" target="_blank" rel="noopener">{e(p["platform"])}</a>'
                if p["url"]
                else e(p["platform"])
            )
            + f' <span class="status">{e(p["status"])}</span></li>'
            for p in sorted(by_day.get(day, []), key=lambda p: p["created_at"])
        )
        return (
            f'<div class="day">{day}</div><ul class="muted">{items}</ul>' if items else f'<div class="day">{day}</div>'
        )

    weeks = cal.Calendar(firstweekday=0).monthdayscalendar(first.year, first.month)
    head = "".join(f"<th scope=col>{d}</th>" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    rows = "".join("<tr>" + "".join(f"<td>{cell(d)}</td>" for d in week) + "</tr>" for week in weeks)
    prev_month = (first - timedelta(days=1)).strftime("%Y-%m")
    nav = (
        f'<p><a href="/kipu/ui/calendar?team={e(ctx.team)}&amp;month={prev_month}">← {prev_month}</a> · '
        f"<b>{first:%B %Y}</b> · "
        f'<a href="/kipu/ui/calendar?team={e(ctx.team)}&amp;month={after:%Y-%m}">{after:%Y-%m} →</a> · '
        f'<a href="/kipu/ui/posts?team={e(ctx.team)}">table</a></p>'
    )
    grid = (
        f'<div class="table"><table class="calendar"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    )
    return ctx.render("Calendar", nav + grid, "posts")


@router.post("/posts/{post_id}/retry")
async def retry_post(request: Request, post_id: uuid.UUID) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, _ = got
    code, body = await ctx.api("POST", f"/posts/{post_id}/publish")
    if code < 300:
        return _back("posts", ctx.team, msg=f"Retried: {body['post']['status']}.")
    return _back("posts", ctx.team, err=_detail(body))


# -- approvals --------------------------------------------------------------------------------------------------------
@router.get("/approvals")
async def approvals(request: Request) -> Response:
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    code, items = await ctx.api("GET", "/approvals")
    cards = []
    for a in items if code == 200 else []:
        target = "/kipu/ui/approvals/" + "/".join(quote(a[k], safe="") for k in ("dag_id", "dag_run_id", "task_id"))
        mine = ctx.user in a["approvers"] or not a["approvers"]
        form = ""
        if mine:
            field = f"c-{abs(hash(target))}"
            form = (
                f'<form method="post" action="{e(target)}"><input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
                f'<label for="{field}">Comment</label><input id="{field}" name="comment" maxlength="2000"> '
                '<button name="decision" value="Approve">Approve</button> '
                '<button name="decision" value="Reject" class="danger">Reject</button></form>'
            )
        rewrites = "".join(
            f"<h3>Rewritten for {e(platform)}</h3><blockquote>{e(text)}</blockquote>"
            for platform, text in a.get("rewrites", {}).items()
        )
        cards.append(
            f"<article><h2>{e(a.get('title') or a['subject'])}</h2>"
            f"<h3>Original caption</h3><blockquote>{e(a.get('caption') or a['body'])}</blockquote>{rewrites}"
            f"{_media(a.get('media') or [])}"
            f'<p class="muted">{e(a["dag_id"])} · asked {e((a["created_at"] or "")[:16])} · approvers: '
            f"{e(', '.join(a['approvers']) or 'anyone in the team')}</p>{form}</article><hr>"
        )
    body = "".join(cards) or '<p class="muted">Nothing is waiting for an answer.</p>'
    return ctx.render("Approvals", body, "approvals")


def _media(urls: list[str]) -> str:
    """A preview per media item: the image or the video itself when the browser can load it, else its name."""
    shown = []
    for url in urls[:10]:
        name = e(url.rsplit("/", 1)[-1])
        low = url.lower().split("?", 1)[0]
        if not url.startswith(("https://", "http://")):
            shown.append(f'<li><span class="muted">{name}</span></li>')
        elif low.endswith((".jpg", ".jpeg", ".png", ".gif", ".webp")):
            shown.append(f'<li><img src="{e(url)}" alt="{name}" style="max-width:240px;max-height:240px"></li>')
        elif low.endswith((".mp4", ".mov", ".webm")):
            shown.append(f'<li><video src="{e(url)}" controls preload="metadata" style="max-width:320px"></video></li>')
        else:
            shown.append(f'<li><a href="{e(url)}" target="_blank" rel="noopener">{name}</a></li>')
    return f"<h3>Media</h3><ul>{''.join(shown)}</ul>" if shown else ""


@router.post("/approvals/{dag_id}/{run_id}/{task_id}")
async def answer(request: Request, dag_id: str, run_id: str, task_id: str) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    path = f"/approvals/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/{quote(task_id, safe='')}"
    code, body = await ctx.api(
        "POST", path, json={"decision": form.get("decision"), "comment": form.get("comment") or None}
    )
    if code < 300:
        return _back("approvals", ctx.team, msg=f"{form.get('decision')}d.")
    return _back("approvals", ctx.team, err=_detail(body))


# -- connections ----------------------------------------------------------------------------------------------------
@router.get("/connections")
async def connections(request: Request) -> Response:
    ctx = await team_context(request, "Connections", "connections")
    if isinstance(ctx, Response):
        return ctx
    code, rows = await ctx.api("GET", "/connections", params={"team": ctx.team})
    admin = ctx.may("admin")
    from starlette.concurrency import run_in_threadpool

    oauth_platforms = await run_in_threadpool(_oauth_platforms) if admin else []
    lines = []
    for c in rows if code == 200 else []:
        act = ""
        if admin and c["platform"] in oauth_platforms:
            act += button_form(f"/kipu/ui/connections/connect/{c['platform']}?team={ctx.team}", "Reconnect", ctx.csrf)
        if admin:
            act += f' <a href="/kipu/ui/connections/{e(c["id"])}/delete?team={e(ctx.team)}">Delete…</a>'
        lines.append(
            [
                e(c["platform"]),
                e(c["username"] or c["platform_user_id"]),
                _status(c["status"]),
                e((c["token_expires_at"] or "never")[:16]),
                e(", ".join(c["scopes"] or [])),
                e(c["last_error"] or ""),
                act,
            ]
        )
    body = table(
        ["Platform", "Account", "Health", "Token expires", "Scopes", "Problem", ""], lines, "No connected accounts."
    )
    if admin:
        body += (
            "<h2>Connect an account</h2><p>"
            + " ".join(
                button_form(f"/kipu/ui/connections/connect/{p}?team={ctx.team}", f"Connect {p}", ctx.csrf)
                for p in oauth_platforms
            )
            + "</p>"
            + _mastodon_form(ctx)
            + _bluesky_form(ctx)
        )
    return ctx.render("Connections", body, "connections")


def _oauth_platforms() -> list[str]:
    """The OAuth platforms this deployment has an app for (Mastodon needs an instance: the API or the CLI)."""
    from typing import get_args

    from kipu.auth import oauth
    from kipu.specs.common import OAuthPlatformName

    found = []
    for platform in get_args(OAuthPlatformName):
        if oauth.DEFAULT_APPS[platform].per_instance:
            continue
        try:
            oauth.app_for(platform)
        except Exception as exc:  # not configured in this deployment: no button
            logging.getLogger(__name__).debug("no %s OAuth app: %s", platform, exc)
        else:
            found.append(platform)
    return found


def _mastodon_form(ctx: Ctx) -> str:
    return (
        f'<h2>Mastodon</h2><form method="post" action="/kipu/ui/connections/connect/mastodon?team={e(ctx.team)}"'
        f' class="filters"><input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
        '<div><label for="mastodon-instance">Instance</label><input id="mastodon-instance" name="instance" required'
        ' maxlength="253" placeholder="mastodon.social"></div><div><button>Connect mastodon</button></div></form>'
    )


def _bluesky_form(ctx: Ctx) -> str:
    return (
        f'<h2>Bluesky</h2><form method="post" action="/kipu/ui/connections/bluesky?team={e(ctx.team)}" class="filters">'
        f'<input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
        '<div><label for="bsky-handle">Handle</label><input id="bsky-handle" name="handle" required maxlength="253"'
        ' placeholder="ana.bsky.social"></div>'
        '<div><label for="bsky-password">App password</label><input id="bsky-password" name="app_password"'
        ' type="password" required autocomplete="off"></div>'
        '<div><label for="bsky-service">Server (PDS)</label><input id="bsky-service" name="service"'
        ' value="https://bsky.social" maxlength="2048"></div><div><button>Connect Bluesky</button></div></form>'
    )


@router.post("/connections/connect/{platform}")
async def connect(request: Request, platform: str) -> Response:
    """Start the OAuth round trip: to the platform's consent page, back through the callback to this page. The state
    is bound to this signed-in session."""
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    if not ctx.may("admin"):
        return _back("connections", ctx.team, err="connecting accounts needs the admin role in the team")
    instance = (form.get("instance") or "").strip() or None
    from starlette.concurrency import run_in_threadpool

    from kipu.auth import oauth
    from kipu.store.accounts import find_team
    from kipu.store.engine import session_scope

    if platform == "mastodon":  # federated: Kipu registers itself at the instance first (through the egress guard)
        if instance is None:
            return _back("connections", ctx.team, err="instance: the Mastodon server to connect (e.g. mastodon.social)")
    elif platform not in await run_in_threadpool(_oauth_platforms):
        return _back("connections", ctx.team, err=f"{platform} has no OAuth app configured in this deployment")

    def begin() -> str:
        with session_scope() as s:
            return oauth.begin(
                s,
                oauth.app_for(platform, instance, s),
                find_team(s, ctx.team or ""),  # type: ignore[arg-type]
                ctx.caller.profile_id,
                session_user=ctx.user,
                return_to=f"/kipu/ui/connections?team={ctx.team}",
            )

    try:
        url = await run_in_threadpool(begin)
    except Exception as exc:  # the platform's or the configuration's words, on the page
        return _back("connections", ctx.team, err=str(exc))
    return RedirectResponse(url, status_code=303)


@router.post("/connections/bluesky")
async def connect_bluesky(request: Request) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    body = {k: form.get(k, "") for k in ("handle", "app_password", "service")}
    code, out = await ctx.api("POST", "/connections/bluesky", json={"team": ctx.team, **body})
    if code < 300:
        return _back("connections", ctx.team, msg=f"Connected: bluesky {out.get('username')}.")
    return _back("connections", ctx.team, err=_detail(out))


@router.get("/connections/{connection_id}/delete")
async def confirm_delete(request: Request, connection_id: uuid.UUID) -> Response:
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    code, c = await ctx.api("GET", f"/connections/{connection_id}")
    if code != 200:
        return _back("connections", ctx.team, err=_detail(c))
    body = (
        f"<p>Delete the {e(c['platform'])} account <b>{e(c['username'] or c['platform_user_id'])}</b>? Workflows "
        "that publish to it or poll it will fail until it is connected again.</p>"
        + button_form(f"/kipu/ui/connections/{connection_id}/delete?team={ctx.team}", "Delete", ctx.csrf, danger=True)
        + f' <a href="/kipu/ui/connections?team={e(ctx.team)}">Cancel</a>'
    )
    return ctx.render("Delete a connection", body, "connections")


@router.post("/connections/{connection_id}/delete")
async def delete_connection(request: Request, connection_id: uuid.UUID) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, _ = got
    code, body = await ctx.api("DELETE", f"/connections/{connection_id}")
    return _back("connections", ctx.team, **({"msg": "Connection deleted."} if code < 300 else {"err": _detail(body)}))


# -- tabs on Airflow's own pages ----------------------------------------------------------------------------------
def _owned_workflow(ctx: Ctx, dag_id: str) -> Any:
    from kipu.store.engine import session_scope
    from kipu.store.models import Workflow

    with session_scope() as s:
        wf = s.scalar(select(Workflow).where((Workflow.dag_id == dag_id) | (Workflow.legacy_dag_id == dag_id)))
        return wf if wf is not None and wf.team_id in ctx.caller.roles else None


@router.get("/dag")
async def dag_tab(request: Request, dag_id: str) -> Response:
    """The "Kipu" tab of a workflow's DAG: the workflow as Kipu stores it."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    from starlette.concurrency import run_in_threadpool

    wf = await run_in_threadpool(_owned_workflow, ctx, dag_id)
    if wf is None:
        return ctx.render("Kipu", '<p class="muted">This DAG is not a workflow of your teams.</p>')
    code, doc = await ctx.api("GET", f"/workflows/{wf.id}")
    text = yaml.safe_dump(doc["document"], sort_keys=False, allow_unicode=True) if code == 200 else _detail(doc)
    body = (
        f"<p>{_status(wf.status)} · team {e(ctx.slugs.get(wf.team_id))} · "
        f'<a href="/kipu/ui/posts?team={e(ctx.slugs.get(wf.team_id))}&amp;workflow_id={e(wf.id)}">its posts</a></p>'
        f"<pre>{e(text)}</pre>"
    )
    return ctx.render(wf.name, body)


@router.get("/run")
async def run_tab(request: Request, dag_id: str, run_id: str) -> Response:
    """The "Kipu item" tab of a DAG run: the item, each step's outcome and the posts."""
    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx
    from starlette.concurrency import run_in_threadpool

    from kipu.store.engine import session_scope
    from kipu.store.models import Post, Workflow, WorkflowRun, WorkflowStep, WorkflowStepRun

    # Airflow puts the run id into the tab's URL as it is; a "+" of its timestamp arrives as a space, and run ids
    # have no spaces.
    run_id = run_id.replace(" ", "+")

    def load() -> dict[str, Any] | None:
        with session_scope() as s:
            row = s.execute(
                select(WorkflowRun, Workflow.team_id)
                .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
                .where(WorkflowRun.dag_id == dag_id, WorkflowRun.dag_run_id == run_id)
            ).first()
            if row is None or row[1] not in ctx.caller.roles:
                return None
            run = row[0]
            steps = s.execute(
                select(WorkflowStep.step_key, WorkflowStepRun.status, WorkflowStepRun.output_data)
                .join(WorkflowStepRun, WorkflowStepRun.step_id == WorkflowStep.id)
                .where(WorkflowStepRun.run_id == run.id)
                .order_by(WorkflowStep.order_index)
            ).all()
            posts = s.scalars(select(Post).where(Post.workflow_run_id == run.id)).all()
            return {"run": run, "steps": steps, "posts": posts}

    found = await run_in_threadpool(load)
    if found is None:
        return ctx.render("Kipu item", '<p class="muted">This run carries no item of your teams.</p>')
    run, item = found["run"], found["run"].trigger_data or {}
    steps = table(
        ["Step", "Outcome", "Detail"],
        [
            [
                e(k),
                _status(st),
                e((out or {}).get("dropped") or (out or {}).get("branch") or (out or {}).get("caption") or ""),
            ]
            for k, st, out in found["steps"]
        ],
        "No step has run yet.",
    )
    posts = table(
        ["Platform", "Status", "Link or error"],
        [
            [
                e(p.platform),
                _status(p.status),
                (
                    f'<a href="{e(p.platform_url)}" target="_blank" rel="noopener">open</a>'
                    if p.platform_url
                    else e(p.error_message or "")
                ),
            ]
            for p in found["posts"]
        ],
        "No posts.",
    )
    body = (
        f"<p>{_status(run.status)}{(' · ' + e(run.error_message)) if run.error_message else ''}</p>"
        f"<h2>Item</h2><p><b>{e(item.get('title') or item.get('platform_post_id'))}</b> from "
        f"{e(item.get('platform'))}</p><blockquote>{e(item.get('caption'))}</blockquote>"
        f"<h2>Steps</h2>{steps}<h2>Posts</h2>{posts}"
    )
    return ctx.render("Kipu item", body)


# -- media ------------------------------------------------------------------------------------------------------------
UPLOAD_JS = """
const form = document.getElementById('upload'), bar = document.getElementById('progress');
const note = document.getElementById('upload-state');
form.addEventListener('submit', ev => {
  ev.preventDefault();
  const xhr = new XMLHttpRequest();
  xhr.open('POST', form.action);
  xhr.setRequestHeader('X-Kipu-CSRF', form.dataset.csrf);
  xhr.upload.onprogress = e => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
  xhr.onload = () => {
    const out = JSON.parse(xhr.responseText || '{}');
    if (xhr.status < 300) { note.textContent = 'Uploaded ' + out.filename + '.'; location.reload(); }
    else {
      const why = typeof out.detail === 'string' ? out.detail : JSON.stringify(out.detail);
      note.textContent = 'Refused: ' + why;
    }
  };
  xhr.onerror = () => { note.textContent = 'The upload failed; try again.'; };
  note.textContent = 'Uploading…';
  xhr.send(new FormData(form));
});
"""


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _preview(m: dict[str, Any]) -> str:
    src = m["url"] if m["url"].startswith("https://") else f"/kipu/ui/media/{m['id']}/content"
    kind = m.get("mime_type") or ""
    if kind.startswith("image/"):
        return f'<img src="{e(src)}" alt="{e(m["filename"])}" loading="lazy" style="max-width:160px;max-height:120px">'
    if kind.startswith("video/"):
        return f'<video src="{e(src)}" controls preload="metadata" style="max-width:200px"></video>'
    return f'<a href="{e(src)}">{e(m["filename"])}</a>'


MEDIA_PAGE = 100


@router.get("/media")
async def media(request: Request) -> Response:
    """The media library: folders, files with previews, and an upload with progress (members and up)."""
    ctx = await team_context(request, "Media", "media")
    if isinstance(ctx, Response):
        return ctx
    folder = request.query_params.get("folder_id") or None
    offset = request.query_params.get("offset") or "0"
    _, folders = await ctx.api("GET", "/media/folders", params={"team": ctx.team})
    where = {"team": ctx.team, **({"folder_id": folder} if folder else {})}
    code, items = await ctx.api("GET", "/media", params={**where, "limit": MEDIA_PAGE + 1, "offset": offset})
    if code != 200:
        return _back("media", ctx.team, err=_detail(items))
    more, items = len(items) > MEDIA_PAGE, items[:MEDIA_PAGE]
    crumbs = [f'<a href="/kipu/ui/media?team={e(ctx.team)}">All (top level)</a>'] + [
        f'<a href="/kipu/ui/media?team={e(ctx.team)}&amp;folder_id={e(f["id"])}"'
        + (" aria-current=page" if f["id"] == folder else "")
        + f">{e(f['name'])}</a>"
        for f in folders or []
    ]
    rows = [
        [
            _preview(m),
            e(m["filename"]),
            e(m["mime_type"]),
            e(_size(m["size_bytes"] or 0)),
            f"<code>{e(m['ref'])}</code>",
        ]
        for m in items
    ]
    body = (
        "<p>Folders: "
        + " · ".join(crumbs)
        + "</p>"
        + table(["Preview", "File", "Type", "Size", "Use in an item as"], rows, "No media here yet.")
    )
    if more:  # the API's page: a library grows without bound, a page must not
        try:
            start = int(offset)
        except ValueError:  # the API took it, so this is not reached; a page never fails on its query
            start = 0
        after = urlencode({**where, "offset": start + MEDIA_PAGE})
        body += f'<p><a href="/kipu/ui/media?{e(after)}">Next {MEDIA_PAGE} files →</a></p>'
    if ctx.may("member"):
        q = f"team={e(ctx.team)}" + (f"&amp;folder_id={e(folder)}" if folder else "")
        body += (
            f'<h2>Upload</h2><form id="upload" method="post" enctype="multipart/form-data" data-csrf="{e(ctx.csrf)}"'
            f' action="/kipu/ui/media/upload?{q}" class="filters"><div><label for="file">File</label>'
            '<input id="file" name="file" type="file" required></div><div><button>Upload</button></div>'
            '<div><label for="progress">Progress</label><progress id="progress" value="0" max="1"></progress></div>'
            '</form><p id="upload-state" role="status"></p>'
            f"<script>{UPLOAD_JS}</script>"
            "<h2>New folder</h2>"
            f'<form method="post" action="/kipu/ui/media/folders?team={e(ctx.team)}" class="filters">'
            f'<input type="hidden" name="csrf" value="{e(ctx.csrf)}"><div><label for="folder-name">Name</label>'
            '<input id="folder-name" name="name" required maxlength="200"></div><div><button>Create folder</button>'
            "</div></form>"
        )
    return ctx.render("Media", body, "media")


@router.post("/media/upload")
async def upload_media(request: Request) -> Response:
    """The page's upload, forwarded to the API's streamed upload as the signed-in person (its limits and checks)."""
    from fastapi.responses import JSONResponse

    ctx = await context(request, csrf_header=True)
    if isinstance(ctx, Response):
        return ctx
    named = request.query_params.get("team")
    if named is None or named != ctx.team:  # an action never falls back to another team
        return JSONResponse({"detail": f"you are not in team {named!r}"}, status_code=404)
    if not ctx.may("member"):  # refused before the body is read, as the API would
        return JSONResponse({"detail": "uploading needs the member role in the team"}, status_code=403)
    from fastapi import HTTPException
    from starlette.datastructures import UploadFile

    from kipu.api.routes.media import one_file_form

    try:
        form = await one_file_form(request)
    except HTTPException as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            return JSONResponse({"detail": "file: required"}, status_code=422)
        params = {
            "team": ctx.team,
            **({"folder_id": request.query_params["folder_id"]} if request.query_params.get("folder_id") else {}),
        }
        files = {"file": (file.filename or "upload", file.file, file.content_type or "application/octet-stream")}
        code, body = await ctx.api("POST", "/media/upload", params=params, files=files)
    finally:
        await form.close()
    return JSONResponse(body, status_code=code)


@router.post("/media/folders")
async def create_folder(request: Request) -> Response:
    got = await posted(request)
    if isinstance(got, Response):
        return got
    ctx, form = got
    code, body = await ctx.api("POST", "/media/folders", json={"team": ctx.team, "name": form.get("name", "")})
    return _back(
        "media", ctx.team, **({"msg": f"Folder '{body['name']}' created."} if code < 300 else {"err": _detail(body)})
    )


@router.get("/media/{media_id}/content")
async def media_content(request: Request, media_id: uuid.UUID) -> Response:
    """A library file's bytes for its preview (local storage; S3 media previews from its presigned URL)."""
    from fastapi.responses import FileResponse
    from starlette.concurrency import run_in_threadpool

    ctx = await context(request)
    if isinstance(ctx, Response):
        return ctx

    def find() -> tuple[str, str | None] | None:
        from kipu.store.engine import session_scope
        from kipu.store.models import Media

        with session_scope() as s:
            m = s.get(Media, media_id)
            if m is None or m.team_id not in ctx.caller.roles or m.storage_path.startswith("s3://"):
                return None
            return m.storage_path, m.mime_type

    found = await run_in_threadpool(find)
    if found is None:
        return HTMLResponse("not found", status_code=404)
    return FileResponse(found[0], media_type=found[1] or "application/octet-stream")
