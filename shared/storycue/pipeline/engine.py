"""The storycue engine: ingest music into a catalogue and match stories against it.

One object composes the configured stores and the active emotion model. The CLI uses it in
one process on embedded defaults; the services of the distributed deployment wrap the same
calls behind queues.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storycue.audio.decode import DecodedAudio, load_audio
from storycue.config import Settings, get_settings
from storycue.errors import InvalidInputError, NotFoundError, StorycueError
from storycue.log import get_logger
from storycue.metrics import count_embeddings, time_stage
from storycue.models.checkpoints import model_search_dirs
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.pipeline.cuesheet import CueEmotion, CueSegment, CueSheet, CueTrack
from storycue.pipeline.segment import segment_story
from storycue.storage.factory import open_metadata_store, open_vector_store
from storycue.storage.metadata import MetadataStore
from storycue.storage.records import TrackCreate
from storycue.storage.vectors import SearchFilter, VectorPoint, VectorStore, point_id_for

log = get_logger(__name__)

AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au"})
DEFAULT_CATALOGUE = "default"
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TrackMeta:
    """Optional descriptive metadata for a file being ingested."""

    title: str | None = None
    artist: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class IngestReport:
    catalogue: str
    scanned: int = 0
    added: int = 0
    embedded: int = 0
    already_present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalogue": self.catalogue,
            "scanned": self.scanned,
            "added": self.added,
            "embedded": self.embedded,
            "already_present": self.already_present,
            "failed": [{"uri": u, "reason": r} for u, r in self.failed],
        }


def find_audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted; hidden folders skipped)."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InvalidInputError(f"{root} is neither a file nor a folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                found.append(p)
    return found


def sha256_file(path: Path, max_bytes: int) -> str:
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInputError(f"{path.name} is {size} bytes, over the {max_bytes}-byte limit")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Prepared:
    path: Path
    sha: str
    audio: DecodedAudio | None  # None when the track and its vector are already stored


class Engine:
    """Ingest and match on the configured stores with one emotion model."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        model: EmotionModel | None = None,
        metadata: MetadataStore | None = None,
        vectors: VectorStore | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._model = model
        self.metadata = metadata or open_metadata_store(self.settings)
        self.vectors = vectors or open_vector_store(self.settings)

    # ---- model ------------------------------------------------------------------------------
    @property
    def model(self) -> EmotionModel:
        if self._model is None:
            s = self.settings
            self._model = load_emotion_model(
                s.emotion_model,
                device=s.torch_device(),
                dirs=model_search_dirs(s),
                text_batch_size=s.batch.text,
                text_max_tokens=s.text_max_tokens,
                musicnn_weights_dir=s.musicnn_weights_dir,
            )
        return self._model

    def _model_record_id(self) -> int:
        m = self.model
        rec = self.metadata.register_model(
            m.identity,
            family=m.info.family,
            distance=m.distance,
            checkpoint_sha256=m.checkpoint_sha256 or None,
            metadata={
                "text_encoder": m.info.text_encoder,
                "audio_backbone": m.info.audio_backbone,
                "audio_backbone_version": m.info.audio_backbone_version,
            },
        )
        self.vectors.ensure_collection(m.identity, m.distance)
        return rec.id

    # ---- ingest -----------------------------------------------------------------------------
    def ingest(
        self,
        files: Sequence[Path],
        *,
        catalogue: str = DEFAULT_CATALOGUE,
        meta: dict[str, TrackMeta] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Embed and store ``files`` in ``catalogue``; idempotent by content hash.

        A file that cannot be read or decoded is recorded as a failure with its reason and
        skipped; it never stops the run. ``meta`` maps a file stem to its metadata.
        """
        cat = self.metadata.get_or_create_catalogue(catalogue)
        model_id = self._model_record_id()
        identity = self.model.identity
        report = IngestReport(catalogue=catalogue, scanned=len(files))
        limits = self.settings.limits

        def prepare(path: Path) -> _Prepared:
            sha = sha256_file(path, limits.max_audio_bytes)
            existing = self.metadata.find_track_by_hash(cat.id, sha)
            if existing is not None and self.metadata.get_embedding(existing.id, model_id):
                return _Prepared(path, sha, None)
            with time_stage("decode"):
                audio = load_audio(path, settings=self.settings)
            return _Prepared(path, sha, audio)

        workers = max(1, min(4, (os.cpu_count() or 2)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            window = 2 * workers
            futures: dict[int, Future[_Prepared]] = {
                i: pool.submit(prepare, p) for i, p in enumerate(files[:window])
            }
            for i, path in enumerate(files):
                if i + window < len(files):
                    futures[i + window] = pool.submit(prepare, files[i + window])
                uri = str(path.resolve())
                try:
                    prepared = futures.pop(i).result()
                    if prepared.audio is None:
                        report.already_present += 1
                    else:
                        added = self._store(cat.id, model_id, prepared, (meta or {}).get(path.stem))
                        report.embedded += 1
                        report.added += int(added)
                        report.already_present += int(not added)
                except (StorycueError, OSError) as exc:
                    reason = exc.message if isinstance(exc, StorycueError) else str(exc)
                    code = exc.code if isinstance(exc, StorycueError) else "io_error"
                    report.failed.append((uri, reason))
                    log.warning("ingest_failed", uri=uri, code=code, reason=reason)
                    self.metadata.record_failure(cat.id, uri, code, reason[:2000])
                if progress is not None:
                    progress(i + 1, len(files), path.name)
        log.info(
            "ingest_done", model=identity.key, **report.to_dict() | {"failed": len(report.failed)}
        )
        return report

    def _store(
        self, catalogue_id: int, model_id: int, prepared: _Prepared, meta: TrackMeta | None
    ) -> bool:
        assert prepared.audio is not None
        model = self.model
        vector, _ = model.embed_waveform(prepared.audio.waveform)
        if not np.isfinite(vector).all():
            raise InvalidInputError(f"{prepared.path.name}: the model produced a non-finite vector")
        with time_stage("store"):
            created = self._write(catalogue_id, model_id, prepared, meta, vector)
        count_embeddings(model.identity.key)
        return created

    def _write(
        self,
        catalogue_id: int,
        model_id: int,
        prepared: _Prepared,
        meta: TrackMeta | None,
        vector: np.ndarray,
    ) -> bool:
        """Write the track row, its vector and its embedding record (the ``store`` stage)."""
        assert prepared.audio is not None
        model = self.model
        audio = prepared.audio
        track, created = self.metadata.add_track(
            TrackCreate(
                catalogue_id=catalogue_id,
                uri=str(prepared.path.resolve()),
                content_hash=prepared.sha,
                duration_s=float(audio.duration_s),
                sample_rate=int(audio.original_sample_rate),
                channels=int(audio.channels),
                title=meta.title if meta else None,
                artist=meta.artist if meta else None,
                tags=meta.tags if meta else (),
            )
        )
        reading = model.read(vector)
        payload: dict[str, Any] = {
            "track_id": track.id,
            "catalogue_id": catalogue_id,
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
        self.vectors.upsert(model.identity, [VectorPoint(id=pid, vector=vector, payload=payload)])
        bb = model.audio_backbone()
        self.metadata.record_embedding(
            track.id,
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
        return created

    # ---- match ------------------------------------------------------------------------------
    def match(
        self,
        text: str,
        *,
        top_k: int = 5,
        catalogue: str | None = None,
        min_duration_s: float | None = None,
        max_duration_s: float | None = None,
        tags_any: Iterable[str] | None = None,
    ) -> CueSheet:
        """Segment ``text`` into scenes and return the top-k tracks for each."""
        limits = self.settings.limits
        if not isinstance(text, str):
            raise InvalidInputError("story text must be a string")
        if len(text) > limits.max_story_chars:
            raise InvalidInputError(
                f"story is {len(text)} characters, over the {limits.max_story_chars} limit"
            )
        if not 1 <= top_k <= limits.max_top_k:
            raise InvalidInputError(f"top_k must be between 1 and {limits.max_top_k}")
        model = self.model
        encoder = model.text_encoder
        with time_stage("segment"):
            segments = segment_story(text, encoder.count_tokens, encoder.max_tokens)
        catalogue_ids: list[int] | None = None
        if catalogue is not None:
            cat = self.metadata.get_catalogue(catalogue)
            if cat is None:
                raise NotFoundError(f"catalogue {catalogue!r} does not exist")
            catalogue_ids = [cat.id]
        tags = list(tags_any) if tags_any is not None else None
        flt = SearchFilter(
            catalogue_ids=catalogue_ids,
            min_duration_s=min_duration_s,
            max_duration_s=max_duration_s,
            tags_any=tags or None,
        )
        self._model_record_id()
        if self.vectors.count(model.identity) == 0:
            raise NotFoundError(
                f"no tracks are embedded with {model.identity.key}: run `storycue ingest` first"
            )
        with time_stage("text_encoder"):
            vectors = model.embed_text([s.text for s in segments])
        out: list[CueSegment] = []
        for seg, vec in zip(segments, vectors, strict=True):
            with time_stage("search"):
                hits = self.vectors.search(
                    model.identity, vec, top_k, None if flt.is_empty else flt
                )
            tracks = [
                CueTrack(
                    rank=r + 1,
                    track_id=int(h.payload["track_id"]),
                    uri=str(h.payload.get("uri", "")),
                    title=h.payload.get("title"),
                    artist=h.payload.get("artist"),
                    duration_s=h.payload.get("duration_s"),
                    score=h.similarity,
                    distance=h.score if h.distance == "euclid" else None,
                    valence=h.payload.get("valence"),
                    arousal=h.payload.get("arousal"),
                    tags=list(h.payload.get("tags") or []),
                )
                for r, h in enumerate(hits)
            ]
            reading = model.read(vec)
            out.append(
                CueSegment(
                    index=seg.index,
                    start=seg.start,
                    end=seg.end,
                    tokens=seg.tokens,
                    text=seg.text,
                    emotion=CueEmotion(**reading.to_dict()),
                    tracks=tracks,
                )
            )
        info = model.info
        return CueSheet(
            model={
                **info.identity.model_dump(),
                "family": info.family,
                "distance": info.distance,
            },
            catalogue=catalogue,
            story_chars=len(text),
            segments=out,
        )

    def close(self) -> None:
        self.metadata.close()
