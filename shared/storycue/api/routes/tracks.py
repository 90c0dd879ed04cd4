"""A track's audio, for listening: ``GET /v1/tracks/{id}/audio`` and signed links to it.

The audio is streamed from the track's source (a local file under the allowed roots,
``s3://`` or ``http(s)://``, re-checked on every request like an ingest fetch) with HTTP
range support, so a browser can seek. The route accepts an API key like every ``/v1``
route, or a signed link from ``POST /v1/tracks/audio-links`` (:mod:`storycue.api.links`),
which is what an ``<audio>`` element uses. A track of another tenant is a 404; a track
whose audio is gone from its source is a 409 ``source_gone``; a source that fails
otherwise is a 502.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from storycue.api.deps import (
    AppSettings,
    Context,
    Tenant,
    TrackIdPath,
    api_key_header,
    bearer,
    get_tenant,
)
from storycue.api.errors import ERROR_RESPONSES, SOURCE_RESPONSES, ErrorResponse
from storycue.api.links import AudioLinkSigner
from storycue.jobs.params import RowId
from storycue.sources import open_audio

#: Under ``/v1`` (the API key dependency applies): the signed links.
router = APIRouter(tags=["tracks"], responses=ERROR_RESPONSES)
#: Also under ``/v1``, but outside the API key dependency: the audio route checks a key *or*
#: a signed link itself.
audio_router = APIRouter(tags=["tracks"], responses=ERROR_RESPONSES)

MAX_LINKS = 500


class AudioLinksRequest(BaseModel):
    track_ids: list[RowId] = Field(min_length=1, max_length=MAX_LINKS)


class AudioLinks(BaseModel):
    links: dict[str, str] = Field(description="Track id → URL of its audio (path and query).")
    expires: int = Field(description="When the links stop working (Unix seconds).")


def signer_of(request: Request) -> AudioLinkSigner:
    signer: AudioLinkSigner = request.app.state.audio_links
    return signer


Signer = Annotated[AudioLinkSigner, Depends(signer_of)]


@router.post(
    "/tracks/audio-links", response_model=AudioLinks, summary="Signed links to tracks' audio"
)
def audio_links(body: AudioLinksRequest, tenant: Tenant, rt: Context, signer: Signer) -> AudioLinks:
    """URLs an ``<audio>`` element can play without an API key: each grants your one track
    until ``expires`` (``service.audio_link_ttl_s``). Unknown tracks, or other tenants',
    are a 404."""
    links: dict[str, str] = {}
    expires = 0
    for track_id in dict.fromkeys(body.track_ids):
        rt.tenancy.track(tenant, track_id)
        query, expires = signer.sign(tenant, track_id)
        links[str(track_id)] = f"/v1/tracks/{track_id}/audio?{query}"
    return AudioLinks(links=links, expires=expires)


def audio_tenant(
    request: Request,
    track_id: TrackIdPath,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
    signer: Signer,
    tenant: Annotated[str | None, Query(max_length=100)] = None,
    expires: Annotated[int | None, Query(ge=0)] = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
) -> str:
    """The tenant of a signed link when one is given, else the API key's."""
    if sig is not None or tenant is not None or expires is not None:
        if sig is None or tenant is None or expires is None:
            from storycue.errors import AuthenticationError

            raise AuthenticationError("a signed audio link needs tenant, expires and sig")
        return signer.verify(tenant, track_id, expires, sig)
    return get_tenant(request, credentials, api_key)


_AUDIO_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"audio/*": {}}, "description": "The whole audio."},
    206: {"content": {"audio/*": {}}, "description": "The requested byte range."},
    **SOURCE_RESPONSES,
    409: {"model": ErrorResponse, "description": "The audio is gone from its source."},
    416: {"model": ErrorResponse, "description": "The range lies outside the audio."},
    502: {"model": ErrorResponse, "description": "The source failed."},
}


@audio_router.get(
    "/tracks/{track_id}/audio",
    operation_id="track_audio",
    response_class=Response,
    responses=_AUDIO_RESPONSES,
    summary="Stream a track's audio (HTTP ranges)",
)
@audio_router.head(
    "/tracks/{track_id}/audio",
    operation_id="track_audio_head",
    response_class=Response,
    responses=_AUDIO_RESPONSES,
    summary="A track's audio: headers only",
)
def track_audio(
    request: Request,
    track_id: TrackIdPath,
    tenant: Annotated[str, Depends(audio_tenant)],
    rt: Context,
    settings: AppSettings,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The audio bytes of one of your tracks, from its source. ``Range: bytes=a-b`` answers
    206 with ``Content-Range``; without it, 200 with the whole file."""
    track = rt.tenancy.track(tenant, track_id)
    audio = open_audio(track.uri, settings, range_header)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=300"}
    if audio.span is not None:
        headers["Content-Length"] = str(audio.span.length)
        if audio.partial:
            headers["Content-Range"] = audio.span.content_range
    status = 206 if audio.partial else 200
    if request.method == "HEAD":
        audio.close()
        return Response(status_code=status, headers=headers, media_type=audio.content_type)
    return StreamingResponse(
        audio.chunks,
        status_code=status,
        headers=headers,
        media_type=audio.content_type,
        background=BackgroundTask(audio.close),
    )
