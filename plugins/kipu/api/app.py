"""The /kipu FastAPI app; the Kipu plugin mounts it in Airflow's API server, ``kipu api serve`` runs it alone."""

from __future__ import annotations

from fastapi import FastAPI

from kipu.api.guard import RequestGuard
from kipu.api.routes import (
    ai,
    approvals,
    connections,
    media,
    notifications,
    plans,
    posts,
    teams,
    webhooks,
    workflows,
)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Kipu API",
        description="Teams, workflows, connections, posts and AI captions for Kipu. Authenticate with a Kipu API "
        "token (`kipu tokens create --user EMAIL`) as `Authorization: Bearer kipu_...`.",
        version="1",
    )

    app.add_middleware(RequestGuard)
    for router in (
        teams.router,
        plans.router,
        notifications.router,
        posts.router,
        workflows.router,
        connections.router,
        media.router,
        approvals.router,
        webhooks.router,
        ai.router,
    ):
        app.include_router(router, prefix="/api")
    return app
