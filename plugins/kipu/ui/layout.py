"""The pages' HTML: one layout (navigation, team switcher, messages), tables and forms with labels and a visible
keyboard focus, readable from a phone's width up. Every value goes through ``e`` (escaped)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

PAGES = (
    ("workflows", "Workflows"),
    ("posts", "Posts"),
    ("approvals", "Approvals"),
    ("connections", "Connections"),
    ("media", "Media"),
    ("team", "Team"),
)
CSS = """
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid #d0d7de}
header strong{margin-right:.5rem}nav a{margin-right:.8rem;color:#0b5cad;text-decoration:none}
nav a[aria-current=page]{font-weight:700;text-decoration:underline}
main{padding:1rem;max-width:1200px}.table{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #eaeef2;vertical-align:top}
button,select,input,textarea{font:inherit;padding:.3rem .6rem;border:1px solid #8c959f;border-radius:4px}
button,select{background:#f6f8fa}
button.danger{border-color:#cf222e;color:#cf222e}textarea{width:100%;min-height:6rem}
:focus-visible{outline:3px solid #0969da;outline-offset:2px}
.msg{padding:.5rem .8rem;border-radius:4px;background:#ddf4ff;margin-bottom:1rem}.err{background:#ffebe9}
.status{font-weight:600}.muted{color:#57606a}form.inline{display:inline}label{margin-right:.3rem}
.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin-bottom:1rem}
.filters div{display:flex;flex-direction:column}
table.calendar td{width:14%;min-width:6rem;height:5rem}.calendar ul{padding-left:1rem;margin:.2rem 0}
.day{font-weight:600}
@media (max-width:600px){td,th{font-size:14px}header{padding:.5rem}main{padding:.5rem}}
"""


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(
    title: str,
    body: str,
    *,
    user: str,
    current: str = "",
    team: str | None = None,
    teams: Iterable[str] = (),
    message: str | None = None,
    error: str | None = None,
) -> str:
    q = f"?team={e(team)}" if team else ""
    links = "".join(
        f'<a href="/kipu/ui/{key}{q}"{" aria-current=page" if key == current else ""}>{label}</a>'
        for key, label in PAGES
    )
    options = "".join(f'<option value="{e(t)}"{" selected" if t == team else ""}>{e(t)}</option>' for t in teams)
    switch = (
        f'<form method="get" class="inline"><label for="team">Team</label>'
        f'<select id="team" name="team" onchange="this.form.submit()">{options}</select>'
        "<noscript><button>Go</button></noscript></form>"
        if options
        else ""
    )
    note = (f'<p class="msg" role="status">{e(message)}</p>' if message else "") + (
        f'<p class="msg err" role="alert">{e(error)}</p>' if error else ""
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)} · Kipu</title>'
        f"<style>{CSS}</style></head><body><header><strong>Kipu</strong><nav aria-label=Kipu>{links}</nav>{switch}"
        f'<span class="muted">signed in as {e(user)}</span></header><main><h1>{e(title)}</h1>{note}{body}</main>'
        "</body></html>"
    )


def table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th scope=col>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def button_form(
    action: str, label: str, csrf: str, *, danger: bool = False, fields: dict[str, str] | None = None, extra: str = ""
) -> str:
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (fields or {}).items())
    cls = ' class="danger"' if danger else ""
    return (
        f'<form method="post" action="{e(action)}" class="inline"><input type="hidden" name="csrf" value="{e(csrf)}">'
        f"{hidden}{extra}<button{cls}>{e(label)}</button></form>"
    )
