"""RFC 9457 problem details for every error, with the field at fault where there is one."""

from __future__ import annotations

import logging
import re
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.status import HTTP_422_UNPROCESSABLE_CONTENT

from app.api.schemas import UNION_TAGS
from app.core.limits import ClientDisconnected
from estimator.errors import DomainError, InvalidInput, NotFound, RateLimited, Unavailable
from estimator.spec import FamilySpec, LayerSpec, ModelSpec

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("phymem.api")

_LAYER_TAGS = frozenset(
    model.model_fields["type"].default for model in typing.get_args(typing.get_args(LayerSpec)[0])
)
_SPEC_FIELDS = frozenset(FamilySpec.model_fields) | frozenset(ModelSpec.model_fields)
_LEADING_FIELD = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?")
_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """An error the service reports as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[tuple[str, str]] = (),
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.title = title or _TITLES.get(status, "Error")


def invalid(field: str, message: str) -> InvalidInput:
    """A 422 naming one field."""
    return InvalidInput(field, message)


# Database errors that mean "not now" rather than "wrong": the server is down or restarting,
# a connection broke, or no pooled connection came free within the pool timeout.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
RETRY_AFTER_S = 1


def domain_problem(error: DomainError) -> ProblemError | None:
    """The problem details of a domain error (None: not one the HTTP layer reports)."""
    if isinstance(error, InvalidInput):
        return ProblemError(
            HTTP_422_UNPROCESSABLE_CONTENT, str(error), [(error.field, error.reason)]
        )
    if isinstance(error, NotFound):
        return ProblemError(404, error.message)
    return None


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    errors: Iterable[tuple[str, str]] | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = [{"field": field, "message": message} for field, message in errors]
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: Sequence[str | int]) -> tuple[str, bool]:
    """('body', 'family-spec', 'layers', 0, 'dense', 'units') -> ('layers.0.units', in_body)."""
    parts: list[str] = []
    in_body = bool(loc) and loc[0] == "body"
    previous: str | int | None = None
    for item in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(item, str) and (
            item in UNION_TAGS or (item in _LAYER_TAGS and isinstance(previous, int))
        ):
            previous = item
            continue
        parts.append(str(item))
        previous = item
    return ".".join(parts), in_body


def _model_level_field(message: str) -> str | None:
    """A validator's message such as 'layers[2] (dense): ...' or 'k*nt = ...' -> its field."""
    match = _LEADING_FIELD.match(message)
    if match and match.group(1) in _SPEC_FIELDS:
        return match.group(1) if match.group(2) is None else f"{match.group(1)}.{match.group(2)}"
    return None


def validation_errors(errors: Sequence[Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        field, _ = field_path(loc)
        if error.get("type") == "value_error":
            inner = _model_level_field(message)
            if inner is not None:
                field = f"{field}.{inner}" if field else inner
        if error.get("type") == "json_invalid":
            message = f"invalid JSON: {error.get('ctx', {}).get('error', message)}"
        rows.append((field, message))
    return rows


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    rows = validation_errors(exc.errors())
    detail = "; ".join(f"{f or 'body'}: {m}" for f, m in rows[:5]) or "invalid request"
    return problem_response(request, HTTP_422_UNPROCESSABLE_CONTENT, detail, rows)


async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(request, exc.status, exc.detail, exc.errors or None, exc.title)


async def _domain(request: Request, exc: DomainError) -> JSONResponse:
    if isinstance(exc, Unavailable):
        return problem_response(
            request,
            503,
            exc.message,
            headers={"Retry-After": str(exc.retry_after_s)},
            extra={"dependency": exc.dependency},
        )
    if isinstance(exc, RateLimited):
        return problem_response(
            request, 429, exc.message, headers={"Retry-After": str(exc.retry_after_s)}
        )
    problem = domain_problem(exc)
    if problem is None:
        return await _unexpected(request, exc)
    return problem_response(
        request, problem.status, problem.detail, problem.errors or None, problem.title
    )


async def _gone(request: Request, exc: ClientDisconnected) -> JSONResponse:
    log.info("client left %s %s; its computation stopped", request.method, request.url.path)
    return problem_response(request, 499, "client closed the request", title="Client Closed")


async def _database(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
    if not isinstance(exc, DATABASE_UNAVAILABLE):
        return await _unexpected(request, exc)
    reason = str(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).splitlines()
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason[:1])
    return problem_response(
        request,
        503,
        f"the database is unavailable ({type(exc).__name__}); retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extra={"dependency": "database"},
    )


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(request, exc.status_code, detail, None, None, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:16]
    log.error(
        "internal error %s on %s %s",
        incident,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return problem_response(
        request,
        500,
        f"internal error {incident}; the server log has its traceback",
        headers={"X-Correlation-Id": incident},
        extra={"correlation_id": incident},
    )


_HANDLERS: tuple[tuple[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]], ...] = (
    (RequestValidationError, _validation),
    (ProblemError, _problem),
    (DomainError, _domain),
    (ClientDisconnected, _gone),
    (sa_exc.SQLAlchemyError, _database),
    (StarletteHTTPException, _http),
    (Exception, _unexpected),
)


def install(app: FastAPI) -> None:
    """Every error the API answers becomes problem+json (RFC 9457) from one handler each."""
    for exception, handler in _HANDLERS:
        app.add_exception_handler(exception, handler)
