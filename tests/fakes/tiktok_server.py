"""A fake TikTok Content Posting API: Login Kit (an authorization page that consents at once, the code and refresh
grants), user info, creator info, Direct Post and inbox init with the documented chunk rules, the pre-signed upload URL
checking each Content-Range, status (processing, complete with or without a post id, FAILED, never finishing), the
video list, and TikTok's error bodies."""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from tests.fakes.serve import FakeService

MIB = 1024 * 1024
# The media transfer guide's bounds, written out here independently of the hook.
MIN_CHUNK, MAX_CHUNK, MAX_FINAL, MAX_CHUNKS = 5 * MIB, 64 * MIB, 128 * MIB, 1000
PRIVACY = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"]
RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"data": {}, "error": {"code": code, "message": message, "log_id": secrets.token_hex(8)}}
    return JSONResponse(body, status_code=status, headers=headers)


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """Login Kit's error struct (developers.tiktok.com/doc/oauth-error-handling): error, error_description, log_id."""
    body = {"error": error, "error_description": description, "log_id": secrets.token_hex(8)}
    return JSONResponse(body, status_code=status)


def ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"data": data, "error": {"code": "ok", "message": "", "log_id": secrets.token_hex(8)}})


@dataclass
class TikTokState:
    client_key: str = "tt-client-key"
    client_secret: str = "tt-client-secret"
    open_id: str = "tt-open-1"
    access: dict[str, float] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    scopes: set[str] = field(default_factory=lambda: {"user.info.basic", "video.list", "video.publish", "video.upload"})
    # Login Kit: the scopes the app was approved for, authorization codes (code -> challenge, redirect_uri, scopes),
    # whether the user refuses, and whether a refused grant answers HTTP 200 (as TikTok has been seen to) or 4xx.
    app_scopes: set[str] = field(
        default_factory=lambda: {"user.info.basic", "user.info.profile", "video.list", "video.publish", "video.upload"}
    )
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    # TikTok takes only https redirect URIs; a browser test against Kipu on http://127.0.0.1 turns this on.
    allow_loopback_http: bool = False
    deny: bool = False
    errors_with_200: bool = False
    exchanges: list[str] = field(default_factory=list)  # grant_type of every token request
    creator: dict[str, Any] = field(
        default_factory=lambda: {
            "creator_username": "ana.bakes",
            "creator_nickname": "Ana",
            "creator_avatar_url": "https://cdn.example/ana.jpg",
            "privacy_level_options": list(PRIVACY),
            "comment_disabled": False,
            "duet_disabled": False,
            "stitch_disabled": False,
            "max_video_post_duration_sec": 600,
        }
    )
    audited: bool = True  # an unaudited client may only post SELF_ONLY
    verified_prefixes: list[str] = field(default_factory=list)  # PULL_FROM_URL domains the app verified
    publishes: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: list[dict[str, Any]] = field(default_factory=list)  # every post TikTok created, public or not
    videos: list[dict[str, Any]] = field(default_factory=list)  # the public videos /v2/video/list/ shows
    calls: list[str] = field(default_factory=list)
    polls_to_finish: int = 2
    moderation_pending: bool = False  # PUBLISH_COMPLETE without a post id until ``release`` is called
    fail_reason: str | None = None
    stuck: bool = False
    throttle_next: int = 0
    fail_next: int = 0
    init_error: tuple[int, str, str] | None = None
    reject_chunk: int | None = None  # this chunk index answers 500 once
    rejected_chunks: list[int] = field(default_factory=list)
    expire_uploads: bool = False
    chunk_puts: list[str] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: itertools.count(7_300_000_000_000_000_000))

    def issue(self, ttl: float = 86_400) -> dict[str, Any]:
        """A token response as /v2/oauth/token/ answers it (open_id, scope, access_token, expires_in, refresh_token,
        refresh_expires_in, token_type)."""
        access, refresh = f"act.{secrets.token_urlsafe(24)}", f"rft.{secrets.token_urlsafe(24)}"
        self.access[access] = time.time() + ttl
        self.refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(ttl),
            "refresh_expires_in": 31_536_000,
            "open_id": self.open_id,
            "scope": ",".join(sorted(self.scopes)),
            "token_type": "Bearer",
        }

    def expire_all(self) -> None:
        for token in self.access:
            self.access[token] = 0

    def add_video(self, description: str, created: int, **extra: Any) -> dict[str, Any]:
        video = {
            "id": str(next(self.ids)),
            "create_time": created,
            "title": extra.pop("title", ""),
            "video_description": description[:150],  # the list truncates descriptions
            "duration": extra.pop("duration", 12),
            "cover_image_url": f"https://p16.tiktokcdn.example/{created}.image",
            "share_url": f"https://www.tiktok.com/@{self.creator['creator_username']}/video/{created}",
            "embed_link": f"https://www.tiktok.com/embed/v2/{created}",
            **extra,
        }
        self.videos.append(video)
        return video

    def release(self) -> None:
        """Moderation finishes: pending public posts get their ids and appear in the video list."""
        self.moderation_pending = False
        for post in self.posts:
            if post["pending"]:
                post["pending"] = False
                self.videos.append(post["video"])


def _plan_problem(video_size: int, chunk: int, count: int) -> str | None:
    """Why a FILE_UPLOAD source_info breaks the media transfer guide, or None."""
    if video_size <= 0 or chunk <= 0 or count <= 0:
        return "video_size, chunk_size and total_chunk_count must be positive"
    if video_size < MIN_CHUNK:
        return None if (chunk, count) == (video_size, 1) else "a video under 5 MB must be one chunk of its size"
    if count == 1:
        if chunk != video_size:
            return "a single chunk must be the whole video"
        return "a video over 64 MB must be uploaded in multiple chunks" if video_size > MAX_CHUNK else None
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        return f"chunk_size {chunk} is outside 5 MB-64 MB"
    if count > MAX_CHUNKS:
        return f"total_chunk_count {count} is over {MAX_CHUNKS}"
    if count != video_size // chunk:
        return f"total_chunk_count must be video_size // chunk_size = {video_size // chunk}"
    if video_size - (count - 1) * chunk > MAX_FINAL:
        return "the final chunk is over 128 MB"
    return None


def _expected(pub: dict[str, Any], index: int) -> tuple[int, int]:
    """The inclusive byte range chunk ``index`` must carry."""
    first = index * pub["chunk_size"]
    last = pub["video_size"] - 1 if index == pub["total_chunk_count"] - 1 else first + pub["chunk_size"] - 1
    return first, last


def build_app(st: TikTokState, base: str) -> FastAPI:
    app = FastAPI()

    def guard(request: Request, scope: str | None = None) -> JSONResponse | None:
        st.calls.append(request.url.path)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if st.access.get(token, 0) < time.time():
            return error(401, "access_token_invalid", "The access token is invalid or not found in the request.")
        if scope and scope not in st.scopes:
            return error(401, "scope_not_authorized", f"The user did not authorize the scope {scope}.")
        if st.throttle_next > 0:
            st.throttle_next -= 1
            return error(429, "rate_limit_exceeded", "The API rate limit was exceeded. Please try again later.")
        if st.fail_next > 0:
            st.fail_next -= 1
            return error(500, "internal_error", "Something went wrong.")
        return None

    @app.get("/v2/auth/authorize/")
    def authorize(request: Request) -> Response:
        """www.tiktok.com/v2/auth/authorize/: the user is signed in and consents at once. A request TikTok cannot
        serve shows its error page naming the parameter; a refusal goes back to redirect_uri with ``error``."""
        q = request.query_params
        scopes = [s for s in q.get("scope", "").split(",") if s]  # comma-separated, as Login Kit documents
        challenge = q.get("code_challenge", "")
        problems = [
            name
            for name, bad in (
                ("client_key", q.get("client_key") != st.client_key),
                ("response_type", q.get("response_type") != "code"),
                (
                    "redirect_uri",
                    not q.get("redirect_uri", "").startswith(
                        ("https://", "http://127.0.0.1:") if st.allow_loopback_http else "https://"
                    ),
                ),
                ("scope", not scopes or not set(scopes) <= st.app_scopes),
                ("state", not q.get("state")),
                # TikTok's PKCE: S256 only, the challenge the hex SHA-256 of the verifier (64 hex digits).
                ("code_challenge", re.fullmatch(r"[0-9a-f]{64}", challenge) is None),
                ("code_challenge_method", q.get("code_challenge_method") != "S256"),
            )
            if bad
        ]
        if problems:
            return HTMLResponse(
                "<html><body>We couldn't log in with TikTok. This may be due to specific app settings. If you're a "
                f"developer, correct the following and try again: {', '.join(problems)}</body></html>",
                status_code=400,
            )
        back: dict[str, str] = {"state": q["state"]}
        if st.deny:
            back |= {"error": "access_denied", "error_description": "The user denied the authorization."}
        else:
            code = secrets.token_urlsafe(32) + "*0!" + secrets.token_hex(4)  # codes need URL encoding
            st.codes[code] = {"challenge": challenge, "redirect_uri": q["redirect_uri"], "scope": ",".join(scopes)}
            back |= {"code": code, "scopes": ",".join(scopes)}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(back)}", status_code=302)

    @app.post("/v2/oauth/token/")
    async def token(request: Request) -> Response:
        form = await request.form()
        grant = str(form.get("grant_type") or "")
        st.exchanges.append(grant)

        def refuse(status: int, error: str, description: str) -> JSONResponse:
            return oauth_error(200 if st.errors_with_200 else status, error, description)

        if form.get("client_key") != st.client_key or form.get("client_secret") != st.client_secret:
            return refuse(401, "invalid_client", "Client key or secret is incorrect.")
        if grant == "authorization_code":
            pending = st.codes.pop(str(form.get("code") or ""), None)  # single use, whatever happens next
            if pending is None:
                return refuse(400, "invalid_grant", "Authorization code is expired.")
            if form.get("redirect_uri") != pending["redirect_uri"]:
                return refuse(400, "invalid_grant", "Redirect URI does not match the authorization request.")
            verifier = str(form.get("code_verifier") or "")
            if hashlib.sha256(verifier.encode()).hexdigest() != pending["challenge"]:
                return refuse(400, "invalid_request", "Code verifier or code challenge is invalid.")
            return JSONResponse({**st.issue(), "scope": pending["scope"]})
        if grant != "refresh_token":
            return refuse(400, "unsupported_grant_type", f"Grant type {grant} is not supported.")
        if form.get("refresh_token") not in st.refresh:
            return refuse(400, "invalid_grant", "Refresh token is invalid or expired.")
        st.refresh.discard(str(form.get("refresh_token")))  # TikTok rotates refresh tokens
        return JSONResponse(st.issue())

    @app.get("/v2/user/info/")
    def user_info(request: Request, fields: str = "") -> Response:
        user = {"open_id": st.open_id, "union_id": "tt-union-1", "display_name": st.creator["creator_nickname"]}
        wanted = set(fields.split(","))
        return guard(request, "user.info.basic") or ok({"user": {k: v for k, v in user.items() if k in wanted}})

    @app.post("/v2/post/publish/creator_info/query/")
    def creator_info(request: Request) -> Response:
        return guard(request, "video.publish") or ok(dict(st.creator))

    def _source(body: dict[str, Any]) -> tuple[dict[str, Any], JSONResponse | None]:
        src = body.get("source_info") or {}
        if src.get("source") == "FILE_UPLOAD":
            size, chunk, count = (int(src.get(k) or 0) for k in ("video_size", "chunk_size", "total_chunk_count"))
            problem = _plan_problem(size, chunk, count)
            if problem:
                return {}, error(400, "invalid_params", problem)
            return {"video_size": size, "chunk_size": chunk, "total_chunk_count": count}, None
        if src.get("source") == "PULL_FROM_URL":
            url = str(src.get("video_url") or "")
            if not any(url.startswith(p) for p in st.verified_prefixes):
                return {}, error(403, "url_ownership_unverified", "The domain of video_url is not verified.")
            return {"video_url": url}, None
        return {}, error(400, "invalid_params", "source_info.source must be FILE_UPLOAD or PULL_FROM_URL")

    def _start(mode: str, source: dict[str, Any], post_info: dict[str, Any] | None) -> JSONResponse:
        pid = f"v_{'pub' if mode == 'direct' else 'inbox'}_file~v2-1.{next(st.ids)}"
        pub = {"mode": mode, "post_info": post_info, "polls": 0, "received": 0, "next": 0, "post": None, **source}
        pub["sha"] = hashlib.sha256()
        pub["token"] = secrets.token_urlsafe(12)
        st.publishes[pid] = pub
        data: dict[str, Any] = {"publish_id": pid}
        if "video_size" in pub:
            data["upload_url"] = f"{base}/upload/?upload_id={pid}&upload_token={pub['token']}"
        return ok(data)

    @app.post("/v2/post/publish/video/init/")
    async def direct_init(request: Request) -> Response:
        refused = guard(request, "video.publish")
        if refused:
            return refused
        if st.init_error:
            status, code, message = st.init_error
            return error(status, code, message)
        body = await request.json()
        info = body.get("post_info") or {}
        privacy = info.get("privacy_level")
        if privacy not in st.creator["privacy_level_options"]:
            return error(403, "privacy_level_option_mismatch", f"privacy_level {privacy} is not an option.")
        if privacy != "SELF_ONLY" and not st.audited:
            return error(
                403, "unaudited_client_can_only_post_to_private_accounts", "Unaudited clients post SELF_ONLY only."
            )
        if info.get("brand_content_toggle") and privacy == "SELF_ONLY":
            return error(400, "invalid_params", "Branded content cannot be private.")
        if len(info.get("title") or "") > 2200:
            return error(400, "invalid_params", "title is over 2200 runes.")
        for flag in ("comment", "duet", "stitch"):
            if st.creator[f"{flag}_disabled"] and not info.get(f"disable_{flag}"):
                return error(400, "invalid_params", f"The creator disabled {flag}s.")
        source, refused = _source(body)
        return refused or _start("direct", source, info)

    @app.post("/v2/post/publish/inbox/video/init/")
    async def inbox_init(request: Request) -> Response:
        refused = guard(request, "video.upload")
        if refused:
            return refused
        body = await request.json()
        if "post_info" in body:
            return error(400, "invalid_params", "post_info is not accepted for an inbox upload.")
        source, refused = _source(body)
        return refused or _start("draft", source, None)

    @app.put("/upload/")
    async def upload(request: Request, upload_id: str, upload_token: str) -> Response:
        pub = st.publishes.get(upload_id)
        if st.expire_uploads or pub is None or pub["token"] != upload_token:
            return Response("upload URL expired", status_code=403)
        match = RANGE.match(request.headers.get("content-range", ""))
        if not match or not request.headers.get("content-type", "").startswith("video/"):
            return Response("Content-Range and a video Content-Type are required", status_code=400)
        first, last, total = (int(g) for g in match.groups())
        index = pub["next"]
        if total != pub["video_size"] or (first, last) != _expected(pub, index):
            return Response(f"chunk {index} must be bytes {_expected(pub, index)}", status_code=416)
        st.chunk_puts.append(f"{first}-{last}/{total}")
        parts = [part async for part in request.stream()]  # one chunk at a time, at most 128 MB
        if st.reject_chunk == index and index not in st.rejected_chunks:
            st.rejected_chunks.append(index)
            return Response("chunk rejected, send it again", status_code=500)
        size = sum(len(p) for p in parts)
        if size != last - first + 1:
            return Response(f"chunk has {size} bytes, Content-Range says {last - first + 1}", status_code=400)
        for part in parts:
            pub["sha"].update(part)  # the digest of the whole video, chunk after accepted chunk
        pub["received"] += size
        pub["next"] += 1
        return Response(status_code=201 if pub["next"] == pub["total_chunk_count"] else 206)

    def _post(pub: dict[str, Any]) -> dict[str, Any]:
        """The post a finished Direct Post creates, once."""
        if pub["post"] is None:
            info = pub["post_info"]
            created = int(time.time())
            video = {
                "id": str(next(st.ids)),
                "create_time": created,
                "title": "",
                "video_description": info["title"][:150],
                "duration": 2,
                "cover_image_url": f"https://p16.tiktokcdn.example/{created}.image",
                "share_url": f"https://www.tiktok.com/@{st.creator['creator_username']}/video/{created}",
                "embed_link": f"https://www.tiktok.com/embed/v2/{created}",
            }
            public = info["privacy_level"] != "SELF_ONLY"
            pub["post"] = {"video": video, "public": public, "pending": public and st.moderation_pending, **info}
            st.posts.append(pub["post"])
            if public and not st.moderation_pending:
                st.videos.append(video)
        return pub["post"]

    @app.post("/v2/post/publish/status/fetch/")
    async def status(request: Request) -> Response:
        refused = guard(request)
        if refused:
            return refused
        pid = (await request.json()).get("publish_id")
        pub = st.publishes.get(pid)
        if pub is None:
            return error(400, "invalid_params", f"publish_id {pid} does not exist.")
        waiting = "PROCESSING_UPLOAD" if "video_size" in pub else "PROCESSING_DOWNLOAD"
        data: dict[str, Any] = {"status": waiting, "publicaly_available_post_id": [], "uploaded_bytes": pub["received"]}
        if "video_size" in pub and pub["received"] < pub["video_size"]:
            return ok(data)
        pub["polls"] += 1
        if st.stuck or pub["polls"] < st.polls_to_finish:
            return ok(data)
        if st.fail_reason:
            return ok({**data, "status": "FAILED", "fail_reason": st.fail_reason})
        if pub["mode"] == "draft":
            return ok({**data, "status": "SEND_TO_USER_INBOX"})
        post = _post(pub)
        ids = [] if not post["public"] or post["pending"] else [int(post["video"]["id"])]
        return ok({**data, "status": "PUBLISH_COMPLETE", "publicaly_available_post_id": ids})

    @app.post("/v2/video/list/")
    async def video_list(request: Request, fields: str = "") -> Response:
        refused = guard(request, "video.list")
        if refused:
            return refused
        body = await request.json() if await request.body() else {}
        count = int(body.get("max_count", 10))
        if not 0 < count <= 20:
            return error(400, "invalid_params", "max_count must be between 1 and 20.")
        cursor = body.get("cursor")
        newest = sorted(st.videos, key=lambda v: v["create_time"], reverse=True)
        if cursor is not None:
            newest = [v for v in newest if v["create_time"] * 1000 < int(cursor)]
        page = newest[:count]
        wanted = set(fields.split(","))
        return ok(
            {
                "videos": [{k: v for k, v in video.items() if k in wanted} for video in page],
                "cursor": page[-1]["create_time"] * 1000 if page else cursor,
                "has_more": len(newest) > count,
            }
        )

    return app


class TikTokServer(FakeService):
    state: TikTokState

    def __init__(self, **state: Any) -> None:
        super().__init__(TikTokState(**state), build_app)
