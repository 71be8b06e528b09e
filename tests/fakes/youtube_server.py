"""A fake YouTube Data API v3 and Google OAuth 2.0 (an authorization page that consents at once, the code grant with
PKCE and the refresh grant): resumable upload sessions (308 with ``Range``, a connection cut halfway through a PUT
that keeps what arrived, expired sessions, 5xx), channels/playlistItems/videos.list, the channel RSS feed, Google's
error bodies (quotaExceeded, uploadLimitExceeded, insufficientPermissions, 401, 429), and a WebSub hub that records
subscription requests."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from tests.fakes.serve import FakeService

UPLOAD = "/upload/youtube/v3/videos"
UNIT = 256 * 1024
AUTHORIZE = "/o/oauth2/v2/auth"  # accounts.google.com
TOKEN = "/token"  # oauth2.googleapis.com
GOOGLE_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/youtube",
        "https://www.googleapis.com/auth/youtube.readonly",
        "https://www.googleapis.com/auth/youtube.upload",
        "https://www.googleapis.com/auth/youtube.force-ssl",
        "openid",
        "email",
        "profile",
    }
)


class _QuietCut(logging.Filter):
    """The deliberate connection cut is not an error worth printing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietCut())


def google_error(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "youtube.api", "reason": reason}],
            "status": status.get(code, "UNAVAILABLE"),
        }
    }
    return JSONResponse(body, status_code=code, headers=headers)


def token_error(status: int, error: str, description: str) -> JSONResponse:
    """Google's token endpoint refusal: ``{"error", "error_description"}`` (RFC 6749 section 5.2)."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def tags_length(tags: list[str]) -> int:
    return sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)


@dataclass
class UploadSession:
    body: dict[str, Any]
    total: int
    mime: str
    received: int = 0
    data: bytearray | None = None
    puts: list[tuple[int, int]] = field(default_factory=list)  # (first byte, last byte) of each data PUT
    video_id: str | None = None
    expired: bool = False


@dataclass
class YouTubeState:
    channel_id: str = "UCkipu0000000000000000a1"
    channel_title: str = "Ana's Kitchen"
    client_id: str = "yt-client.apps.googleusercontent.com"
    client_secret: str = "yt-client-secret"
    access: dict[str, float] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    # Google OAuth: authorization codes (code -> challenge, redirect_uri, scope, offline, consent), whether the user
    # refuses, whether the user already granted this app (then a refresh token comes only with prompt=consent), and
    # whether the Google account has a YouTube channel at all.
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    deny: bool = False
    granted_before: bool = False
    has_channel: bool = True
    exchanges: list[str] = field(default_factory=list)  # grant_type of every token request
    videos: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    sessions: dict[str, UploadSession] = field(default_factory=dict)
    keep_bytes: bool = True  # False: only count (the peak-RSS test sends a gigabyte)
    cut_at: int | None = None  # cut the connection once, when a session holds this many bytes
    cuts: int = 0
    fail_put_next: int = 0  # answer data PUTs with 503 before reading them
    expire_after_puts: int | None = None  # a session expires (404) once it has taken this many data PUTs
    quota_exceeded: bool = False
    upload_limit_reached: bool = False
    insufficient_scope: bool = False
    throttle_next: int = 0
    fail_next: int = 0
    feed_down: bool = False
    calls: list[str] = field(default_factory=list)  # "METHOD /path" of every API call (not the feed or uploads)
    hub_requests: list[dict[str, str]] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def issue(self, ttl: float = 3599, scope: str | None = None) -> dict[str, Any]:
        """A token response as Google's token endpoint answers it (access_token, expires_in, refresh_token, scope,
        token_type)."""
        access, refresh = "ya29." + secrets.token_urlsafe(24), "1//" + secrets.token_urlsafe(24)
        self.access[access] = time.time() + ttl
        self.refresh.add(refresh)
        issued = {"access_token": access, "refresh_token": refresh, "expires_in": int(ttl), "token_type": "Bearer"}
        return {**issued, "scope": scope} if scope else issued

    def expire_all(self) -> None:
        for token in self.access:
            self.access[token] = 0

    def add_video(
        self, title: str, description: str = "", privacy: str = "public", published: datetime | None = None
    ) -> dict[str, Any]:
        """A video already on the channel (uploaded elsewhere)."""
        when = published or datetime.now(UTC)
        video = {
            "id": f"vid{next(self.ids):08d}",
            "snippet": {"title": title, "description": description, "categoryId": "22"},
            "status": {"privacyStatus": privacy},
            "published_at": when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "data": None,
            "size": 0,
        }
        self.videos.append(video)
        return video


def build_app(st: YouTubeState, base: str) -> Any:
    app = FastAPI()

    def guard(request: Request) -> JSONResponse | None:
        st.calls.append(f"{request.method} {request.url.path}")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if st.access.get(token, 0) < time.time():
            return google_error(401, "authError", "Request had invalid authentication credentials.")
        if st.throttle_next > 0:
            st.throttle_next -= 1
            return google_error(429, "rateLimitExceeded", "Too many requests.", {"Retry-After": "1"})
        if st.fail_next > 0:
            st.fail_next -= 1
            return google_error(503, "backendError", "Backend Error")
        if st.insufficient_scope:
            return google_error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        if st.quota_exceeded:
            return google_error(
                403,
                "quotaExceeded",
                "The request cannot be completed because you have exceeded your quota.",
            )
        return None

    @app.get(AUTHORIZE)
    def authorize(request: Request) -> Response:
        """accounts.google.com/o/oauth2/v2/auth: the user is signed in and consents at once. A request Google cannot
        serve shows its error page (``Error 400: invalid_request`` naming the parameter); a refusal goes back to
        redirect_uri with ``error``."""
        q = request.query_params
        scopes = q.get("scope", "").split()  # space-delimited
        if q.get("client_id") != st.client_id:
            return HTMLResponse("<html>Error 401: invalid_client. The OAuth client was not found.</html>", 401)
        problems = [
            name
            for name, bad in (
                ("response_type", q.get("response_type") != "code"),
                ("redirect_uri", not q.get("redirect_uri", "").startswith("https://")),
                ("scope", not scopes or not set(scopes) <= GOOGLE_SCOPES),
                ("state", not q.get("state")),
                # PKCE: the RFC 7636 S256 challenge, 43 base64url characters.
                ("code_challenge", re.fullmatch(r"[A-Za-z0-9_-]{43}", q.get("code_challenge", "")) is None),
                ("code_challenge_method", q.get("code_challenge_method") != "S256"),
                ("access_type", q.get("access_type", "online") not in ("online", "offline")),
            )
            if bad
        ]
        if problems:
            return HTMLResponse(
                f"<html>Error 400: invalid_request. Invalid parameter: {', '.join(problems)}</html>", 400
            )
        back: dict[str, str] = {"state": q["state"]}
        if st.deny:
            back["error"] = "access_denied"
        else:
            code = "4/0A" + secrets.token_urlsafe(40)
            st.codes[code] = {
                "challenge": q["code_challenge"],
                "redirect_uri": q["redirect_uri"],
                "scope": " ".join(scopes),
                "offline": q.get("access_type") == "offline",
                "consent": "consent" in q.get("prompt", "").split(),
            }
            back |= {"code": code, "scope": " ".join(scopes)}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode(back)}", status_code=302)

    @app.post(TOKEN)
    async def token(request: Request) -> Response:
        form = await request.form()
        grant = str(form.get("grant_type") or "")
        st.exchanges.append(grant)
        if (form.get("client_id"), form.get("client_secret")) != (st.client_id, st.client_secret):
            return token_error(401, "invalid_client", "Unauthorized")
        if grant == "authorization_code":
            pending = st.codes.pop(str(form.get("code") or ""), None)  # single use, whatever happens next
            if pending is None:
                return token_error(400, "invalid_grant", "Bad Request")
            if form.get("redirect_uri") != pending["redirect_uri"]:
                return token_error(400, "redirect_uri_mismatch", "Bad Request")
            verifier = str(form.get("code_verifier") or "")
            if not verifier:
                return token_error(400, "invalid_request", "code_verifier or verifier is not found.")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != pending["challenge"]:
                return token_error(400, "invalid_grant", "Invalid code verifier.")
            issued = st.issue(scope=pending["scope"])
            # A refresh token only with access_type=offline, and only on the first consent unless prompt=consent.
            if not pending["offline"] or (st.granted_before and not pending["consent"]):
                st.refresh.discard(issued.pop("refresh_token"))
            st.granted_before = True
            return JSONResponse(issued)
        if grant != "refresh_token":
            return token_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
        if form.get("refresh_token") not in st.refresh:
            return token_error(400, "invalid_grant", "Token has been expired or revoked.")
        issued = st.issue()
        issued.pop("refresh_token")  # Google keeps the refresh token on a refresh
        return JSONResponse(issued)

    @app.get("/youtube/v3/channels")
    def channels(request: Request, part: str, mine: bool = False) -> Response:
        error = guard(request)
        if error:
            return error
        channel: dict[str, Any] = {"kind": "youtube#channel", "id": st.channel_id}
        if "snippet" in part:
            channel["snippet"] = {"title": st.channel_title}
        if "contentDetails" in part:
            channel["contentDetails"] = {"relatedPlaylists": {"uploads": "UU" + st.channel_id[2:]}}
        # A Google account without a channel: an empty list, as YouTube answers it.
        items = [channel] if mine and st.has_channel else []
        return JSONResponse(
            {"kind": "youtube#channelListResponse", "pageInfo": {"totalResults": len(items)}, "items": items}
        )

    @app.get("/youtube/v3/playlistItems")
    def playlist_items(request: Request, part: str, playlistId: str, maxResults: int = 5) -> Response:
        error = guard(request)
        if error:
            return error
        if playlistId != "UU" + st.channel_id[2:]:
            return google_error(404, "playlistNotFound", "The playlist identified with the request cannot be found.")
        items = []
        for pos, v in enumerate(reversed(st.videos[-maxResults:] if maxResults else st.videos)):
            items.append(
                {
                    "kind": "youtube#playlistItem",
                    "id": f"pi-{v['id']}",
                    "snippet": {
                        "publishedAt": v["published_at"],
                        "channelId": st.channel_id,
                        "title": v["snippet"]["title"],
                        "description": v["snippet"]["description"],
                        "thumbnails": {"high": {"url": f"https://i.ytimg.com/vi/{v['id']}/hqdefault.jpg"}},
                        "channelTitle": st.channel_title,
                        "playlistId": playlistId,
                        "position": pos,
                        "resourceId": {"kind": "youtube#video", "videoId": v["id"]},
                    },
                    "contentDetails": {"videoId": v["id"], "videoPublishedAt": v["published_at"]},
                }
            )
        return JSONResponse({"kind": "youtube#playlistItemListResponse", "items": items})

    @app.get("/youtube/v3/videos")
    def videos(request: Request, part: str, id: str) -> Response:
        error = guard(request)
        if error:
            return error
        wanted = set(id.split(","))
        return JSONResponse({"items": [_resource(st, v) for v in st.videos if v["id"] in wanted]})

    @app.post(UPLOAD)
    async def start(request: Request, uploadType: str, part: str) -> Response:
        error = guard(request)
        if error:
            return error
        if uploadType != "resumable" or set(part.split(",")) != {"snippet", "status"}:
            return google_error(400, "invalidParameter", "uploadType must be resumable, part snippet,status")
        if st.upload_limit_reached:
            return google_error(
                400, "uploadLimitExceeded", "The user has exceeded the number of videos they may upload."
            )
        size = request.headers.get("x-upload-content-length", "")
        if not size.isdigit() or not request.headers.get("x-upload-content-type", "").startswith("video/"):
            return google_error(400, "invalidParameter", "X-Upload-Content-Length and -Type are required")
        body = await request.json()
        problem = _invalid(body)
        if problem:
            return google_error(400, *problem)
        upload_id = secrets.token_urlsafe(16)
        st.sessions[upload_id] = UploadSession(
            body, int(size), request.headers["x-upload-content-type"], data=bytearray() if st.keep_bytes else None
        )
        location = f"{base}{UPLOAD}?uploadType=resumable&upload_id={upload_id}"
        return Response(status_code=200, headers={"Location": location})

    @app.get("/feeds/videos.xml")
    def feed(channel_id: str) -> Response:
        if st.feed_down or channel_id != st.channel_id:
            return Response("<html>Not Found</html>", status_code=404, media_type="text/html")
        return Response(_atom(st), media_type="application/atom+xml; charset=UTF-8")

    @app.post("/hub/subscribe")
    async def hub(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not all(form.get(k) for k in ("hub.callback", "hub.mode", "hub.topic")):
            return Response("hub.callback, hub.mode and hub.topic are required", status_code=400)
        st.hub_requests.append(form)
        return Response(status_code=202)

    async def put(scope: dict, receive: Any, send: Any) -> None:
        """The upload PUT at the ASGI level, so that a cut can drop the connection mid-body."""
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        upload_id = (parse_qs(scope["query_string"].decode()).get("upload_id") or [""])[0]
        session = st.sessions.get(upload_id)

        async def answer(status: int, body: bytes = b"", extra: dict[str, str] | None = None) -> None:
            hdrs = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})

        async def json_answer(resp: Response) -> None:
            await answer(resp.status_code, resp.body, {k: v for k, v in resp.headers.items() if k == "retry-after"})

        if st.access.get(headers.get("authorization", "").removeprefix("Bearer "), 0) < time.time():
            await json_answer(google_error(401, "authError", "Request had invalid authentication credentials."))
            return
        if session is None or session.expired:
            await json_answer(google_error(404, "notFound", "The upload session was not found or has expired."))
            return
        status_range = {"Range": f"bytes=0-{session.received - 1}"} if session.received else {}
        content_range = headers.get("content-range", "")
        query = re.fullmatch(r"bytes \*/(\d+)", content_range)
        if query:  # where did the upload stop?
            if session.video_id:
                video = next(v for v in st.videos if v["id"] == session.video_id)
                await answer(200, JSONResponse(_resource(st, video)).body)
            else:
                await answer(308, b"", status_range)
            return
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
        if not match or int(match.group(3)) != session.total:
            await json_answer(google_error(400, "badContent", f"Content-Range {content_range!r} is not valid"))
            return
        first, last = int(match.group(1)), int(match.group(2))
        length = last - first + 1
        if first != session.received:
            await json_answer(
                google_error(400, "badContent", f"the range starts at {first}; {session.received} bytes were received")
            )
            return
        if last + 1 < session.total and length % UNIT:
            await json_answer(google_error(400, "badContent", "a chunk must be a multiple of 256 KiB but the last"))
            return
        if headers.get("content-length") != str(length):
            await json_answer(google_error(400, "badContent", "Content-Length does not match Content-Range"))
            return
        if st.fail_put_next > 0:
            st.fail_put_next -= 1
            await json_answer(google_error(503, "backendError", "Backend Error"))
            return
        session.puts.append((first, last))
        cut = st.cut_at if st.cut_at is not None and first < st.cut_at <= last else None
        while True:
            message = await receive()
            piece = message.get("body", b"")
            if cut is not None and session.received + len(piece) >= cut:
                keep = cut - session.received
                if session.data is not None:
                    session.data += piece[:keep]
                session.received += keep
                st.cut_at, st.cuts = None, st.cuts + 1
                # Headers promise ten bytes, none follow, the server closes: a connection broken mid-upload.
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
                return
            if session.data is not None:
                session.data += piece
            session.received += len(piece)
            if not message.get("more_body"):
                break
        if st.expire_after_puts is not None and len(session.puts) >= st.expire_after_puts:
            session.expired, st.expire_after_puts = True, None
        if session.received < session.total:
            await answer(308, b"", {"Range": f"bytes=0-{session.received - 1}"})
            return
        video = {
            "id": f"vid{next(st.ids):08d}",
            "snippet": session.body["snippet"],
            "status": session.body["status"],
            "published_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "data": bytes(session.data) if session.data is not None else None,
            "size": session.received,
        }
        st.videos.append(video)
        session.video_id = video["id"]
        await answer(201, JSONResponse(_resource(st, video)).body)

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and scope["path"] == UPLOAD:
            await put(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi


def _invalid(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first documented videos.insert refusal the metadata earns, as (reason, message)."""
    snippet, status = body.get("snippet") or {}, body.get("status") or {}
    title, description = snippet.get("title") or "", snippet.get("description") or ""
    if not title or len(title) > 100 or "<" in title or ">" in title:
        return "invalidTitle", "The request metadata specifies an invalid or empty video title."
    if len(description.encode()) > 5000 or "<" in description or ">" in description:
        return "invalidDescription", "The request metadata specifies an invalid video description."
    if tags_length(snippet.get("tags") or []) > 500:
        return "invalidTags", "The request metadata specifies invalid video keywords."
    if not str(snippet.get("categoryId", "")).isdigit():
        return "invalidCategoryId", "The snippet.categoryId property specifies an invalid category ID."
    if status.get("privacyStatus") not in ("public", "unlisted", "private"):
        return "invalidParameter", "status.privacyStatus is not valid"
    if "publishAt" in status:
        when = datetime.fromisoformat(status["publishAt"].replace("Z", "+00:00"))
        if status.get("privacyStatus") != "private" or when <= datetime.now(UTC):
            return "invalidPublishAt", "The request metadata specifies an invalid scheduled publishing time."
    return None


def _resource(st: YouTubeState, video: dict[str, Any]) -> dict[str, Any]:
    snippet = {**video["snippet"], "publishedAt": video["published_at"], "channelId": st.channel_id}
    return {"kind": "youtube#video", "id": video["id"], "snippet": snippet, "status": video["status"]}


def _atom(st: YouTubeState) -> str:
    """The channel's public feed as youtube.com serves it (its 15 newest public videos)."""
    entries = []
    public = [v for v in st.videos if v["status"].get("privacyStatus") == "public"][-15:]
    for v in reversed(public):
        vid, title = v["id"], escape(v["snippet"]["title"])
        entries.append(
            f"""<entry>
  <id>yt:video:{vid}</id><yt:videoId>{vid}</yt:videoId><yt:channelId>{st.channel_id}</yt:channelId>
  <title>{title}</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v={vid}"/>
  <author><name>{escape(st.channel_title)}</name><uri>https://www.youtube.com/channel/{st.channel_id}</uri></author>
  <published>{v["published_at"].replace("Z", "+00:00")}</published><updated>{v["published_at"].replace("Z", "+00:00")}</updated>
  <media:group>
    <media:title>{title}</media:title>
    <media:content url="https://www.youtube.com/v/{vid}?version=3" type="application/x-shockwave-flash" width="640" height="390"/>
    <media:thumbnail url="https://i1.ytimg.com/vi/{vid}/hqdefault.jpg" width="480" height="360"/>
    <media:description>{escape(v["snippet"]["description"])}</media:description>
  </media:group>
</entry>"""
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
 <link rel="self" href="http://www.youtube.com/feeds/videos.xml?channel_id={st.channel_id}"/>
 <id>yt:channel:{st.channel_id[2:]}</id><yt:channelId>{st.channel_id[2:]}</yt:channelId>
 <title>{escape(st.channel_title)}</title>
 {"".join(entries)}
</feed>"""


class YouTubeServer(FakeService):
    state: YouTubeState

    def __init__(self, **state: Any) -> None:
        super().__init__(YouTubeState(**state), build_app)
