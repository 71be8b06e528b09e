"""The /kipu FastAPI app; the Kipu plugin mounts it in Airflow's API server, ``kipu api serve`` runs it alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from kipu.api.routes import ai, approvals, connections, media, posts, teams, webhooks, workflows, youtube_webhooks

MAX_JSON = 1024 * 1024  # uploads go to /media/upload, with their own limit


def create_app() -> FastAPI:
    app = FastAPI(
        title="Kipu API",
        description="Teams, workflows, connections, posts and AI captions for Kipu. Authenticate with a Kipu API "
        "token (`kipu tokens create --user EMAIL`) as `Authorization: Bearer kipu_...`.",
        version="1",
    )

    @app.middleware("http")
    async def refuse_nul(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """PostgreSQL text cannot hold NUL: refuse it at the door (422), never fail on it later (500)."""
        where = None
        if "%00" in request.url.query or "\x00" in unquote(request.url.path) or "%00" in request.url.path:
            where = "query" if "%00" in request.url.query else "path"
        elif request.headers.get("content-type", "").startswith("application/json"):
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_JSON:
                detail = f"JSON bodies are limited to {MAX_JSON} bytes"
                return JSONResponse({"detail": detail}, status_code=413)
            body = await request.body()
            if len(body) > MAX_JSON:
                return JSONResponse({"detail": f"JSON bodies are limited to {MAX_JSON} bytes"}, status_code=413)
            if b"\\u0000" in body or b"\x00" in body:
                where = "body"
        if where:
            detail = [{"loc": [where], "msg": "NUL characters are not allowed", "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return await call_next(request)

    for router in (
        teams.router,
        posts.router,
        workflows.router,
        connections.router,
        media.router,
        approvals.router,
        youtube_webhooks.router,  # before Meta's /webhooks/{platform}, which would take /webhooks/youtube
        webhooks.router,
        ai.router,
    ):
        app.include_router(router, prefix="/api")
    return app
