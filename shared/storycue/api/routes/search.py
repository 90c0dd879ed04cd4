"""``POST /v1/search``: a story in, a cue sheet out (synchronous)."""

from __future__ import annotations

from fastapi import APIRouter

from storycue.api.deps import AppSettings, Context, Tenant
from storycue.api.errors import ERROR_RESPONSES
from storycue.api.schemas import SearchRequest
from storycue.errors import InvalidInputError
from storycue.jobs.matching import MatchOptions, search
from storycue.pipeline.cuesheet import CueSheet

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


@router.post("/search", response_model=CueSheet, summary="Match one story to music")
def post_search(
    body: SearchRequest, tenant: Tenant, rt: Context, settings: AppSettings
) -> CueSheet:
    """Segment the story into scenes and return the top-k tracks of each scene, searched
    in one of your catalogues (``catalogue``) or all of them, with optional duration and
    tag filters; with ``distinct``, no track is cued twice in the sheet."""
    if body.top_k > settings.limits.max_top_k:
        raise InvalidInputError(
            f"top_k must be between 1 and {settings.limits.max_top_k}",
            detail={"field": "top_k", "max": settings.limits.max_top_k},
        )
    options = MatchOptions(
        top_k=body.top_k,
        catalogue=body.catalogue,
        min_duration_s=body.min_duration_s,
        max_duration_s=body.max_duration_s,
        tags=tuple(body.tags) if body.tags else None,
        distinct=body.distinct,
    )
    return search(rt, tenant, body.text, options)
