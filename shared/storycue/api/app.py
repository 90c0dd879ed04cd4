"""The gateway application: ``create_app(settings, dispatcher)``.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

- ``/v1/search``, ``/v1/jobs/...``, ``/v1/catalogues/...``, ``/v1/models/...``,
  ``/v1/tracks/...`` — the API, authenticated by API key when ``service.auth_required``
  (else tenant ``default``); a track's audio also by a signed link;
- ``/healthz``, ``/readyz``, ``/metrics`` — operations, no key;
- ``/studio`` (and ``/`` redirecting to it) — the web page, when ``service.studio``.

The embedded mode (``storycue serve``) runs jobs in-process; the deployed gateway passes the
Celery dispatcher (``queue.execution=celery``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from storycue import __version__
from storycue.api.deps import get_tenant
from storycue.api.errors import install_error_handlers
from storycue.api.links import AudioLinkSigner
from storycue.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from storycue.api.routes import catalogues, health, jobs, models, search, studio, tracks
from storycue.config import Settings, get_settings
from storycue.context import ProcessContext, get_context
from storycue.jobs.dispatch import InProcessDispatcher, JobDispatcher
from storycue.log import get_logger

if TYPE_CHECKING:
    from storycue.runtime.supervisor import JobSupervisor

log = get_logger(__name__)

API_PREFIX = "/v1"


def default_dispatcher(settings: Settings) -> JobDispatcher:
    """The dispatcher ``settings.queue.execution`` asks for."""
    if settings.queue.execution == "celery":
        from storycue.runtime.dispatcher import CeleryDispatcher

        dispatcher: JobDispatcher = CeleryDispatcher(settings)
        return dispatcher
    return InProcessDispatcher(settings)


def job_supervisor(
    settings: Settings, context: ProcessContext, dispatcher: JobDispatcher
) -> JobSupervisor | None:
    """The job supervisor the gateway runs (a daemon thread while the app is up) with
    ``queue.execution=celery``: it re-dispatches work the broker lost
    (:mod:`storycue.runtime.supervisor`). ``None`` in-process, where nothing is lost."""
    if settings.queue.execution != "celery":
        return None
    from storycue.runtime.dispatcher import CeleryDispatcher
    from storycue.runtime.supervisor import JobSupervisor

    if not isinstance(dispatcher, CeleryDispatcher):
        return None
    return JobSupervisor(settings, jobs=context.jobs, dispatcher=dispatcher)


#: Request bodies whose fields carry the configured limits (plus FastAPI's ``Body_*`` forms).
_REQUEST_BODIES = frozenset({"SearchRequest", "StoryIn", "MatchJobRequest"})


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``/openapi.json`` state what this gateway, with these settings, accepts:

    - with ``service.auth_required`` off an API key is optional (each operation's
      ``security`` also lists ``{}``), as :func:`~storycue.api.deps.get_tenant` behaves;
    - the configured limits (``limits.max_top_k``, ``limits.max_story_chars``,
      ``service.max_stories_per_job``) become the schema's maxima, so a request the schema
      allows is one the gateway takes.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        if not settings.service.auth_required:
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    if isinstance(op, dict) and op.get("security") and {} not in op["security"]:
                        op["security"].append({})
        limits = {
            "top_k": {"maximum": settings.limits.max_top_k},
            "text": {"maxLength": settings.limits.max_story_chars},
            "stories": {"maxItems": settings.service.max_stories_per_job},
        }
        for cname, component in schema.get("components", {}).get("schemas", {}).items():
            if cname not in _REQUEST_BODIES and not cname.startswith("Body_"):
                continue
            for name, extra in limits.items():
                prop = component.get("properties", {}).get(name)
                if isinstance(prop, dict) and "type" in prop:
                    prop.update(extra)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    dispatcher: JobDispatcher | None = None,
    *,
    context: ProcessContext | None = None,
) -> FastAPI:
    """The gateway for ``settings`` (default: the environment's)."""
    s = settings or get_settings()
    rt = context or get_context(s)
    if s.service.share_search_forwards:
        rt.share_text_forwards()
    disp = dispatcher or default_dispatcher(s)

    supervisor = job_supervisor(s, rt, disp)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("gateway started", execution=s.queue.execution, auth=s.service.auth_required)
        if supervisor is not None:
            supervisor.start()
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.stop()
            if isinstance(disp, InProcessDispatcher) and dispatcher is None:
                disp.shutdown(wait=False)

    app = FastAPI(
        title="storycue",
        version=__version__,
        description="Find music whose emotion matches a story. Errors are "
        '`{"error": {"code", "message", "details"}}` with stable codes.',
        lifespan=lifespan,
    )
    app.state.settings = s
    app.state.context = rt
    app.state.dispatcher = disp
    app.state.supervisor = supervisor
    app.state.audio_links = AudioLinkSigner.from_settings(s)

    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(get_tenant)])
    for module in (search, jobs, catalogues, models, tracks):
        v1.include_router(module.router)
    app.include_router(v1)
    # The audio route checks an API key or a signed link itself (an <audio> element can
    # send no header), so it sits beside the authenticated router.
    app.include_router(tracks.audio_router, prefix=API_PREFIX)
    app.include_router(health.router)
    if s.service.studio:
        app.include_router(studio.router)
    install_error_handlers(app)
    install_openapi(app, s)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_request_bytes=s.service.max_request_bytes,
        max_upload_bytes=s.service.max_upload_bytes,
        upload_paths={jobs.UPLOAD_PATH},
    )
    return app
