"""Dependencies of the routes: a database session per request and the settings.

A request holds a pooled connection only while it queries: every route's session is
closed as soon as its function returns (`ReleasingRoute`), before the response is
validated and sent, and the services end their transactions before they compute.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.metrics import Metrics


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SessionDep = Annotated[Session, Depends(get_db)]
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
