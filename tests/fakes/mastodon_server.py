"""A fake Mastodon instance: app registration, OAuth with PKCE, the instance description, async media, statuses with
idempotency keys and scheduling, an account's statuses, ``X-RateLimit-*`` headers, and the documented errors.

It follows docs.joinmastodon.org: ``POST /api/v1/apps``, ``/oauth/authorize`` and ``/oauth/token``,
``GET /api/v2/instance``, ``POST /api/v2/media`` (200 for an image, 202 for a video, then ``GET /api/v1/media/:id``
206 until processed), ``POST /api/v1/statuses`` (``Idempotency-Key``, ``scheduled_at`` at least 5 minutes ahead,
the status limit counted like StatusLengthValidator), ``GET /api/v1/accounts/:id/statuses`` (``since_id``, ``min_id``,
``max_id``, ``limit`` up to 40), and ``{"error": ...}`` bodies with 401, 404, 422, 429 and 503.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tests.fakes.serve import FakeService

URL = re.compile(r"https?://[^\s<]+[^\s<.,:;\"')\]!?]")
MENTION = re.compile(r"(?<![=/\w])@(([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@[\w.-]+\w+)?)", re.I)
TAG = re.compile(r"(?<![=/)\w])#(\w+)")


def _graphemes(text: str) -> int:
    import regex

    return len(regex.findall(r"\X", text))


def countable(text: str, spoiler: str) -> int:
    """StatusLengthValidator: the content warning and the text in one budget; URLs as 23, remote mentions local."""
    text = URL.sub("x" * 23, text)
    text = MENTION.sub(lambda m: "@" + m.group(2), text)
    return _graphemes(spoiler + text)


def render(text: str, base: str) -> str:
    """A status's HTML as Mastodon renders it: paragraphs, line breaks, links split into visible spans."""

    def link(m: re.Match[str]) -> str:
        url = m.group(0)
        scheme, rest = url.split("://", 1)
        return (
            f'<a href="{html.escape(url)}" rel="nofollow noopener" target="_blank">'
            f'<span class="invisible">{scheme}://</span><span class="ellipsis">{html.escape(rest[:30])}</span>'
            f'<span class="invisible">{html.escape(rest[30:])}</span></a>'
        )

    def piece(chunk: str) -> str:
        out, pos = [], 0
        for m in URL.finditer(chunk):
            out.append(_entities(html.escape(chunk[pos : m.start()], quote=False), base))
            out.append(link(m))
            pos = m.end()
        out.append(_entities(html.escape(chunk[pos:], quote=False), base))
        return "".join(out)

    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p]
    return "".join(f"<p>{'<br />'.join(piece(line) for line in p.split(chr(10)))}</p>" for p in paragraphs)


def _entities(escaped: str, base: str) -> str:
    escaped = MENTION.sub(
        lambda m: (
            f'<span class="h-card"><a href="{base}/@{m.group(1)}" class="u-url mention">@<span>{m.group(2)}'
            "</span></a></span>"
        ),
        escaped,
    )
    return TAG.sub(
        lambda m: (
            f'<a href="{base}/tags/{m.group(1)}" class="mention hashtag" rel="tag">#<span>{m.group(1)}</span></a>'
        ),
        escaped,
    )


@dataclass
class MastodonState:
    domain: str = "social.example"
    account_id: str = "109000000000000001"
    username: str = "ana"
    max_characters: int = 500
    max_media_attachments: int = 4
    image_size_limit: int = 16 * 1024 * 1024
    video_size_limit: int = 99 * 1024 * 1024
    describe_instance: bool = True  # False: /api/v2/instance answers 404 (an old or odd server)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)  # client_id -> registration
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    scheduled: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)  # key -> status or scheduled status id
    processing_polls: int = 2  # GETs answered 206 before a video is processed
    fail_processing: bool = False
    fail_next: int = 0  # 503s
    throttle_next: int = 0  # 429s
    rate_limit: int = 300
    rate_window: float = 300.0
    requests: list[tuple[str, str]] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: itertools.count(110_000_000_000_000_000))
    window_start: float = field(default_factory=time.time)
    used: int = 0

    def next_id(self) -> str:
        return str(next(self.ids))

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def add_status(
        self,
        text: str,
        *,
        visibility: str = "public",
        media: list[dict[str, Any]] | None = None,
        created_at: datetime | None = None,
        base: str = "",
        spoiler: str = "",
        **extra: Any,
    ) -> dict:
        sid = self.next_id()
        status = {
            "id": sid,
            "created_at": (created_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "visibility": visibility,
            "spoiler_text": spoiler,
            "sensitive": bool(extra.get("sensitive")),
            "language": extra.get("language"),
            "content": render(text, base),
            "url": f"{base}/@{self.username}/{sid}",
            "media_attachments": media or [],
            "tags": [{"name": t.lower(), "url": f"{base}/tags/{t.lower()}"} for t in TAG.findall(text)],
            "in_reply_to_id": extra.get("in_reply_to_id"),
            "reblog": None,
            "application": {"name": "Kipu", "website": None},
            "account": {"id": self.account_id, "username": self.username, "acct": self.username},
            "_text": text,
        }
        self.statuses.append(status)
        return status

    def publish_due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Publish every scheduled status whose time has come (Mastodon's scheduler)."""
        now = now or datetime.now(UTC)
        done = []
        for sid, sched in list(self.scheduled.items()):
            when = datetime.fromisoformat(sched["scheduled_at"].replace("Z", "+00:00"))
            if when <= now:
                params, media = sched["params"], sched["media_attachments"]
                done.append(self.add_status(params["text"], base=sched["_base"], media=media, created_at=when))
                del self.scheduled[sid]
        return done


def _error(message: str, code: int, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code, headers=headers)


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if not k.startswith("_")}


def build_app(m: MastodonState, base: str) -> FastAPI:
    app = FastAPI()

    def window_headers() -> dict[str, str]:
        if time.time() - m.window_start > m.rate_window:
            m.window_start, m.used = time.time(), 0
        reset = datetime.fromtimestamp(m.window_start + m.rate_window, UTC).isoformat().replace("+00:00", "Z")
        return {
            "X-RateLimit-Limit": str(m.rate_limit),
            "X-RateLimit-Remaining": str(max(0, m.rate_limit - m.used)),
            "X-RateLimit-Reset": reset,
        }

    @app.middleware("http")
    async def limits(request: Request, call_next: Any) -> Response:
        m.requests.append((request.method, request.url.path))
        if request.url.path.startswith("/api/") and request.url.path not in ("/api/v1/apps",):
            if not request.url.path.endswith("/instance"):
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                if token not in m.tokens:
                    return _error("The access token is invalid", 401)
            m.used += 1
            headers = window_headers()
            if m.throttle_next > 0 or m.used > m.rate_limit:
                m.throttle_next = max(0, m.throttle_next - 1)
                return _error("Too many requests", 429, **{**headers, "X-RateLimit-Remaining": "0"})
            if m.fail_next > 0:
                m.fail_next -= 1
                return _error("Service Unavailable", 503)
            response = await call_next(request)
            for key, value in headers.items():
                response.headers[key] = value
            return response
        return await call_next(request)

    # -- apps and OAuth ----------------------------------------------------------------------------------------------
    @app.post("/api/v1/apps")
    async def register(request: Request) -> Response:
        form = await _params(request)
        if not form.get("client_name"):
            return _error("Validation failed: Application name can't be blank", 422)
        redirect = str(form.get("redirect_uris") or "")
        if not redirect.startswith(("https://", "http://")) and redirect != "urn:ietf:wg:oauth:2.0:oob":
            return _error("Validation failed: Redirect URI must be an absolute URI.", 422)
        client_id, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
        m.apps[client_id] = {"secret": secret, "redirect_uri": redirect, "scopes": str(form.get("scopes") or "read")}
        return JSONResponse(
            {
                "id": m.next_id(),
                "name": form["client_name"],
                "website": form.get("website"),
                "scopes": m.apps[client_id]["scopes"].split(),
                "redirect_uri": redirect,
                "redirect_uris": [redirect],
                "client_id": client_id,
                "client_secret": secret,
                "client_secret_expires_at": 0,
            }
        )

    @app.get("/oauth/authorize")
    def authorize(request: Request) -> Response:
        """The user approves at once (a browser would show a consent page); PKCE's challenge is kept."""
        q = request.query_params
        registered = m.apps.get(q.get("client_id", ""))
        if registered is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if q.get("redirect_uri") != registered["redirect_uri"]:
            return JSONResponse({"error": "invalid_redirect_uri"}, status_code=400)
        if not set((q.get("scope") or "read").split()) <= set(registered["scopes"].split()):
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        code = secrets.token_urlsafe(16)
        m.codes[code] = {
            "client_id": q["client_id"],
            "redirect_uri": q["redirect_uri"],
            "challenge": q.get("code_challenge"),
        }
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        form = await _params(request)
        registered = m.apps.get(str(form.get("client_id")))
        if registered is None or registered["secret"] != form.get("client_secret"):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, status_code=401
            )
        grant = m.codes.pop(str(form.get("code")), None)
        invalid = {
            "error": "invalid_grant",
            "error_description": "The provided authorization grant is invalid, expired, revoked, does not match "
            "the redirection URI used in the authorization request, or was issued to another client.",
        }
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return JSONResponse(invalid, status_code=400)
        if grant["challenge"]:
            verifier = str(form.get("code_verifier") or "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if expected != grant["challenge"]:
                return JSONResponse(invalid, status_code=400)
        return JSONResponse(
            {"access_token": m.issue(), "token_type": "Bearer", "scope": registered["scopes"], "created_at": 0}
        )

    # -- accounts and the instance -----------------------------------------------------------------------------------
    @app.get("/api/v1/accounts/verify_credentials")
    def me() -> Response:
        return JSONResponse(
            {"id": m.account_id, "username": m.username, "acct": m.username, "url": f"{base}/@{m.username}"}
        )

    @app.get("/api/v2/instance")
    def instance() -> Response:
        if not m.describe_instance:
            return _error("Record not found", 404)
        return JSONResponse(
            {
                "domain": m.domain,
                "configuration": {
                    "urls": {"streaming": "wss://" + m.domain},
                    "statuses": {
                        "max_characters": m.max_characters,
                        "max_media_attachments": m.max_media_attachments,
                        "characters_reserved_per_url": 23,
                    },
                    "media_attachments": {
                        "supported_mime_types": ["image/jpeg", "image/png", "video/mp4"],
                        "image_size_limit": m.image_size_limit,
                        "video_size_limit": m.video_size_limit,
                        "description_limit": 1500,
                    },
                },
            }
        )

    @app.get("/api/v1/instance")
    def instance_v1() -> Response:
        return _error("Record not found", 404)

    # -- media -----------------------------------------------------------------------------------------------------
    @app.post("/api/v2/media")
    async def upload(request: Request) -> Response:
        form = await request.form()
        file = form.get("file")
        if file is None or isinstance(file, str):
            return _error("Validation failed: File content type is invalid, File is invalid", 422)
        kind = (file.content_type or "").split("/")[0]
        if kind not in ("image", "video"):
            return _error("Validation failed: File content type is invalid, File is invalid", 422)
        data = await file.read()
        limit = m.video_size_limit if kind == "video" else m.image_size_limit
        if len(data) > limit:
            return _error(f"Validation failed: File file size must be less than {limit} Bytes", 422)
        description = str(form.get("description") or "")
        if len(description) > 1500:
            return _error("Validation failed: Description is too long (maximum is 1500 characters)", 422)
        mid = m.next_id()
        video = kind == "video"
        m.media[mid] = {
            "id": mid,
            "type": kind,
            "url": None if video else f"{base}/files/{mid}",
            "preview_url": f"{base}/files/{mid}/small",
            "description": description or None,
            "_bytes": len(data),
            "_polls": m.processing_polls if video else 0,
            "_used": False,
        }
        return JSONResponse(_public(m.media[mid]), status_code=202 if video else 200)

    @app.get("/api/v1/media/{mid}")
    def media(mid: str) -> Response:
        item = m.media.get(mid)
        if item is None:
            return _error("Record not found", 404)
        if item["_polls"] > 0:
            item["_polls"] -= 1
            return Response(status_code=206)
        if m.fail_processing and item["type"] == "video":
            return _error("There was an error processing the media attachment", 422)
        item["url"] = f"{base}/files/{mid}"
        return JSONResponse(_public(item))

    # -- statuses --------------------------------------------------------------------------------------------------
    @app.post("/api/v1/statuses")
    async def create(request: Request) -> Response:
        body = await _params(request)
        key = request.headers.get("idempotency-key")
        if key and key in m.idempotency:
            known = m.idempotency[key]
            found = m.scheduled.get(known) or next((s for s in m.statuses if s["id"] == known), None)
            if found is not None:
                return JSONResponse(_public(found))
        text = str(body.get("status") or "")
        spoiler = str(body.get("spoiler_text") or "")
        media_ids = [str(i) for i in body.get("media_ids") or body.get("media_ids[]") or []]
        if not text and not media_ids:
            return _error("Validation failed: Text can't be blank", 422)
        if countable(text, spoiler) > m.max_characters:
            return _error(f"Validation failed: Text character limit of {m.max_characters} exceeded", 422)
        if len(media_ids) > m.max_media_attachments:
            return _error("Validation failed: Media attachments exceed the limit", 422)
        attachments = []
        for mid in media_ids:
            item = m.media.get(mid)
            if item is None or item["_used"]:
                return _error("Record not found", 404)
            if item["url"] is None:
                return _error("Cannot attach files that have not finished processing. Try again in a moment!", 422)
            attachments.append(_public(item))
        if len([a for a in attachments if a["type"] == "video"]) and len(attachments) > 1:
            return _error("Cannot attach a video to a post that already contains images", 422)
        visibility = body.get("visibility") or "public"
        if visibility not in ("public", "unlisted", "private", "direct"):
            return _error("Validation failed: Visibility is not included in the list", 422)
        language = body.get("language")
        if language is not None and not re.fullmatch(r"[a-z]{2,3}", str(language)):
            return _error("Validation failed: Language is not a valid ISO 639 code", 422)
        for item in (m.media[mid] for mid in media_ids):
            item["_used"] = True
        if body.get("scheduled_at"):
            when = datetime.fromisoformat(str(body["scheduled_at"]).replace("Z", "+00:00"))
            if when < datetime.now(UTC) + timedelta(minutes=5):
                return _error("Validation failed: Scheduled at The scheduled date must be in the future", 422)
            sid = m.next_id()
            m.scheduled[sid] = {
                "id": sid,
                "scheduled_at": body["scheduled_at"],
                "params": {"text": text, "visibility": visibility, "spoiler_text": spoiler or None},
                "media_attachments": attachments,
                "_base": base,
            }
            if key:
                m.idempotency[key] = sid
            return JSONResponse(_public(m.scheduled[sid]))
        status = m.add_status(
            text,
            visibility=visibility,
            media=attachments,
            base=base,
            spoiler=spoiler,
            sensitive=body.get("sensitive"),
            language=language,
        )
        if key:
            m.idempotency[key] = status["id"]
        return JSONResponse(_public(status))

    @app.get("/api/v1/statuses/{sid}")
    def status(sid: str) -> Response:
        found = next((s for s in m.statuses if s["id"] == sid), None)
        return JSONResponse(_public(found)) if found else _error("Record not found", 404)

    @app.get("/api/v1/scheduled_statuses/{sid}")
    def scheduled(sid: str) -> Response:
        found = m.scheduled.get(sid)
        return JSONResponse(_public(found)) if found else _error("Record not found", 404)

    @app.get("/api/v1/accounts/{account_id}/statuses")
    def account_statuses(request: Request, account_id: str) -> Response:
        if account_id != m.account_id:
            return _error("Record not found", 404)
        q = request.query_params
        try:
            limit = min(int(q.get("limit", 20)), 40)
        except ValueError:
            return _error("Validation failed: limit must be a number", 422)
        rows = list(m.statuses)
        if q.get("exclude_replies") == "true":
            rows = [s for s in rows if not s["in_reply_to_id"]]
        if q.get("max_id"):
            rows = [s for s in rows if int(s["id"]) < int(q["max_id"])]
        if q.get("since_id"):
            rows = [s for s in rows if int(s["id"]) > int(q["since_id"])]
        if q.get("min_id"):  # the statuses right after min_id, still newest first
            rows = [s for s in rows if int(s["id"]) > int(q["min_id"])]
        rows = rows[:limit] if q.get("min_id") else rows[-limit:]
        return JSONResponse([_public(s) for s in reversed(rows)])

    return app


async def _params(request: Request) -> dict[str, Any]:
    """A JSON or form body, as Mastodon's API takes either."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        return body if isinstance(body, dict) else {}
    form = await request.form()
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key.endswith("[]"):
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


class MastodonServer(FakeService):
    state: MastodonState

    def __init__(self, **state: Any) -> None:
        super().__init__(MastodonState(**state), build_app)
