"""A fake Meta Graph API for Instagram, Threads and Facebook Pages: containers that process then FINISH (or ERROR,
EXPIRE, never finish), publishing quotas, Page vs user tokens, Reels start → rupload (offset/file_size checked) →
finish → status, expired tokens (190/463), throttling (429 or Graph code 4 with usage headers), the refresh grants,
a /media route so "Meta fetches the URL" really happens, and the connect flow of each product: the authorization
window (consents at once and redirects with a single-use code), the code exchanges (Instagram Login's
``{"data": [...]}`` answer, Threads', Facebook Login's), the long-lived exchanges (``ig_exchange_token``,
``th_exchange_token``, ``fb_exchange_token``) and ``/me/accounts`` with Page tokens (any number of Pages, zero
included, paged by cursor). Everything published is recorded so tests can count."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.serve import FakeService

HOUR = 3600
LONG_LIVED = 60 * 24 * HOUR
NEVER = 10 * 365 * 24 * HOUR  # Page tokens obtained with a long-lived user token do not expire
PAGE_TASKS = ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]


@dataclass
class Token:
    platform: str  # instagram | threads | facebook
    owner: str  # the account the token acts as: IG user, Threads user, Page id or Facebook user id
    kind: str = "user"  # facebook: page | user
    expires_at: float = 0.0
    invalid_subcode: int | None = None  # 190 with this subcode (460: password changed, 458: app removed, ...)
    short: bool = False  # a short-lived (1 h) token from a code exchange


@dataclass
class MetaState:
    ig_user: str = "17841400000000001"
    ig_username: str = "ana.cooks"
    threads_user: str = "25000000000000001"
    page_id: str = "104000000000001"
    page_name: str = "Ana's Kitchen"
    fb_user: str = "100000000000077"
    fb_user_name: str = "Ana Cook"
    tokens: dict[str, Token] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)  # every rupload request's headers and byte count
    files: dict[str, bytes] = field(default_factory=dict)  # served at /media/{name}
    requests: list[tuple[str, str]] = field(default_factory=list)
    refreshes: int = 0
    # behaviours
    image_polls: int = 0  # status polls before an image container is FINISHED
    video_polls: int = 2  # ... and a video container
    outcome: str = "FINISHED"  # FINISHED | ERROR | EXPIRED | STUCK
    error_message: str | None = None
    throttle_next: int = 0
    throttle: str = "http429"  # http429 | code4
    quota_usage: dict[str, int] = field(default_factory=lambda: {"instagram": 0, "threads": 0})
    quota_total: dict[str, int] = field(default_factory=lambda: {"instagram": 100, "threads": 250})
    lose_publish_response: int = 0  # the publish lands but the answer is a transient error (ambiguous failure)
    upload_break_at: int | None = None  # rupload keeps this many bytes, then fails retriably (once)
    upload_reject: bool = False  # rupload refuses the bytes (not retriable)
    reel_polls: int = 1  # status polls after finish before a Reel is ready
    reel_outcome: str = "ready"  # ready | error | stuck
    ids: Any = field(default_factory=lambda: itertools.count(18_000_000_000_000_001))
    # connecting: one app (client id, secret) per product, as Meta gives them
    apps: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {
            p: (f"{p}-app-{n}", f"{p}-secret-{secrets.token_hex(12)}")
            for n, p in enumerate(("instagram", "threads", "facebook"), 1001)
        }
    )
    pages: dict[str, str] | None = None  # Page id → name the Facebook user manages; None: the one Page above
    page_tasks: list[str] = field(default_factory=lambda: list(PAGE_TASKS))
    accounts_page_size: int = 25  # /me/accounts answers at most this many Pages per request
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # authorization code → platform, redirect_uri
    exchanges: list[str] = field(default_factory=list)  # every grant_type exchanged, in order
    # the next long-lived exchange is refused with this message ({secret} and {token} are filled in, as if Meta
    # echoed the parameters back)
    refuse_exchange: str | None = None

    def __post_init__(self) -> None:
        if self.pages is None:
            self.pages = {self.page_id: self.page_name}

    def issue(
        self, platform: str, owner: str | None = None, kind: str = "user", ttl: float = LONG_LIVED, short: bool = False
    ) -> str:
        default = {"instagram": self.ig_user, "threads": self.threads_user, "facebook": self.page_id}[platform]
        token = f"{platform[:2].upper()}{secrets.token_urlsafe(24)}"
        self.tokens[token] = Token(
            platform, owner or default, kind, time.time() + (HOUR if short else ttl), short=short
        )
        return token

    def platform_of(self, client_id: str | None) -> str | None:
        return next((p for p, (cid, _) in self.apps.items() if cid == client_id), None)

    def page_token(self) -> str:
        return self.issue("facebook", self.page_id, "page")

    def user_token(self) -> str:
        return self.issue("facebook", self.fb_user, "user")

    def expire(self, token: str) -> None:
        self.tokens[token].expires_at = time.time() - 60

    def new_id(self) -> str:
        return str(next(self.ids))

    def posts(self, platform: str) -> list[dict[str, Any]]:
        return [p for p in self.published if p["platform"] == platform]


def graph_error(
    message: str,
    code: int,
    subcode: int | None = None,
    status: int = 400,
    kind: str = "OAuthException",
    user_msg: str | None = None,
    transient: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": "AfakeTrace"}
    if subcode is not None:
        body["error_subcode"] = subcode
    if user_msg:
        body["error_user_msg"] = user_msg
    body["is_transient"] = transient
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def build_app(st: MetaState, base: str) -> FastAPI:
    app = FastAPI()

    async def params_of(request: Request) -> dict[str, str]:
        """Graph takes parameters in the query string or a form body alike."""
        out = dict(request.query_params)
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            out |= {k: str(v) for k, v in (await request.form()).items()}
        return out

    def bearer(request: Request, params: dict[str, str]) -> str:
        auth = request.headers.get("authorization", "")
        for scheme in ("Bearer ", "OAuth "):
            if auth.startswith(scheme):
                return auth[len(scheme) :]
        return params.get("access_token", "")

    def guard(request: Request, params: dict[str, str]) -> Token | JSONResponse:
        st.requests.append((request.method, request.url.path))
        tok = st.tokens.get(bearer(request, params))
        if tok is None:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if tok.invalid_subcode is not None:
            return graph_error(
                "Error validating access token: the session has been invalidated", 190, tok.invalid_subcode
            )
        if tok.expires_at < time.time():
            return graph_error(
                "Error validating access token: Session has expired on Monday, 01-Jan-24 00:00:00 PST.", 190, 463
            )
        if st.throttle_next > 0:
            st.throttle_next -= 1
            if st.throttle == "http429":
                return JSONResponse(
                    {"error": {"message": "Too many requests", "code": 4, "type": "OAuthException"}},
                    status_code=429,
                    headers={"Retry-After": "0"},
                )
            entry = {"type": "pages", "call_count": 100, "total_cputime": 9, "total_time": 9}
            usage = json.dumps({st.page_id: [{**entry, "estimated_time_to_regain_access": 0}]})
            return graph_error(
                "(#4) Application request limit reached",
                4,
                headers={
                    "X-App-Usage": '{"call_count":100,"total_time":9,"total_cputime":9}',
                    "X-Business-Use-Case-Usage": usage,
                },
            )
        return tok

    async def fetch(url: str) -> bytes | None:
        """Meta downloads media itself; the fake can only reach its own /media route (no other network)."""
        if not url.startswith(base + "/media/"):
            return None
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(url)
        return resp.content if resp.status_code == 200 else None

    # -- connecting (before the generic Graph routes) -----------------------------------------------------------
    @app.get("/oauth/authorize")  # www.instagram.com/oauth/authorize, threads.net/oauth/authorize
    @app.get("/{version}/dialog/oauth")  # www.facebook.com/{version}/dialog/oauth
    async def authorize(request: Request) -> Response:
        """The authorization window, consenting at once: a redirect with a single-use code and the state."""
        q = request.query_params
        platform = st.platform_of(q.get("client_id"))
        if platform is None or q.get("response_type") != "code" or not q.get("redirect_uri"):
            return JSONResponse({"error_message": "Invalid client_id, response_type or redirect_uri"}, 400)
        code = secrets.token_urlsafe(24)
        st.codes[code] = {"platform": platform, "redirect_uri": q["redirect_uri"]}
        location = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        return Response(status_code=302, headers={"location": location + ("#_" if platform != "facebook" else "")})

    def take_code(platform: str, p: dict[str, str]) -> str | None:
        """Why a code exchange is refused, or None (the code is used up either way)."""
        if p.get("client_secret") != st.apps[platform][1]:
            return "Error validating client secret."
        grant = st.codes.pop(p.get("code", ""), None)
        if grant is None or grant["platform"] != platform:
            return "This authorization code has been used or is invalid"
        if grant["redirect_uri"] != p.get("redirect_uri"):
            return "Error validating verification code. Please make sure your redirect_uri is identical"
        return None

    @app.post("/oauth/access_token")  # api.instagram.com and graph.threads.net
    async def code_exchange(request: Request) -> Response:
        p = await params_of(request)
        st.requests.append((request.method, request.url.path))
        platform = st.platform_of(p.get("client_id"))
        if platform not in ("instagram", "threads"):
            return JSONResponse(
                {"error_type": "OAuthException", "code": 400, "error_message": "Invalid client_id"}, 400
            )
        refused = "Invalid grant_type" if p.get("grant_type") != "authorization_code" else take_code(platform, p)
        if refused:
            return JSONResponse({"error_type": "OAuthException", "code": 400, "error_message": refused}, 400)
        st.exchanges.append("authorization_code")
        token = st.issue(platform, short=True)
        if platform == "instagram":
            perms = "instagram_business_basic,instagram_business_content_publish,instagram_business_manage_comments"
            return JSONResponse({"data": [{"access_token": token, "user_id": st.ig_user, "permissions": perms}]})
        return JSONResponse({"access_token": token, "user_id": int(st.threads_user)})

    def refused_exchange(secret: str, token: str) -> Response | None:
        if st.refuse_exchange is None:
            return None
        message, st.refuse_exchange = st.refuse_exchange.format(secret=secret, token=token), None
        return graph_error(message, 100)

    @app.get("/access_token")  # graph.instagram.com and graph.threads.net
    async def long_lived(request: Request) -> Response:
        p = dict(request.query_params)
        st.requests.append((request.method, request.url.path))
        platform = {"ig_exchange_token": "instagram", "th_exchange_token": "threads"}.get(p.get("grant_type", ""))
        if platform is None:
            return graph_error("Unsupported grant_type", 100)
        if p.get("client_secret") != st.apps[platform][1]:
            return graph_error("Error validating client secret.", 1)
        tok = st.tokens.get(p.get("access_token", ""))
        if tok is None or tok.platform != platform:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if tok.expires_at < time.time():
            return graph_error("Error validating access token: Session has expired", 190, 463)
        if not tok.short:
            return graph_error("Only a short-lived access token can be exchanged", 100)
        refused = refused_exchange(p["client_secret"], p["access_token"])
        if refused is not None:
            return refused
        st.exchanges.append(p["grant_type"])
        new = st.issue(platform, tok.owner)
        return JSONResponse({"access_token": new, "token_type": "bearer", "expires_in": LONG_LIVED})

    @app.api_route("/{version}/oauth/access_token", methods=["GET", "POST"])  # graph.facebook.com
    async def fb_access_token(request: Request) -> Response:
        p = await params_of(request)
        st.requests.append((request.method, request.url.path))
        if st.platform_of(p.get("client_id")) != "facebook":
            return graph_error("Error validating application. Invalid application ID.", 101)
        if p.get("grant_type") == "fb_exchange_token":
            if p.get("client_secret") != st.apps["facebook"][1]:
                return graph_error("Error validating client secret.", 1)
            tok = st.tokens.get(p.get("fb_exchange_token", ""))
            if tok is None or tok.platform != "facebook" or tok.kind != "user" or tok.expires_at < time.time():
                return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
            refused = refused_exchange(p["client_secret"], p["fb_exchange_token"])
            if refused is not None:
                return refused
            st.exchanges.append("fb_exchange_token")
            new = st.issue("facebook", tok.owner, "user")
            return JSONResponse({"access_token": new, "token_type": "bearer", "expires_in": LONG_LIVED})
        refused = take_code("facebook", p)
        if refused:
            return graph_error(refused, 100, 36009 if "used" in refused else None)
        st.exchanges.append("authorization_code")
        token = st.issue("facebook", st.fb_user, "user", short=True)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": HOUR})

    def accounts(tok: Token, params: dict[str, str], version: str) -> Response:
        """``/me/accounts``: the Pages the user manages with a Page token each (short-lived from a short user token)."""
        if tok.platform != "facebook" or tok.kind != "user":
            return graph_error("(#100) Tried accessing nonexisting field (accounts) on node type (Page)", 100)
        fields = params.get("fields", "id,name").split(",")
        rows = list((st.pages or {}).items())
        start = int(params.get("after") or 0)
        size = min(int(params.get("limit", 25)), st.accounts_page_size)
        data = []
        for pid, name in rows[start : start + size]:
            row: dict[str, Any] = {"id": pid, "name": name, "category": "Restaurant"}
            if "access_token" in fields:
                row["access_token"] = st.issue("facebook", pid, "page", ttl=HOUR if tok.short else NEVER)
            if "tasks" in fields:
                row["tasks"] = list(st.page_tasks)
            data.append({k: v for k, v in row.items() if k in fields or k == "id"})
        end = start + len(data)
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(end)}}
        if end < len(rows):
            paging["next"] = f"{base}/{version}/me/accounts?{urlencode({**params, 'after': str(end)})}"
        return JSONResponse({"data": data, "paging": paging} if data else {"data": []})

    # -- media, refresh and rupload (before the generic Graph routes) -----------------------------------------------
    @app.get("/media/{name}")
    def media(name: str) -> Response:
        if name not in st.files:
            return Response(status_code=404)
        return Response(st.files[name], media_type="application/octet-stream")

    @app.get("/refresh_access_token")
    async def refresh(request: Request) -> Response:
        params = await params_of(request)
        tok = guard(request, params)
        if isinstance(tok, JSONResponse):
            return tok  # Meta refreshes only unexpired long-lived tokens
        want = {"ig_refresh_token": "instagram", "th_refresh_token": "threads"}.get(params.get("grant_type", ""))
        if want != tok.platform:
            return graph_error("Unsupported grant_type", 100)
        st.refreshes += 1
        new = st.issue(tok.platform, tok.owner)
        return JSONResponse({"access_token": new, "token_type": "bearer", "expires_in": LONG_LIVED})

    @app.post("/video-upload/{version}/{video_id}")
    async def rupload(request: Request, video_id: str) -> Response:
        st.requests.append(("POST", request.url.path))
        auth = request.headers.get("authorization", "")
        tok = st.tokens.get(auth.removeprefix("OAuth ")) if auth.startswith("OAuth ") else None
        video = st.videos.get(video_id)
        if tok is None or tok.kind != "page" or video is None:
            return JSONResponse(
                {"debug_info": {"retriable": False, "type": "AuthError", "message": "Invalid token"}}, 401
            )
        offset, size = request.headers.get("offset"), request.headers.get("file_size")
        if offset is None or size is None or not offset.isdigit() or not size.isdigit():
            return JSONResponse(
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "ParameterValidationError",
                        "message": "offset and file_size headers are required",
                    }
                },
                400,
            )
        received = bytearray()
        async for chunk in request.stream():
            received.extend(chunk)
        st.uploads.append(
            {
                "offset": int(offset),
                "file_size": int(size),
                "bytes": len(received),
                "length": request.headers.get("content-length"),
            }
        )
        if int(offset) != len(video["data"]):
            return JSONResponse(
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "ParameterValidationError",
                        "message": f"offset must be {len(video['data'])}",
                    }
                },
                400,
            )
        if st.upload_reject:
            return JSONResponse(
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "ProcessingFailedError",
                        "message": "The video file is corrupt",
                    }
                },
                400,
            )
        if st.upload_break_at is not None:
            keep = max(0, st.upload_break_at - int(offset))
            video["data"].extend(received[:keep])
            st.upload_break_at = None
            return JSONResponse(
                {"debug_info": {"retriable": True, "type": "TransientError", "message": "Connection reset"}}, 500
            )
        video["data"].extend(received)
        video["file_size"] = int(size)
        if len(video["data"]) != int(size):
            return JSONResponse(
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "SizeMismatch",
                        "message": "file_size does not match the bytes sent",
                    }
                },
                400,
            )
        return JSONResponse({"success": True})

    # -- reads ------------------------------------------------------------------------------------------------------
    @app.get("/{version}/{node}")
    async def read_node(request: Request, node: str) -> Response:
        params = await params_of(request)
        tok = guard(request, params)
        if isinstance(tok, JSONResponse):
            return tok
        if node == "me":
            if tok.platform == "instagram":
                return JSONResponse({"user_id": st.ig_user, "username": st.ig_username, "id": "ig-app-scoped-1"})
            if tok.platform == "threads":
                return JSONResponse({"id": st.threads_user, "username": st.ig_username})
            if tok.kind == "page":
                return JSONResponse({"id": tok.owner, "name": (st.pages or {}).get(tok.owner, st.page_name)})
            return JSONResponse({"id": tok.owner, "name": st.fb_user_name})
        if node in st.containers:
            return container_status(st.containers[node])
        if node in st.videos:
            return JSONResponse({"id": node, "status": reel_status(st.videos[node])})
        if node == st.page_id and params.get("fields") == "access_token":
            if tok.platform == "facebook" and tok.kind == "user" and tok.owner == st.fb_user:
                return JSONResponse({"id": st.page_id, "access_token": st.page_token()})
            return graph_error("(#100) Tried accessing nonexisting field (access_token)", 100)
        post = next((p for p in st.published if p["id"] == node), None)
        if post is not None:
            return JSONResponse({"id": node, "permalink": post["permalink"]})
        return graph_error(f"Unsupported get request. Object with ID '{node}' does not exist", 100, 33)

    def container_status(c: dict[str, Any]) -> Response:
        c["polls"] += 1
        if c["status"] == "IN_PROGRESS":
            needed = st.video_polls if c["video"] else st.image_polls
            if st.outcome != "STUCK" and c["polls"] > needed:
                c["status"] = st.outcome
        if c["platform"] == "instagram":
            body: dict[str, Any] = {"id": c["id"], "status_code": c["status"]}
            if c["status"] == "ERROR":
                body["status"] = f"Error: {st.error_message or c.get('error') or 'Unknown error'}"
            return JSONResponse(body)
        body = {"id": c["id"], "status": c["status"]}
        if c["status"] == "ERROR":
            body["error_message"] = st.error_message or c.get("error") or "UNKNOWN"
        return JSONResponse(body)

    def reel_status(v: dict[str, Any]) -> dict[str, Any]:
        uploaded = len(v["data"])
        status: dict[str, Any] = {
            "video_status": "upload_complete" if v["file_size"] and uploaded == v["file_size"] else "processing",
            "uploading_phase": {
                "status": "complete" if v["file_size"] and uploaded == v["file_size"] else "in_progress",
                "bytes_transferred": uploaded,
            },
            "processing_phase": {"status": "not_started"},
            "publishing_phase": {"status": "not_started"},
        }
        if v["finished"]:
            v["polls"] += 1
            done = st.reel_outcome == "ready" and v["polls"] > st.reel_polls
            if st.reel_outcome == "error":
                status["video_status"] = "error"
                status["processing_phase"] = {
                    "status": "error",
                    "errors": [{"code": 1363040, "message": "Video too short"}],
                }
            elif done:
                status["video_status"] = "ready"
                status["processing_phase"] = {"status": "complete"}
                status["publishing_phase"] = {"status": "complete", "publish_status": "published"}
            else:
                status["video_status"] = "processing"
                status["processing_phase"] = {"status": "in_progress"}
                status["publishing_phase"] = {"status": "in_progress"}
        return status

    @app.get("/{version}/{node}/{edge}")
    async def read_edge(request: Request, version: str, node: str, edge: str) -> Response:
        params = await params_of(request)
        tok = guard(request, params)
        if isinstance(tok, JSONResponse):
            return tok
        limit = int(params.get("limit", 25))
        if edge == "accounts" and node in ("me", st.fb_user):
            return accounts(tok, params, version)
        if edge in ("content_publishing_limit", "threads_publishing_limit"):
            platform = "instagram" if edge.startswith("content") else "threads"
            row = {
                "quota_usage": st.quota_usage[platform],
                "config": {"quota_total": st.quota_total[platform], "quota_duration": 86400},
            }
            return JSONResponse({"data": [row]})
        if edge == "media" and node in ("me", st.ig_user):
            rows = [
                {k: p.get(k) for k in ("id", "caption", "media_type", "media_url", "permalink", "timestamp")}
                for p in reversed(st.posts("instagram"))
            ]
            return JSONResponse({"data": rows[:limit], "paging": {}})
        if edge == "threads" and node in ("me", st.threads_user):
            since = int(params.get("since", 0))
            rows = [
                {k: p.get(k) for k in ("id", "text", "media_type", "permalink", "timestamp")}
                for p in reversed(st.posts("threads"))
                if p["epoch"] >= since
            ]
            return JSONResponse({"data": rows[:limit], "paging": {}})
        if edge == "published_posts" and node == st.page_id:
            rows = [
                {k: p.get(k) for k in ("id", "message", "created_time", "permalink_url", "full_picture")}
                for p in reversed(st.posts("facebook"))
                if p["media_type"] != "REEL"
            ]
            return JSONResponse({"data": rows[:limit], "paging": {}})
        if edge == "video_reels" and node == st.page_id:
            rows = [
                {k: p.get(k) for k in ("id", "description", "created_time")}
                for p in reversed(st.posts("facebook"))
                if p["media_type"] == "REEL"
            ]
            return JSONResponse({"data": rows[:limit], "paging": {}})
        return graph_error(f"Unknown path components: /{edge}", 2500, kind="OAuthException")

    # -- writes -----------------------------------------------------------------------------------------------------
    @app.post("/{version}/{node}/{edge}")
    async def write_edge(request: Request, version: str, node: str, edge: str) -> Response:
        params = await params_of(request)
        tok = guard(request, params)
        if isinstance(tok, JSONResponse):
            return tok
        if tok.platform == "instagram" and node == st.ig_user and edge == "media":
            return await ig_container(params)
        if tok.platform == "threads" and node == st.threads_user and edge == "threads":
            return await threads_container(params)
        if edge in ("media_publish", "threads_publish"):
            return publish_container(tok, params)
        if tok.platform == "instagram" and edge == "comments":
            st.comments.append({"media_id": node, "message": params.get("message")})
            return JSONResponse({"id": st.new_id()})
        if tok.platform == "facebook" and node == st.page_id:
            if tok.kind != "page":
                return graph_error(
                    "(#200) If posting to a page, requires both pages_read_engagement and pages_manage_posts as an "
                    "admin with sufficient administrative permission",
                    200,
                )
            if edge == "feed":
                return fb_feed(params, tok)
            if edge == "photos":
                return await fb_photo(params, tok)
            if edge == "video_reels":
                return fb_reel(params, tok, version)
        return graph_error(f"Unsupported post request to /{node}/{edge}", 100, 33)

    async def new_container(platform: str, params: dict[str, str], video: bool, url: str | None) -> Response:
        cid = st.new_id()
        c = {"id": cid, "platform": platform, "params": params, "polls": 0, "video": video, "status": "IN_PROGRESS"}
        if url is not None:
            data = await fetch(url)
            if data is None:
                c["status"] = "ERROR"
                c["error"] = (
                    "FAILED_DOWNLOADING_VIDEO" if video else "Media download has failed: the URI is not reachable"
                )
            else:
                c["bytes"] = len(data)
        st.containers[cid] = c
        return JSONResponse({"id": cid})

    async def ig_container(params: dict[str, str]) -> Response:
        caption = params.get("caption", "")
        if len(caption) > 2200:
            return graph_error(
                "The caption is too long", 100, 2207010, user_msg="The caption is over 2,200 characters."
            )
        kind = params.get("media_type", "IMAGE")
        if kind == "CAROUSEL":
            children = [c for c in params.get("children", "").split(",") if c]
            if not 2 <= len(children) <= 10:
                return graph_error(
                    "Carousels take 2 to 10 children",
                    100,
                    2207028,
                    user_msg="The carousel has too many or too few items.",
                )
            if any(st.containers.get(c, {}).get("status") != "FINISHED" for c in children):
                return graph_error(
                    "The carousel item is not ready",
                    9007,
                    2207027,
                    user_msg="The media is not ready for publishing, please wait for a moment",
                )
            return await new_container("instagram", params, False, None)
        if kind in ("REELS", "VIDEO"):
            if not params.get("video_url"):
                return graph_error("video_url is required", 100)
            return await new_container("instagram", params, True, params["video_url"])
        if not params.get("image_url"):
            return graph_error("image_url is required", 100)
        return await new_container("instagram", params, False, params["image_url"])

    async def threads_container(params: dict[str, str]) -> Response:
        kind = params.get("media_type", "")
        if len(params.get("text", "")) > 500:
            return graph_error(
                "The text is over 500 characters", 100, user_msg="Text posts are limited to 500 characters."
            )
        if kind == "TEXT":
            if not params.get("text"):
                return graph_error("text is required for TEXT posts", 100)
            return await new_container("threads", params, False, None)
        if kind == "IMAGE" and params.get("image_url"):
            return await new_container("threads", params, False, params["image_url"])
        if kind == "VIDEO" and params.get("video_url"):
            return await new_container("threads", params, True, params["video_url"])
        return graph_error("Invalid media_type or missing media URL", 100)

    def publish_container(tok: Token, params: dict[str, str]) -> Response:
        c = st.containers.get(params.get("creation_id", ""))
        if c is None or c["platform"] != tok.platform:
            return graph_error("Media ID is not available", 9007, 2207006, user_msg="The media was not found.")
        if c["status"] == "PUBLISHED":
            return graph_error(
                "The container was already published", 9007, 2207026, user_msg="This media has already been published."
            )
        if c["status"] != "FINISHED":
            return graph_error(
                "Media ID is not available",
                9007,
                2207027,
                user_msg="The media is not ready for publishing, please wait for a moment",
            )
        if st.quota_usage[tok.platform] >= st.quota_total[tok.platform]:
            return graph_error(
                "Application request limit reached",
                9,
                2207042,
                user_msg="You reached maximum number of posts that is allowed to be published by Content Publishing API.",
            )
        st.quota_usage[tok.platform] += 1
        c["status"] = "PUBLISHED"
        pid = st.new_id()
        p = c["params"]
        if tok.platform == "instagram":
            kind = {"REELS": "VIDEO", "CAROUSEL": "CAROUSEL_ALBUM"}.get(p.get("media_type", "IMAGE"), "IMAGE")
            post = {
                "caption": p.get("caption", ""),
                "media_type": kind,
                "permalink": f"https://www.instagram.com/p/{pid}/",
                "media_url": p.get("image_url") or p.get("video_url"),
            }
        else:
            kind = {"TEXT": "TEXT_POST"}.get(p.get("media_type", ""), p.get("media_type", ""))
            post = {
                "text": p.get("text", ""),
                "media_type": kind,
                "permalink": f"https://www.threads.net/@{st.ig_username}/post/{pid}",
            }
        st.published.append(
            {
                "platform": tok.platform,
                "id": pid,
                "timestamp": _stamp(),
                "epoch": int(time.time()),
                "container": c["id"],
                "token": hashlib.sha256(bearer_of(tok).encode()).hexdigest(),
                **post,
            }
        )
        if st.lose_publish_response > 0:
            st.lose_publish_response -= 1
            return graph_error(
                "An unexpected error has occurred. Please retry your request later.", 2, status=500, transient=True
            )
        return JSONResponse({"id": pid})

    def bearer_of(tok: Token) -> str:
        return next(k for k, v in st.tokens.items() if v is tok)

    def fb_post(message: str, kind: str, tok: Token, **extra: Any) -> dict[str, Any]:
        pid = f"{st.page_id}_{st.new_id()}"
        post = {
            "platform": "facebook",
            "id": pid,
            "message": message,
            "media_type": kind,
            "created_time": _stamp(),
            "epoch": int(time.time()),
            "permalink_url": f"https://www.facebook.com/{pid}",
            "token": hashlib.sha256(bearer_of(tok).encode()).hexdigest(),
            **extra,
        }
        st.published.append(post)
        return post

    def fb_feed(params: dict[str, str], tok: Token) -> Response:
        attached = [v for k, v in sorted(params.items()) if k.startswith("attached_media[")]
        if not (params.get("message") or params.get("link") or attached):
            return graph_error("(#100) The post is empty", 100)
        photos = []
        for raw in attached:
            fbid = json.loads(raw).get("media_fbid")
            if fbid not in st.photos:
                return graph_error(f"(#100) media_fbid {fbid} is not a photo of this page", 100)
            photos.append(fbid)
        post = fb_post(
            params.get("message", ""),
            "PHOTOS" if photos else "STATUS",
            tok,
            link=params.get("link"),
            photos=photos,
            full_picture=st.photos[photos[0]]["url"] if photos else None,
        )
        if st.lose_publish_response > 0:
            st.lose_publish_response -= 1
            return graph_error(
                "An unexpected error has occurred. Please retry your request later.", 2, status=500, transient=True
            )
        return JSONResponse({"id": post["id"]})

    async def fb_photo(params: dict[str, str], tok: Token) -> Response:
        url = params.get("url", "")
        data = await fetch(url)
        if data is None:
            return graph_error("(#324) Missing or invalid image file", 324)
        fbid = st.new_id()
        st.photos[fbid] = {"url": url, "bytes": len(data)}
        if params.get("published", "true") == "false":
            return JSONResponse({"id": fbid})
        post = fb_post(params.get("caption", ""), "PHOTO", tok, photos=[fbid], full_picture=url)
        return JSONResponse({"id": fbid, "post_id": post["id"]})

    def fb_reel(params: dict[str, str], tok: Token, version: str) -> Response:
        phase = params.get("upload_phase")
        if phase == "start":
            vid = st.new_id()
            st.videos[vid] = {"data": bytearray(), "file_size": None, "finished": False, "polls": 0}
            return JSONResponse({"video_id": vid, "upload_url": f"{base}/video-upload/{version}/{vid}"})
        if phase == "finish":
            vid = params.get("video_id", "")
            v = st.videos.get(vid)
            if v is None or v["file_size"] is None or len(v["data"]) != v["file_size"]:
                return graph_error(
                    "The video upload is not complete",
                    6000,
                    1363019,
                    user_msg="Upload the whole video before finishing.",
                )
            if params.get("video_state") != "PUBLISHED":
                return graph_error("video_state must be PUBLISHED to publish now", 100)
            v["finished"] = True
            v["sha256"] = hashlib.sha256(bytes(v["data"])).hexdigest()
            st.published.append(
                {
                    "platform": "facebook",
                    "id": vid,
                    "description": params.get("description", ""),
                    "media_type": "REEL",
                    "created_time": _stamp(),
                    "epoch": int(time.time()),
                    "token": hashlib.sha256(bearer_of(tok).encode()).hexdigest(),
                }
            )
            return JSONResponse({"success": True})
        return graph_error("upload_phase must be start or finish", 100)

    return app


class MetaServer(FakeService):
    state: MetaState

    def __init__(self, **state: Any) -> None:
        super().__init__(MetaState(**state), build_app)

    def serve(self, name: str, data: bytes) -> str:
        """A URL on the fake that serves ``data``: what Meta downloads when a container names it."""
        self.state.files[name] = data
        return f"{self.url}/media/{name}"
