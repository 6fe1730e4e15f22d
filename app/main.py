"""The FastAPI application: `create_app()` (uvicorn: `app.main:create_app --factory`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api import errors
from app.api.routes import compress, dashboard, estimates, jobs, measurements, ops, planning
from app.api.schemas import Problem
from app.core.config import Settings, get_settings
from app.core.limits import BodySizeLimitMiddleware, RequestBudgetMiddleware
from app.core.metrics import Metrics, MetricsMiddleware
from app.db.migrate import ensure_migrated
from app.db.session import make_engine, make_sessionmaker
from app.web import assets, pages
from estimator.engine import ENGINE_VERSION

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Unreadable request (e.g. a malformed body)."},
    413: {"model": Problem, "description": "Request body too large."},
    422: {"model": Problem, "description": "Invalid input; `errors` names each field."},
    503: {
        "model": Problem,
        "description": "The database is unavailable or busy; retry after `Retry-After` s.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such resource."}
}
DESCRIPTION = """GPU memory estimates for training MIMO autoencoders and generic sequential
models. Byte counts are exact integers (they can exceed 64 bits); every error is an RFC 9457
`application/problem+json` document whose `errors` name the fields at fault."""


def _problem_openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI with error bodies documented as application/problem+json."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[0] in "45" and "application/json" in content:
                        content[errors.PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.sqlalchemy_url, **settings.pool_options)
    if settings.check_migrations:
        try:
            ensure_migrated(engine)
        except BaseException:
            engine.dispose()
            raise

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on anyio's thread pool; the database pool is sized against it.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        yield
        engine.dispose()

    app = FastAPI(
        title="phymem",
        version=f"0.1.0 (engine {ENGINE_VERSION})",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.metrics = Metrics()
    app.state.assets = assets.Assets()

    app.include_router(estimates.router, responses=ERROR_RESPONSES | NOT_FOUND)
    app.include_router(planning.router, responses=ERROR_RESPONSES)
    app.include_router(compress.router, responses=ERROR_RESPONSES)
    app.include_router(jobs.router, responses=ERROR_RESPONSES | NOT_FOUND)
    app.include_router(measurements.router, responses=ERROR_RESPONSES)
    app.include_router(dashboard.router, responses=ERROR_RESPONSES)
    app.include_router(ops.router)
    app.include_router(pages.router)  # the dashboard: /, /estimate, /measured, ...
    app.include_router(assets.router)
    errors.install(app)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestBudgetMiddleware,
        units=settings.framework_budget_units,
        time_limit_s=settings.request_time_limit_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.openapi = lambda: _problem_openapi(app)  # type: ignore[method-assign]
    return app
