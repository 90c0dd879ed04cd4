"""Ingest into a tenant's catalogue: a registered track source (local path, s3:// or
http(s)://) of an ingest job, or one URI (:func:`ingest_uri`: the Kafka consumer's and the
audio worker's single-track unit of work, which registers the URI as a source first).

Both prepare a source (fetch, hash, decode, or find it already embedded) and store it
through :mod:`storycue.pipeline.ingest`, the one ingest path. Idempotent by content: the
file's sha256 identifies the track within its catalogue, its vector's point id derives
from the track id and the provenance row is one per track and model, so running it again
(after a crash, a redelivered task or a Kafka replay) duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from storycue.audio.decode import DecodedAudio
from storycue.config import Settings
from storycue.context import ProcessContext
from storycue.errors import InvalidInputError, StorycueError
from storycue.log import get_logger
from storycue.models.emotion import EmotionModel
from storycue.pipeline.ingest import (
    decode_audio,
    embed_and_store,
    embedded_track,
    prepare_file,
    sha256_file,
)
from storycue.sources import fetch
from storycue.storage.records import Catalogue, EmbeddingRecord, ModelRecord, Track, TrackCreate
from storycue.storage.tenancy import TrackSource

log = get_logger(__name__)

Outcome = Literal["embedded", "already_present", "failed"]


@dataclass(frozen=True)
class IngestOutcome:
    """What ingesting one source did."""

    source_id: int
    uri: str
    outcome: Outcome
    track_id: int | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source_id": self.source_id,
            "uri": self.uri,
            "outcome": self.outcome,
            "track_id": self.track_id,
        }
        if self.error_code is not None:
            out["error"] = {"code": self.error_code, "message": self.error_message}
        return out


@dataclass(frozen=True)
class PreparedSource:
    """A source fetched, hashed and decoded, ready for the model: the part of ingesting a
    track that needs no model and can run ahead of it (:class:`SourcePrefetcher`).

    ``audio`` is ``None`` when the catalogue already holds the file (same content hash) with
    an embedding of the model: ``existing_track_id`` is then that track.
    """

    source: TrackSource
    content_hash: str
    audio: DecodedAudio | None
    existing_track_id: int | None = None


@dataclass(frozen=True)
class FetchedAudio:
    """One URI's file fetched, hashed and decoded: no database touched, so it can be done
    ahead of the writes that precede it (the Kafka consumer's next event)."""

    uri: str
    content_hash: str
    audio: DecodedAudio


def fetch_audio(settings: Settings, uri: str) -> FetchedAudio:
    """Fetch, hash and decode the file at ``uri``.

    Raises :class:`StorycueError` / :class:`OSError` for a file that cannot be ingested.
    """
    with fetch(uri, settings) as path:
        sha = sha256_file(path, settings.limits.max_audio_bytes)
        audio = decode_audio(path, settings)
    return FetchedAudio(uri, sha, audio)


def prepare_fetched(
    context: ProcessContext,
    model_record: ModelRecord,
    catalogue: Catalogue,
    source: TrackSource,
    fetched: FetchedAudio,
) -> PreparedSource:
    """A source from audio already fetched for its URI (or the track that already holds
    that content with an embedding of the model)."""
    if fetched.uri != source.uri:
        raise ValueError(f"audio fetched for {fetched.uri!r}, not for {source.uri!r}")
    existing = embedded_track(context.metadata, catalogue.id, model_record.id, fetched.content_hash)
    if existing is not None:
        return PreparedSource(source, fetched.content_hash, None, existing)
    return PreparedSource(source, fetched.content_hash, fetched.audio)


def prepare_source(
    context: ProcessContext,
    settings: Settings,
    model_record: ModelRecord,
    catalogue: Catalogue,
    source: TrackSource,
) -> PreparedSource:
    """Fetch, hash and decode one source, or find that it is already embedded (then its
    audio is not decoded).

    Raises :class:`StorycueError` / :class:`OSError` for a source that cannot be ingested.
    """
    with fetch(source.uri, settings) as path:
        sha, existing, audio = prepare_file(
            path, settings, context.metadata, catalogue.id, model_record.id
        )
    return PreparedSource(source, sha, audio, existing)


def store_prepared(
    context: ProcessContext,
    model: EmotionModel,
    model_record: ModelRecord,
    catalogue: Catalogue,
    prepared: PreparedSource,
) -> tuple[int, bool]:
    """Embed a prepared source and store its track, vector and provenance;
    ``(track_id, embedded_now)``.

    Raises :class:`InvalidInputError` when the model gives a non-finite vector.
    """
    if prepared.audio is None:
        if prepared.existing_track_id is None:
            raise InvalidInputError(f"{prepared.source.uri}: prepared without audio or track")
        return prepared.existing_track_id, False
    source, audio = prepared.source, prepared.audio
    track, _created = embed_and_store(
        context.metadata,
        context.vectors,
        model,
        model_record.id,
        catalogue,
        TrackCreate(
            catalogue_id=catalogue.id,
            uri=source.uri,
            content_hash=prepared.content_hash,
            duration_s=float(audio.duration_s),
            sample_rate=int(audio.original_sample_rate),
            channels=int(audio.channels),
            title=source.title,
            artist=source.artist,
            tags=source.tags,
        ),
        audio,
    )
    return track.id, True


class SourcePrefetcher:
    """Prepares (fetches, hashes, decodes) sources on one background thread, so that a
    sequential ingest decodes the next track while the model embeds the current one.

    The backbone's forward pass is most of a track's time on CPU (89 %,
    ``bench/results/ingest.json``) and runs on every core; decoding and resampling (8 %) run
    on one, so done in turn they leave a core idle for every track. One source ahead is
    enough to hide them and keeps at most one extra decoded clip in memory. Use as a context
    manager; exceptions of :func:`prepare_source` come back from the future's ``result()``.
    """

    def __init__(
        self,
        context: ProcessContext,
        settings: Settings,
        model_record: ModelRecord,
        catalogue: Catalogue,
    ) -> None:
        self._args = (context, settings, model_record, catalogue)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-prefetch")

    def submit(self, source: TrackSource) -> Future[PreparedSource]:
        context, settings, model_record, catalogue = self._args
        return self._pool.submit(prepare_source, context, settings, model_record, catalogue, source)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SourcePrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ingest_source(
    context: ProcessContext,
    settings: Settings,
    model: EmotionModel,
    model_record: ModelRecord,
    catalogue: Catalogue,
    source: TrackSource,
    prepared: Future[PreparedSource] | None = None,
) -> IngestOutcome:
    """Ingest one registered source and record the outcome on it.

    ``prepared`` is the source already being fetched and decoded by a
    :class:`SourcePrefetcher` (else it is prepared here). A source that cannot be ingested
    (refused URI, unreachable, not audio, too long...) is marked ``failed`` with its reason
    and recorded in ``ingest_failures``; it never raises for that. Database or vector-store
    failures do raise (the task is retried).
    """
    tenant = catalogue.tenant
    try:
        ready = (
            prepared.result()
            if prepared is not None
            else prepare_source(context, settings, model_record, catalogue, source)
        )
        if ready.source.id != source.id:
            raise ValueError(f"prepared source {ready.source.id} is not source {source.id}")
        track_id, embedded = store_prepared(context, model, model_record, catalogue, ready)
    except (StorycueError, OSError) as exc:
        code = exc.code if isinstance(exc, StorycueError) else "io_error"
        message = exc.message if isinstance(exc, StorycueError) else str(exc)
        log.warning("ingest_failed", source_id=source.id, code=code, reason=message)
        context.metadata.record_failure(catalogue.id, source.uri, code, message[:2000])
        context.tenancy.mark_source(
            tenant, catalogue.id, source.id, "failed", error_code=code, error_message=message
        )
        return IngestOutcome(source.id, source.uri, "failed", None, code, message)
    context.tenancy.mark_source(tenant, catalogue.id, source.id, "ingested", track_id=track_id)
    return IngestOutcome(
        source.id, source.uri, "embedded" if embedded else "already_present", track_id
    )


# ---- one track by URI: the Kafka consumer's and the audio worker's unit of work ----
@dataclass(frozen=True)
class IngestedTrack:
    """The stored track, whether this call embedded it, and where its vector lives."""

    track: Track
    embedded_now: bool
    embedding: EmbeddingRecord
    model_key: str


def ingest_uri(
    context: ProcessContext,
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
    cat, _ = context.tenancy.create_catalogue(tenant, catalogue)
    source, _ = context.tenancy.register_source(
        tenant, cat.id, uri, title=title, artist=artist, tags=tags
    )
    model = context.catalogue_model(tenant, cat.id)
    record = context.ensure_registered(model)
    try:
        if fetched is None:
            prepared = prepare_source(context, settings, record, cat, source)
        else:
            prepared = prepare_fetched(context, record, cat, source, fetched.result())
        track_id, embedded = store_prepared(context, model, record, cat, prepared)
    except (StorycueError, OSError) as exc:
        code = exc.code if isinstance(exc, StorycueError) else "io_error"
        message = exc.message if isinstance(exc, StorycueError) else str(exc)
        context.tenancy.mark_source(
            tenant, cat.id, source.id, "failed", error_code=code, error_message=message
        )
        raise
    context.tenancy.mark_source(tenant, cat.id, source.id, "ingested", track_id=track_id)
    track = context.metadata.get_track(track_id)
    emb = context.metadata.get_embedding(track_id, record.id)
    if track is None or emb is None:  # removed by a concurrent event between the writes
        raise StorycueError(f"track {track_id} of {uri!r} was removed while being ingested")
    return IngestedTrack(
        track=track, embedded_now=embedded, embedding=emb, model_key=model.identity.key
    )


def remove_uri(context: ProcessContext, *, tenant: str, catalogue: str, uri: str) -> int:
    """Delete the track registered under ``uri`` (its vectors first); how many tracks went.

    Idempotent: an unknown catalogue or URI removes nothing.
    """
    cats = [c for c in context.tenancy.catalogues(tenant) if c.name == catalogue]
    if not cats:
        return 0
    cat = cats[0]
    removed = 0
    for src in context.tenancy.sources_at(tenant, cat.id, uri):
        if src.track_id is not None and context.tenancy.count_sources_of_track(src.track_id) == 1:
            _delete_vectors(context, src.track_id)  # first: a crash re-runs the event
        _src, gone = context.tenancy.delete_source(tenant, cat.id, src.id)
        removed += int(bool(gone))
    log.info("track_removed", tenant=tenant, catalogue=catalogue, uri=uri, removed=removed)
    return removed


def previous_track_id(
    context: ProcessContext, *, tenant: str, catalogue: str, uri: str
) -> int | None:
    """The track the source ``uri`` of a catalogue points at now, if any."""
    cats = [c for c in context.tenancy.catalogues(tenant) if c.name == catalogue]
    if not cats:
        return None
    found = context.tenancy.sources_at(tenant, cats[0].id, uri)
    return found[0].track_id if found else None


def drop_track_if_unreferenced(context: ProcessContext, track_id: int) -> bool:
    """Delete a track no source points at any more (vectors, then rows)."""
    if context.tenancy.count_sources_of_track(track_id) > 0:
        return False
    _delete_vectors(context, track_id)
    return context.metadata.delete_track(track_id)


def _delete_vectors(context: ProcessContext, track_id: int) -> None:
    for emb in context.metadata.list_embeddings(track_id=track_id):
        rec = context.metadata.get_model_by_id(emb.model_id)
        if rec is not None:
            context.vectors.delete(rec.identity, [emb.point_id])
