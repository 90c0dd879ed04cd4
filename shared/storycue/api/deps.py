"""Request dependencies: the process's context and settings, and the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from storycue.config import Settings
from storycue.context import ProcessContext
from storycue.errors import AuthenticationError
from storycue.jobs.dispatch import JobDispatcher
from storycue.jobs.params import MAX_ROW_ID
from storycue.storage.jobs import JOB_ID
from storycue.storage.tenancy import DEFAULT_TENANT

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sc_...`")
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: sc_...`"
)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_context_dep(request: Request) -> ProcessContext:
    context: ProcessContext = request.app.state.context
    return context


def get_dispatcher_dep(request: Request) -> JobDispatcher:
    dispatcher: JobDispatcher = request.app.state.dispatcher
    return dispatcher


def get_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> str:
    """The caller's tenant, from its API key (``default`` when auth is off and no key
    is sent). A key that is sent must be valid even when auth is off."""
    settings: Settings = request.app.state.settings
    key = credentials.credentials if credentials is not None else api_key
    if key is None:
        if settings.service.auth_required:
            raise AuthenticationError(
                "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`"
            )
        return DEFAULT_TENANT
    context: ProcessContext = request.app.state.context
    record = context.keys.authenticate(key.strip())
    if record is None:
        raise AuthenticationError("unknown or revoked API key")
    return record.tenant


#: A track id in a path: what the schema states is what the database can hold.
TrackIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The track's id.")]
#: A job id in a path.
JobIdPath = Annotated[str, Path(pattern=JOB_ID, description="The job's id.")]

Tenant = Annotated[str, Depends(get_tenant)]
Context = Annotated[ProcessContext, Depends(get_context_dep)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
Dispatcher = Annotated[JobDispatcher, Depends(get_dispatcher_dep)]
