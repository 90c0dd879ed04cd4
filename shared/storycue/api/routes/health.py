"""Liveness, readiness and Prometheus metrics (unversioned, no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from storycue.api.deps import Context
from storycue.api.errors import RETRY_AFTER_S, ErrorResponse, error_response
from storycue.api.schemas import Health, Readiness
from storycue.log import get_logger
from storycue.storage.jobs import JOB_KINDS

log = get_logger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the vector store answer",
    responses={503: {"model": ErrorResponse, "description": "A dependency is down."}},
)
def readyz(rt: Context) -> Response | Readiness:
    from storycue.metrics import set_dependency_up

    checks: dict[str, str] = {}
    try:
        with rt.metadata.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        rt.vectors.collections()
        checks["vectors"] = "ok"
    except Exception as exc:
        checks["vectors"] = f"down: {type(exc).__name__}"
    for name, value in checks.items():
        set_dependency_up(name, value == "ok")
    down = [k for k, v in checks.items() if v != "ok"]
    if down:
        log.warning("not ready", down=down)
        return error_response(
            503,
            "not_ready",
            f"dependencies down: {', '.join(down)}",
            {"checks": checks},
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return Readiness(status="ready", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request, rt: Context) -> Response:
    """The Prometheus exposition (every process's metrics in multiprocess mode)."""
    from storycue.metrics import render, set_job_counts

    try:
        counts = rt.jobs.count_by_kind_and_state()
        for kind in JOB_KINDS:
            set_job_counts(kind, counts.get(kind, {}))
    except Exception as exc:  # metrics must be served while the database is down
        log.warning("job counts unavailable", error=type(exc).__name__)
    body, content_type = render(request.headers.get("accept"))
    return Response(content=body, media_type=content_type)
