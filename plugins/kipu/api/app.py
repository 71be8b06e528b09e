"""The /kipu FastAPI app; the Kipu plugin mounts it in Airflow's API server, ``kipu api serve`` runs it alone."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kipu.api.guard import RequestGuard
from kipu.api.routes import (
    ai,
    approvals,
    billing,
    connections,
    invitations,
    media,
    notifications,
    plans,
    posts,
    teams,
    webhooks,
    workflows,
)
from kipu.billing.plans import PlanLimitReached
from kipu.ui import pages as ui_pages


def create_app() -> FastAPI:
    app = FastAPI(
        title="Kipu API",
        description="Teams, workflows, connections, posts and AI captions for Kipu. Authenticate with a Kipu API "
        "token (`kipu tokens create --user EMAIL`) as `Authorization: Bearer kipu_...`.",
        version="1",
    )

    app.add_middleware(RequestGuard)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes each refused input: one JSON cannot carry (an infinite number, a lone
        # surrogate) turned the 422 into a 500, and an echo could repeat a secret sent in the wrong field.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(PlanLimitReached)
    async def _plan_limit(_request: Request, exc: PlanLimitReached) -> JSONResponse:
        # Wherever a limited thing is added (API, apply, OAuth callback), the answer names the limit and the use.
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(exc.tell)
        return JSONResponse(exc.body(), status_code=402)

    for router in (
        teams.router,
        invitations.router,
        plans.router,
        notifications.router,
        billing.router,
        posts.router,
        workflows.router,
        connections.router,
        media.router,
        approvals.router,
        webhooks.router,
        ai.router,
    ):
        app.include_router(router, prefix="/api")
    app.include_router(ui_pages.router)  # the pages inside Airflow's UI (kipu.ui), served beside the API
    return app
