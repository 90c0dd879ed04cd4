"""Catalogues, their tracks (registered by URI), ingest jobs and the active model."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from storycue.api.deps import AppSettings, Context, Dispatcher, Tenant, TrackIdPath
from storycue.api.errors import ERROR_RESPONSES, JOB_LIMIT_RESPONSES, SOURCE_RESPONSES
from storycue.api.routes.jobs import dispatch_job
from storycue.api.routes.models import default_model_ref
from storycue.api.schemas import (
    CATALOGUE_NAME,
    CatalogueCreate,
    CatalogueList,
    CatalogueOut,
    JobOut,
    ModelRef,
    MoodMap,
    MoodPoint,
    SetModelRequest,
    SetModelResponse,
    TrackOut,
    TrackPage,
    TracksCreate,
    TracksCreated,
    catalogue_out,
)
from storycue.context import ProcessContext
from storycue.jobs.params import IngestParams
from storycue.jobs.submit import submit_ingest
from storycue.jobs.switch import abandon, drop_alias, settle_switch, sync_alias
from storycue.log import get_logger
from storycue.sources import check_uri
from storycue.storage.jobs import NUMBER_CURSOR, Job, number_cursor, parse_number_cursor
from storycue.storage.metadata import MAX_PAGE
from storycue.storage.records import Catalogue, EmbeddingRecord, ModelRecord
from storycue.storage.tenancy import SourceState, TrackSource

log = get_logger(__name__)
router = APIRouter(prefix="/catalogues", tags=["catalogues"], responses=ERROR_RESPONSES)

CatalogueName = Annotated[str, Path(pattern=CATALOGUE_NAME, description="Catalogue name.")]


def _ref(rec: ModelRecord) -> ModelRef:
    return ModelRef(name=rec.name, version=rec.version, dim=rec.dim)


def _out(rt: ProcessContext, tenant: str, cat: Catalogue) -> CatalogueOut:
    switch = settle_switch(rt, tenant, cat.id)
    if switch.active is None:
        model, is_default = default_model_ref(rt.settings), True
    else:
        model, is_default = _ref(switch.active), False
    return catalogue_out(
        cat,
        rt.tenancy.count_tracks(tenant, cat.id),
        rt.tenancy.count_sources(tenant, cat.id),
        model,
        is_default,
        None if switch.pending is None else _ref(switch.pending),
        switch.job_id,
    )


def delete_vectors(rt: ProcessContext, embeddings: list[EmbeddingRecord]) -> int:
    """Delete the vectors these provenance records point at; how many."""
    by_model: dict[int, list[str]] = defaultdict(list)
    for e in embeddings:
        by_model[e.model_id].append(e.point_id)
    n = 0
    for model_id, points in by_model.items():
        rec = rt.metadata.get_model_by_id(model_id)
        if rec is not None:
            rt.vectors.delete(rec.identity, points)
            n += len(points)
    return n


def _track_out(rt: ProcessContext, src: TrackSource) -> TrackOut:
    track = rt.metadata.get_track(src.track_id) if src.track_id is not None else None
    return TrackOut.of(src, track)


@router.post(
    "",
    response_model=CatalogueOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a catalogue",
    responses={200: {"model": CatalogueOut, "description": "It already existed."}},
)
def create_catalogue(
    body: CatalogueCreate, tenant: Tenant, rt: Context, response: Response
) -> CatalogueOut:
    """Create a catalogue of yours (idempotent: an existing one answers 200)."""
    cat, created = rt.tenancy.create_catalogue(tenant, body.name)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _out(rt, tenant, cat)


@router.get("", response_model=CatalogueList, summary="List your catalogues")
def list_catalogues(tenant: Tenant, rt: Context) -> CatalogueList:
    return CatalogueList(catalogues=[_out(rt, tenant, c) for c in rt.tenancy.catalogues(tenant)])


@router.get("/{catalogue}", response_model=CatalogueOut, summary="One catalogue")
def get_catalogue(catalogue: CatalogueName, tenant: Tenant, rt: Context) -> CatalogueOut:
    return _out(rt, tenant, rt.tenancy.catalogue(tenant, catalogue))


@router.delete("/{catalogue}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a catalogue")
def delete_catalogue(catalogue: CatalogueName, tenant: Tenant, rt: Context) -> Response:
    """Delete a catalogue with its tracks, their vectors and registrations."""
    cat = rt.tenancy.catalogue(tenant, catalogue)
    embeddings = rt.tenancy.catalogue_embeddings(tenant, cat.id)
    switch = rt.tenancy.model_switch(tenant, cat.id)
    rt.tenancy.delete_catalogue(tenant, catalogue)
    rt.forget_catalogue_model(tenant, cat.id)
    abandon(rt, tenant, switch.job_id)
    n = delete_vectors(rt, embeddings)
    drop_alias(rt, cat.id)
    log.info("catalogue deleted", catalogue_id=cat.id, vectors=n)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{catalogue}/tracks",
    response_model=TracksCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Register tracks by URI",
    responses=SOURCE_RESPONSES,
)
def register_tracks(
    catalogue: CatalogueName, body: TracksCreate, tenant: Tenant, rt: Context, settings: AppSettings
) -> TracksCreated:
    """Register up to 1000 tracks by URI (absolute path under an allowed root, file://,
    s3:// or http(s):// to a public host). Every URI is checked first; none is stored
    when one is refused. ``POST /v1/catalogues/{catalogue}/ingest`` then embeds them."""
    cat = rt.tenancy.catalogue(tenant, catalogue)
    for i, t in enumerate(body.tracks):
        try:
            check_uri(t.uri, settings)
        except Exception as exc:
            if hasattr(exc, "detail") and isinstance(exc.detail, dict):
                exc.detail["index"] = i
            raise
    out: list[TrackOut] = []
    created = 0
    for t in body.tracks:
        src, new = rt.tenancy.register_source(
            tenant, cat.id, t.uri, title=t.title, artist=t.artist, tags=t.tags
        )
        created += int(new)
        out.append(_track_out(rt, src))
    return TracksCreated(tracks=out, created=created)


@router.get("/{catalogue}/tracks", response_model=TrackPage, summary="List registered tracks")
def list_tracks(
    catalogue: CatalogueName,
    tenant: Tenant,
    rt: Context,
    state: SourceState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=NUMBER_CURSOR, description="next_cursor of the previous page.")
    ] = None,
) -> TrackPage:
    cat = rt.tenancy.catalogue(tenant, catalogue)
    after = None if cursor is None else parse_number_cursor(cursor)
    page = rt.tenancy.sources(tenant, cat.id, limit=limit + 1, after_id=after, state=state)
    next_cursor = number_cursor(page[limit - 1].id) if len(page) > limit else None
    return TrackPage(tracks=[_track_out(rt, s) for s in page[:limit]], next_cursor=next_cursor)


@router.get("/{catalogue}/tracks/{track_id}", response_model=TrackOut, summary="One track")
def get_track(
    catalogue: CatalogueName, track_id: TrackIdPath, tenant: Tenant, rt: Context
) -> TrackOut:
    cat = rt.tenancy.catalogue(tenant, catalogue)
    return _track_out(rt, rt.tenancy.source(tenant, cat.id, track_id))


@router.delete(
    "/{catalogue}/tracks/{track_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a track",
)
def delete_track(
    catalogue: CatalogueName, track_id: TrackIdPath, tenant: Tenant, rt: Context
) -> Response:
    """Delete a registered track, its audio's track record and its vectors."""
    cat = rt.tenancy.catalogue(tenant, catalogue)
    _src, embeddings = rt.tenancy.delete_source(tenant, cat.id, track_id)
    delete_vectors(rt, embeddings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{catalogue}/ingest",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start an ingest job",
    responses=JOB_LIMIT_RESPONSES,
)
def ingest_catalogue(
    catalogue: CatalogueName, tenant: Tenant, rt: Context, dispatcher: Dispatcher
) -> JobOut:
    """Embed every registered track that needs it (new, failed before, or without a
    vector of the catalogue's active model). One result per track."""
    job = submit_ingest(rt, tenant, IngestParams(catalogue=catalogue))
    return JobOut.of(dispatch_job(rt, dispatcher, job))


@router.put(
    "/{catalogue}/model",
    response_model=SetModelResponse,
    summary="Set the active model",
    responses=JOB_LIMIT_RESPONSES,
)
def set_model(
    catalogue: CatalogueName,
    body: SetModelRequest,
    tenant: Tenant,
    rt: Context,
    dispatcher: Dispatcher,
) -> SetModelResponse:
    """Switch the catalogue to ``name@version`` without downtime.

    The new model is recorded as ``pending_model`` and a re-embed job (``reembed_job``)
    embeds every track with it; searches keep using the current model meanwhile. When
    the job has embedded every track, the new model becomes the active one (and the
    catalogue's vector alias ``storycue-cat-<id>`` points at its collection). A re-embed
    that fails (a track that cannot be embedded: ``reembed_incomplete``) or is cancelled
    leaves the current model active and drops the pending one.

    The model already active: nothing changes (it is pinned, so a later change of the
    configured default does not move the catalogue), and a pending switch is dropped.
    The model already pending: nothing changes, the running switch is answered. Another
    model while a switch is pending: it replaces the pending target (the earlier re-embed
    job is cancelled). When every track already has a vector of the new model, it becomes
    active at once and ``reembed_job`` is ``null``.
    """
    cat = rt.tenancy.catalogue(tenant, catalogue)
    model = rt.load_model_version(body.name, body.version)
    record = rt.register(model)
    switch = settle_switch(rt, tenant, cat.id)
    active = switch.active or rt.register(rt.load_model())
    job: Job | None = None
    if record.id == active.id:
        abandon(rt, tenant, rt.tenancy.set_active_model(tenant, cat.id, record.id))
        rt.forget_catalogue_model(tenant, cat.id)
        sync_alias(rt, cat.id, record.identity)
    elif switch.pending is not None and switch.pending.id == record.id:
        assert switch.job_id is not None
        job = rt.jobs.require(tenant, switch.job_id)
    elif not rt.tenancy.sources_to_ingest(tenant, cat.id, record.id):
        abandon(rt, tenant, rt.tenancy.set_active_model(tenant, cat.id, record.id))
        rt.forget_catalogue_model(tenant, cat.id)
        sync_alias(rt, cat.id, record.identity)
        log.info("catalogue model switched at once", catalogue_id=cat.id, model=model.identity.key)
    else:
        created = submit_ingest(
            rt, tenant, IngestParams(catalogue=catalogue, reembed=True), model=model
        )
        replaced = rt.tenancy.begin_switch(
            tenant, cat.id, active_model_id=active.id, pending_model_id=record.id, job_id=created.id
        )
        abandon(rt, tenant, replaced)
        log.info(
            "catalogue model switch started",
            catalogue_id=cat.id,
            model=model.identity.key,
            job_id=created.id,
            replaced_job_id=replaced,
        )
        job = dispatch_job(rt, dispatcher, created)
    return SetModelResponse(
        catalogue=_out(rt, tenant, cat), reembed_job=None if job is None else JobOut.of(job)
    )


@router.get("/{catalogue}/mood-map", response_model=MoodMap, summary="Tracks on the mood plane")
def mood_map(
    catalogue: CatalogueName,
    tenant: Tenant,
    rt: Context,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 2000,
) -> MoodMap:
    """Every ingested track of the catalogue with its valence and arousal under the
    catalogue's active model, for a map; over ``limit`` tracks an evenly spaced sample.
    Models without valence-arousal readings give no points."""
    cat = rt.tenancy.catalogue(tenant, catalogue)
    model = rt.catalogue_model(tenant, cat.id, cached=True)
    ident = model.identity
    rec = rt.metadata.get_model(ident.name, ident.version)
    total, rows = (0, []) if rec is None else rt.metadata.mood_points(cat.id, rec.id, limit=limit)
    return MoodMap(
        catalogue=cat.name,
        model=ModelRef(name=ident.name, version=ident.version, dim=ident.dim),
        total=total,
        sampled=total > len(rows),
        points=[
            MoodPoint(track_id=t, title=ti, artist=ar, valence=v, arousal=a)
            for t, ti, ar, v, a in rows
        ],
    )
