"""The /kipu FastAPI app; the Kipu plugin mounts it in Airflow's API server, ``kipu api serve`` runs it alone."""

from __future__ import annotations

from fastapi import FastAPI

from kipu.api.routes import ai


def create_app() -> FastAPI:
    app = FastAPI(
        title="Kipu API",
        description="Teams, workflows, connections, media, posts and approvals for Kipu. Authenticate with an "
        "Airflow JWT (POST /auth/token), as for Airflow's own REST API.",
        version="1",
    )
    app.include_router(ai.router, prefix="/api")
    return app
