"""ASGI middleware of the gateway: body size limits and per-route metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from storycue.log import get_logger

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """Raised while reading a body that went over its limit (answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {limit}-byte limit")


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"the request body is over the {limit}-byte limit",
                "details": {"max_bytes": limit},
            }
        }
    ).encode()


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_request_bytes`` (``max_upload_bytes`` on upload
    paths): by ``Content-Length`` before reading, else while streaming."""

    def __init__(
        self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int, upload_paths: set[str]
    ) -> None:
        self.app = app
        self.max_request = max_request_bytes
        self.max_upload = max_upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload if scope.get("path") in self.upload_paths else self.max_request
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > limit:
            body = _too_large_body(limit)
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    # The single call site of the HTTP metrics (storycue.metrics owns the objects).
    from storycue.metrics import observe_request

    observe_request(route, method, status, seconds)


def route_template(scope: Scope) -> str | None:
    """The full route template of a routed request (``/v1/jobs/{job_id}``), or ``None``.

    FastAPI leaves the route of an included router in the scope with its own path (without
    the prefixes it was included under); the static prefix is taken from the real path.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    segments = str(scope.get("path", "")).split("/")
    own = template.count("/")
    prefix = "/".join(segments[: max(1, len(segments) - own)])
    return prefix + template if prefix and prefix != "/" else template


class MetricsMiddleware:
    """Count requests and time them per route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            template = route_template(scope)
            try:
                _observe(
                    str(template or "unmatched"),
                    scope.get("method", "GET"),
                    status,
                    time.perf_counter() - start,
                )
            except Exception as exc:  # metrics must never break a request
                log.warning("metrics observation failed", error=str(exc))
