"""GET /health and GET /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import MetricsDep, ReleasingRoute, SessionDep
from app.api.schemas import HealthOut, Problem
from estimator.engine import ENGINE_VERSION
from estimator.errors import Unavailable

router = APIRouter(tags=["operations"], route_class=ReleasingRoute)


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Liveness and database reachability",
    responses={
        503: {
            "model": Problem,
            "description": "A dependency cannot be reached; `dependency` names it.",
        }
    },
)
def health(session: SessionDep) -> dict[str, Any]:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        raise Unavailable("database", f"database unreachable: {type(error).__name__}") from None
    return {"status": "ok", "database": "ok", "engine_version": ENGINE_VERSION}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)
