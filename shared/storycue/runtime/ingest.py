"""Ingest or remove one track by URI: the unit of work of the Kafka consumer and the
audio worker's single-track task.

Built on the gateway's job layer (:mod:`storycue.jobs.ingest`): the URI is registered as a
track source of the tenant's catalogue (so the track shows in the API like one registered
there), fetched under the same URI rules (:mod:`storycue.sources`), embedded with the
catalogue's active model, and stored. Idempotent by content: a catalogue holds each file's
content once (sha256), its vector is one point whose id derives from the track id, and the
provenance row is one per track and model, so running it twice, or again after a crash
between the writes, never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import func, select

from storycue.config import Settings
from storycue.errors import StorycueError
from storycue.jobs.ingest import (
    FetchedAudio,
    prepare_fetched,
    prepare_source,
    store_prepared,
)
from storycue.jobs.runtime import JobRuntime
from storycue.log import get_logger
from storycue.storage.orm import TrackSourceRow
from storycue.storage.records import EmbeddingRecord, Track

log = get_logger(__name__)


@dataclass(frozen=True)
class IngestedTrack:
    """The stored track, whether this call embedded it, and where its vector lives."""

    track: Track
    embedded_now: bool
    embedding: EmbeddingRecord
    model_key: str


def ingest_uri(
    runtime: JobRuntime,
    settings: Settings,
    *,
    tenant: str,
    catalogue: str,
    uri: str,
    title: str | None = None,
    artist: str | None = None,
    tags: Sequence[str] = (),
    fetched: Future[FetchedAudio] | None = None,
) -> IngestedTrack:
    """Register, fetch, embed and store one track in ``tenant``'s ``catalogue``.

    ``fetched`` is the URI's audio already being fetched and decoded ahead (the Kafka
    consumer does so for the next event while the model embeds this one); audio fetched
    for another URI is refused. Raises :class:`~storycue.errors.StorycueError` (or
    :class:`OSError`) when the URI can never be ingested (refused, missing, not audio, out
    of limits): the source is then marked failed. Database, vector-store and network
    errors propagate (callers retry).
    """
    cat, _ = runtime.tenancy.create_catalogue(tenant, catalogue)
    source, _ = runtime.tenancy.register_source(
        tenant, cat.id, uri, title=title, artist=artist, tags=tags
    )
    model = runtime.catalogue_model(tenant, cat.id)
    record = runtime.ensure_registered(model)
    try:
        if fetched is None:
            prepared = prepare_source(runtime, settings, record, cat, source)
        else:
            prepared = prepare_fetched(runtime, record, cat, source, fetched.result())
        track_id, embedded = store_prepared(runtime, model, record, cat, prepared)
    except (StorycueError, OSError) as exc:
        code = exc.code if isinstance(exc, StorycueError) else "io_error"
        message = exc.message if isinstance(exc, StorycueError) else str(exc)
        runtime.tenancy.mark_source(
            tenant, cat.id, source.id, "failed", error_code=code, error_message=message
        )
        raise
    runtime.tenancy.mark_source(tenant, cat.id, source.id, "ingested", track_id=track_id)
    track = runtime.metadata.get_track(track_id)
    emb = runtime.metadata.get_embedding(track_id, record.id)
    if track is None or emb is None:  # removed by a concurrent event between the writes
        raise StorycueError(f"track {track_id} of {uri!r} was removed while being ingested")
    return IngestedTrack(
        track=track, embedded_now=embedded, embedding=emb, model_key=model.identity.key
    )


def remove_uri(runtime: JobRuntime, *, tenant: str, catalogue: str, uri: str) -> int:
    """Delete the track registered under ``uri`` (its vectors first); how many tracks went.

    Idempotent: an unknown catalogue or URI removes nothing.
    """
    cats = [c for c in runtime.tenancy.catalogues(tenant) if c.name == catalogue]
    if not cats:
        return 0
    cat = cats[0]
    with runtime.metadata.engine.connect() as conn:
        rows = conn.execute(
            select(TrackSourceRow.id, TrackSourceRow.track_id).where(
                TrackSourceRow.catalogue_id == cat.id, TrackSourceRow.uri == uri
            )
        ).all()
    removed = 0
    for source_id, track_id in rows:
        if track_id is not None and _sources_of_track(runtime, int(track_id)) == 1:
            _delete_vectors(runtime, int(track_id))  # first: a crash re-runs the event
        _src, gone = runtime.tenancy.delete_source(tenant, cat.id, int(source_id))
        removed += int(bool(gone))
    log.info("track_removed", tenant=tenant, catalogue=catalogue, uri=uri, removed=removed)
    return removed


def previous_track_id(runtime: JobRuntime, *, tenant: str, catalogue: str, uri: str) -> int | None:
    """The track the source ``uri`` of a catalogue points at now, if any."""
    cats = [c for c in runtime.tenancy.catalogues(tenant) if c.name == catalogue]
    if not cats:
        return None
    with runtime.metadata.engine.connect() as conn:
        tid = conn.scalar(
            select(TrackSourceRow.track_id).where(
                TrackSourceRow.catalogue_id == cats[0].id, TrackSourceRow.uri == uri
            )
        )
    return None if tid is None else int(tid)


def drop_track_if_unreferenced(runtime: JobRuntime, track_id: int) -> bool:
    """Delete a track no source points at any more (vectors, then rows)."""
    if _sources_of_track(runtime, track_id) > 0:
        return False
    _delete_vectors(runtime, track_id)
    return runtime.metadata.delete_track(track_id)


def _delete_vectors(runtime: JobRuntime, track_id: int) -> None:
    for emb in runtime.metadata.list_embeddings(track_id=track_id):
        rec = runtime.metadata.get_model_by_id(emb.model_id)
        if rec is not None:
            runtime.vectors.delete(rec.identity, [emb.point_id])


def _sources_of_track(runtime: JobRuntime, track_id: int) -> int:
    with runtime.metadata.engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(TrackSourceRow)
                .where(TrackSourceRow.track_id == track_id)
            )
            or 0
        )
