"""Dependencies of the routes: a database session per request and the settings.

A request holds a pooled connection only while it queries: every route's session is
closed as soon as its function returns (`ReleasingRoute`), before the response is
validated and sent, and the services end their transactions before they compute.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import secrets
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.metrics import Metrics
from app.services import rate_limits
from app.services.estimates import StoreLimit


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def has_api_key(settings: Settings, key: str | None) -> bool:
    """Whether `key` is the service's PHYMEM_API_KEY (always False without one)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    return (
        bool(expected)
        and key is not None
        and secrets.compare_digest(key.encode(), expected.encode())
    )


def store_limit(
    request: Request,
    x_api_key: Annotated[
        str | None, Header(description="PHYMEM_API_KEY: store past the anonymous limit.")
    ] = None,
) -> StoreLimit | None:
    """None (no limit) for a caller with the API key, else the anonymous store limit."""
    settings: Settings = request.app.state.settings
    if has_api_key(settings, x_api_key):
        return None
    return StoreLimit(settings.anonymous_max_specs, settings.anonymous_max_spec_bytes)


def job_rate_limit(
    request: Request,
    session: Annotated[Session, Depends(get_db)],
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Count a job submission against its key's PHYMEM_JOBS_PER_MINUTE (429 past it), in
    the database: the count is shared by every server process."""
    settings: Settings = request.app.state.settings
    digest = hashlib.sha256((x_api_key or "").encode()).hexdigest()
    rate_limits.hit(session, digest, settings.jobs_per_minute)


SessionDep = Annotated[Session, Depends(get_db)]
JobRateLimit = Annotated[None, Depends(job_rate_limit)]
StoreLimitDep = Annotated[StoreLimit | None, Depends(store_limit)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _close_sessions(values: dict[str, Any]) -> None:
    for value in values.values():
        if isinstance(value, Session):
            value.close()


def releasing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint`, closing the sessions it was given as soon as it returns."""
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def run_async(**values: Any) -> Any:
            try:
                return await endpoint(**values)
            finally:
                _close_sessions(values)

        return run_async

    @functools.wraps(endpoint)
    def run(**values: Any) -> Any:
        try:
            return endpoint(**values)
        finally:
            _close_sessions(values)

    return run


class ReleasingRoute(APIRoute):
    """An APIRoute whose endpoint gives its database connection back before responding."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, releasing(endpoint), **kwargs)
