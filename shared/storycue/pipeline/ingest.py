"""Ingesting one track: the steps every ingest path shares.

The CLI engine (:class:`storycue.pipeline.engine.Engine`), the gateway's ingest jobs and
the audio worker's tasks (:mod:`storycue.jobs.ingest`) and the Kafka consumer all go
through these functions: a model is registered once with its collection, a file is hashed
and found already embedded or decoded, and a decoded file is embedded and stored as one
track row, one vector (payload from :func:`storycue.storage.vectors.track_payload`) and
one provenance record. Idempotent by content: the catalogue holds a file's content once
(sha256) and its vector's point id derives from the track id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storycue.audio.decode import DecodedAudio, load_audio
from storycue.config import Settings
from storycue.errors import InvalidInputError
from storycue.identity import file_sha256
from storycue.metrics import count_embeddings, time_stage
from storycue.models.emotion import EmotionModel
from storycue.storage.metadata import MetadataStore
from storycue.storage.records import Catalogue, ModelRecord, Track, TrackCreate
from storycue.storage.vectors import VectorPoint, VectorStore, point_id_for, track_payload


def register_model(
    metadata: MetadataStore, vectors: VectorStore, model: EmotionModel
) -> ModelRecord:
    """Record ``model`` (identity, family, distance, checkpoint digest, encoders) and make
    sure its vector collection exists; idempotent. Callers do it once per process."""
    record = metadata.register_model(
        model.identity,
        family=model.info.family,
        distance=model.distance,
        checkpoint_sha256=model.checkpoint_sha256 or None,
        metadata={
            "text_encoder": model.info.text_encoder,
            "audio_backbone": model.info.audio_backbone,
            "audio_backbone_version": model.info.audio_backbone_version,
        },
    )
    vectors.ensure_collection(model.identity, model.distance)
    return record


def sha256_file(path: Path, max_bytes: int) -> str:
    """The file's sha256; :class:`InvalidInputError` when it is over ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInputError(f"{path.name} is {size} bytes, over the {max_bytes}-byte limit")
    return file_sha256(path)


def embedded_track(
    metadata: MetadataStore, catalogue_id: int, model_id: int, content_hash: str
) -> int | None:
    """The catalogue's track holding this content with an embedding of the model, if any."""
    existing = metadata.find_track_by_hash(catalogue_id, content_hash)
    if existing is not None and metadata.get_embedding(existing.id, model_id) is not None:
        return existing.id
    return None


def decode_audio(path: Path, settings: Settings) -> DecodedAudio:
    """Decode (and resample) one file for the model, timed as the ``decode`` stage."""
    with time_stage("decode"):
        return load_audio(path, settings=settings)


def prepare_file(
    path: Path, settings: Settings, metadata: MetadataStore, catalogue_id: int, model_id: int
) -> tuple[str, int | None, DecodedAudio | None]:
    """``(sha256, existing track id, audio)`` of a local file: hashed, then decoded unless
    the catalogue already holds its content with an embedding of the model (then the
    existing track's id and no audio). Needs no model, so it can run ahead of one."""
    sha = sha256_file(path, settings.limits.max_audio_bytes)
    existing = embedded_track(metadata, catalogue_id, model_id, sha)
    return sha, existing, None if existing is not None else decode_audio(path, settings)


def embed_and_store(
    metadata: MetadataStore,
    vectors: VectorStore,
    model: EmotionModel,
    model_id: int,
    catalogue: Catalogue,
    track: TrackCreate,
    audio: DecodedAudio,
) -> tuple[Track, bool]:
    """Embed decoded ``audio`` and store its track row, vector and provenance;
    ``(track, created)`` (``created`` is false when the catalogue held the content).

    Raises :class:`InvalidInputError` when the model gives a non-finite vector.
    """
    vector, _ = model.embed_waveform(audio.waveform)
    if not np.isfinite(vector).all():
        raise InvalidInputError(f"{track.uri}: the model produced a non-finite vector")
    reading = model.read(vector)
    backbone = model.audio_backbone()
    with time_stage("store"):
        row, created = metadata.add_track(track)
        extra: dict[str, object] = {
            "tenant": catalogue.tenant,
            "uri": row.uri,
            "title": row.title,
            "artist": row.artist,
            "model": model.identity.key,
        }
        if reading.valence is not None:
            extra.update(valence=reading.valence, arousal=reading.arousal)
        pid = point_id_for(row.id)
        vectors.upsert(
            model.identity,
            [VectorPoint(id=pid, vector=vector, payload=track_payload(row, **extra))],
        )
        metadata.record_embedding(
            row.id,
            model_id,
            point_id=pid,
            collection=model.identity.collection_name,
            backbone_name=backbone.name,
            backbone_version=backbone.version,
            text_encoder=model.info.text_encoder,
            audio_encoder=f"{backbone.name}@{backbone.version}",
            valence=reading.valence,
            arousal=reading.arousal,
        )
    count_embeddings(model.identity.key)
    return row, created
