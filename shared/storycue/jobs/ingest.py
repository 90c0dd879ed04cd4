"""Ingest one registered track (local path, s3:// or http(s)://) into a tenant's catalogue.

Idempotent by content: the file's sha256 identifies the track within its catalogue and its
vector's point id is derived from the track id, so running it again (after a crash, a
redelivered task or a Kafka replay) neither duplicates a track nor a vector.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from storycue.audio.decode import DecodedAudio, load_audio
from storycue.config import Settings
from storycue.errors import InvalidInputError, StorycueError
from storycue.jobs.runtime import JobRuntime
from storycue.log import get_logger
from storycue.metrics import count_embeddings, time_stage
from storycue.models.emotion import EmotionModel
from storycue.pipeline.engine import sha256_file
from storycue.sources import fetch
from storycue.storage.records import Catalogue, ModelRecord, TrackCreate
from storycue.storage.tenancy import TrackSource
from storycue.storage.vectors import VectorPoint, point_id_for

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
        audio = _decode(path, settings)
    return FetchedAudio(uri, sha, audio)


def prepare_fetched(
    runtime: JobRuntime,
    model_record: ModelRecord,
    catalogue: Catalogue,
    source: TrackSource,
    fetched: FetchedAudio,
) -> PreparedSource:
    """A source from audio already fetched for its URI (or the track that already holds
    that content with an embedding of the model)."""
    if fetched.uri != source.uri:
        raise ValueError(f"audio fetched for {fetched.uri!r}, not for {source.uri!r}")
    existing = _embedded_track(runtime, model_record, catalogue, fetched.content_hash)
    if existing is not None:
        return PreparedSource(source, fetched.content_hash, None, existing)
    return PreparedSource(source, fetched.content_hash, fetched.audio)


def prepare_source(
    runtime: JobRuntime,
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
        sha = sha256_file(path, settings.limits.max_audio_bytes)
        existing = _embedded_track(runtime, model_record, catalogue, sha)
        if existing is not None:
            return PreparedSource(source, sha, None, existing)
        audio = _decode(path, settings)
    return PreparedSource(source, sha, audio)


def _embedded_track(
    runtime: JobRuntime, model_record: ModelRecord, catalogue: Catalogue, content_hash: str
) -> int | None:
    """The catalogue's track holding this content with an embedding of the model, if any."""
    meta = runtime.metadata
    existing = meta.find_track_by_hash(catalogue.id, content_hash)
    if existing is not None and meta.get_embedding(existing.id, model_record.id) is not None:
        return existing.id
    return None


def _decode(path: Path, settings: Settings) -> DecodedAudio:
    with time_stage("decode"):
        return load_audio(path, settings=settings)


def store_prepared(
    runtime: JobRuntime,
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
    vector, _ = model.embed_waveform(audio.waveform)
    if not np.isfinite(vector).all():
        raise InvalidInputError(f"{source.uri}: the model produced a non-finite vector")
    track, _created = runtime.metadata.add_track(
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
        )
    )
    reading = model.read(vector)
    payload: dict[str, Any] = {
        "track_id": track.id,
        "catalogue_id": catalogue.id,
        "tenant": catalogue.tenant,
        "duration_s": track.duration_s,
        "tags": list(track.tags),
        "uri": track.uri,
        "title": track.title,
        "artist": track.artist,
        "model": model.identity.key,
    }
    if reading.valence is not None:
        payload["valence"] = reading.valence
        payload["arousal"] = reading.arousal
    pid = point_id_for(track.id)
    bb = model.audio_backbone()
    with time_stage("store"):
        runtime.vectors.upsert(
            model.identity, [VectorPoint(id=pid, vector=vector, payload=payload)]
        )
        _record(runtime, track.id, model_record.id, pid, model, bb, reading)
    count_embeddings(model.identity.key)
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
        runtime: JobRuntime,
        settings: Settings,
        model_record: ModelRecord,
        catalogue: Catalogue,
    ) -> None:
        self._args = (runtime, settings, model_record, catalogue)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-prefetch")

    def submit(self, source: TrackSource) -> Future[PreparedSource]:
        runtime, settings, model_record, catalogue = self._args
        return self._pool.submit(prepare_source, runtime, settings, model_record, catalogue, source)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SourcePrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record(
    runtime: JobRuntime,
    track_id: int,
    model_id: int,
    pid: str,
    model: EmotionModel,
    bb: Any,
    reading: Any,
) -> None:
    runtime.metadata.record_embedding(
        track_id,
        model_id,
        point_id=pid,
        collection=model.identity.collection_name,
        backbone_name=bb.name,
        backbone_version=bb.version,
        text_encoder=model.info.text_encoder,
        audio_encoder=f"{bb.name}@{bb.version}",
        valence=reading.valence,
        arousal=reading.arousal,
    )


def ingest_source(
    runtime: JobRuntime,
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
            else prepare_source(runtime, settings, model_record, catalogue, source)
        )
        if ready.source.id != source.id:
            raise ValueError(f"prepared source {ready.source.id} is not source {source.id}")
        track_id, embedded = store_prepared(runtime, model, model_record, catalogue, ready)
    except (StorycueError, OSError) as exc:
        code = exc.code if isinstance(exc, StorycueError) else "io_error"
        message = exc.message if isinstance(exc, StorycueError) else str(exc)
        log.warning("ingest_failed", source_id=source.id, code=code, reason=message)
        runtime.metadata.record_failure(catalogue.id, source.uri, code, message[:2000])
        runtime.tenancy.mark_source(
            tenant, catalogue.id, source.id, "failed", error_code=code, error_message=message
        )
        return IngestOutcome(source.id, source.uri, "failed", None, code, message)
    runtime.tenancy.mark_source(tenant, catalogue.id, source.id, "ingested", track_id=track_id)
    return IngestOutcome(
        source.id, source.uri, "embedded" if embedded else "already_present", track_id
    )
