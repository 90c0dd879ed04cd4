"""JSON errors of the gateway: one shape, stable codes, the right status.

Every error answers ``{"error": {"code": ..., "message": ..., "details": ...}}``. Codes are
the ``code`` of the :class:`~storycue.errors.StorycueError` raised (``not_found``,
``invalid_input``, ...), ``validation_error`` for a request that does not fit the schema,
and ``database_unavailable`` / ``vector_store_unavailable`` (503 with ``Retry-After``)
while a dependency is down. Bad input never answers 500.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from storycue.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DatasetNotFoundError,
    InvalidInputError,
    ModelMismatchError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    SourceNotAllowedError,
    StorycueError,
    TooManyJobsError,
)
from storycue.log import get_logger
from storycue.sources import RangeNotSatisfiableError, SourceFetchError, SourceGoneError
from storycue.storage.jobs import InvalidTransitionError

log = get_logger(__name__)

#: Seconds a client is told to wait while a dependency is down.
RETRY_AFTER_S = 5

#: HTTP status of each error class (the most specific class wins).
STATUS: list[tuple[type[StorycueError], int]] = [
    (PayloadTooLargeError, 413),
    (SourceNotAllowedError, 403),
    (RangeNotSatisfiableError, 416),
    (SourceGoneError, 409),
    (SourceFetchError, 502),
    (AuthenticationError, 401),
    (ServiceUnavailableError, 503),
    (TooManyJobsError, 429),
    (InvalidTransitionError, 409),
    (ConflictError, 409),
    (ModelMismatchError, 409),
    (ModelNotFoundError, 404),
    (NotFoundError, 404),
    (DatasetNotFoundError, 409),
    (InvalidInputError, 422),
    (ConfigurationError, 500),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code.", examples=["not_found"])
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


#: OpenAPI ``responses`` entries shared by the routes.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key."},
    404: {"model": ErrorResponse, "description": "No such resource (or another tenant's)."},
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid request."},
    503: {"model": ErrorResponse, "description": "A dependency is down; see Retry-After."},
}

#: Extra ``responses`` of the routes that read a track's source.
SOURCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorResponse,
        "description": "The source is well formed but this deployment may not read it "
        "(sources.allowed_roots, sources.allow_private_addresses): source_not_allowed.",
    },
}

#: Extra ``responses`` of the routes that create jobs.
JOB_LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "The tenant has as many unfinished jobs (of this kind) as its limit "
        "allows (settings limits.max_active_jobs / max_active_jobs_by_kind); see Retry-After.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or {}))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


#: Codes of errors defined elsewhere (the Celery runtime) that mean "retry later".
UNAVAILABLE_CODES = frozenset({"dependency_unavailable", "service_unavailable"})


def status_of(exc: StorycueError) -> int:
    if exc.code in UNAVAILABLE_CODES:
        return 503
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _storycue(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorycueError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if isinstance(exc, TooManyJobsError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, RangeNotSatisfiableError):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if status >= 500:
        log.error("request failed", path=request.url.path, code=exc.code, error=exc.message)
    return error_response(status, exc.code, exc.message, _jsonable(exc.detail), headers)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    return error_response(
        422, "validation_error", f"{where}: {first['msg']}", {"errors": errors[:50]}
    )


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # a body that is not UTF-8 JSON (or a broken form): an invalid request like any other
        return error_response(
            422, "validation_error", "the request body could not be parsed (UTF-8 JSON expected)"
        )
    if exc.status_code == 400:
        # Starlette's other body parsers (a broken multipart upload): also an invalid request,
        # answered like every other one (the routes document 422, not 400)
        detail = exc.detail if isinstance(exc.detail, str) else "the request body is malformed"
        return error_response(422, "validation_error", f"the request body is malformed: {detail}")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, message, headers=headers)


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def allowed_methods(request: Request) -> list[str]:
    """Every documented method of the paths that match this request's path (Starlette's
    own 405 names only the first route whose path matches, e.g. ``POST`` for
    ``/v1/catalogues``, which also has ``GET``). Read from the OpenAPI document, so ``Allow``
    and the schema never disagree."""
    app = request.app
    table: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(
        app.state, "allow_table", None
    )
    if table is None:
        table = []
        for template, item in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            methods = frozenset(m.upper() for m in item if m.upper() in _HTTP_METHODS)
            table.append((re.compile(f"^{regex}$"), methods))
        app.state.allow_table = table
    path = request.url.path
    matched = [(pattern, methods) for pattern, methods in table if pattern.match(path)]
    # a literal path wins over templated ones (/v1/jobs/train is not /v1/jobs/{job_id})
    literal = [m for p, m in matched if "[^/]+" not in p.pattern]
    return sorted({m for methods in (literal or [m for _, m in matched]) for m in methods})


def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
    return error_response(
        503,
        "database_unavailable",
        "the metadata database is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _vectors_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("vector store unavailable", path=request.url.path, error=type(exc).__name__)
    return error_response(
        503,
        "vector_store_unavailable",
        "the vector store is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _bad_data(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value of the request (a NUL character, a number out of
    # range, ...): the request was invalid, not the server.
    log.warning("database refused request data", path=request.url.path, error=type(exc).__name__)
    return error_response(
        422, "invalid_input", "a value of the request cannot be stored or looked up"
    )


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", path=request.url.path, error=type(exc).__name__)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error raised by a request to the JSON error shape."""
    app.add_exception_handler(StorycueError, _storycue)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DataError, _bad_data)
    for db_exc in (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError):
        app.add_exception_handler(db_exc, _database_down)
    app.add_exception_handler(httpx.TransportError, _vectors_down)
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException

        app.add_exception_handler(ResponseHandlingException, _vectors_down)
    except ImportError:  # pragma: no cover - qdrant-client is a dependency
        pass
    app.add_exception_handler(Exception, _internal)
