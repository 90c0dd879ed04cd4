"""Ingest one registered track (local path, s3:// or http(s)://) into a tenant's catalogue.

Idempotent by content: the file's sha256 identifies the track within its catalogue and its
vector's point id is derived from the track id, so running it again (after a crash, a
redelivered task or a Kafka replay) neither duplicates a track nor a vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from storycue.audio.decode import load_audio
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


def embed_file_into_catalogue(
    runtime: JobRuntime,
    settings: Settings,
    model: EmotionModel,
    model_record: ModelRecord,
    catalogue: Catalogue,
    source: TrackSource,
) -> tuple[int, bool]:
    """Fetch, decode, embed and store one source; ``(track_id, embedded_now)``.

    Raises :class:`StorycueError` / :class:`OSError` for a source that cannot be ingested.
    """
    meta = runtime.metadata
    with fetch(source.uri, settings) as path:
        sha = sha256_file(path, settings.limits.max_audio_bytes)
        existing = meta.find_track_by_hash(catalogue.id, sha)
        if existing is not None and meta.get_embedding(existing.id, model_record.id) is not None:
            return existing.id, False
        with time_stage("decode"):
            audio = load_audio(path, settings=settings)
    vector, _ = model.embed_waveform(audio.waveform)
    if not np.isfinite(vector).all():
        raise InvalidInputError(f"{source.uri}: the model produced a non-finite vector")
    track, _created = meta.add_track(
        TrackCreate(
            catalogue_id=catalogue.id,
            uri=source.uri,
            content_hash=sha,
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
) -> IngestOutcome:
    """Ingest one registered source and record the outcome on it.

    A source that cannot be ingested (refused URI, unreachable, not audio, too long...)
    is marked ``failed`` with its reason and recorded in ``ingest_failures``; it never
    raises for that. Database or vector-store failures do raise (the task is retried).
    """
    tenant = catalogue.tenant
    try:
        track_id, embedded = embed_file_into_catalogue(
            runtime, settings, model, model_record, catalogue, source
        )
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
