"""The storycue engine: ingest music into a catalogue and match stories against it.

One object composes the configured stores and the active emotion model. The CLI uses it in
one process on embedded defaults; the services of the distributed deployment wrap the same
calls behind queues.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storycue.audio.decode import DecodedAudio
from storycue.config import Settings, get_settings
from storycue.errors import InvalidInputError, NotFoundError, StorycueError, TextDecodeError
from storycue.log import get_logger
from storycue.models.emotion import EmotionModel, load_configured_model
from storycue.pipeline.cuesheet import CueSheet
from storycue.pipeline.ingest import embed_and_store, prepare_file, register_model
from storycue.pipeline.match import check_story, check_top_k, match_texts
from storycue.storage.factory import open_metadata_store, open_vector_store
from storycue.storage.metadata import MetadataStore
from storycue.storage.records import Catalogue, ModelRecord, TrackCreate
from storycue.storage.vectors import SearchFilter, VectorStore

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


def spread(files: list[Path], limit: int) -> list[Path]:
    """Up to ``limit`` files taken evenly across sub-folders (deterministic)."""
    by_dir: dict[Path, list[Path]] = {}
    for f in files:
        by_dir.setdefault(f.parent, []).append(f)
    groups = list(by_dir.values())
    picked: list[Path] = []
    i = 0
    while len(picked) < min(limit, len(files)):
        for g in groups:
            if i < len(g) and len(picked) < limit:
                picked.append(g[i])
        i += 1
    return picked


def read_catalogue_metadata(csv_path: Path) -> dict[str, TrackMeta]:
    """Titles, artists and tags per file stem from a 4Q-style metadata CSV."""
    meta: dict[str, TrackMeta] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            song = (row.get("Song") or "").strip()
            if not song:
                continue
            tags = [t.strip().lower() for t in (row.get("MoodsStrSplit") or "").split(";")]
            meta[song] = TrackMeta(
                title=(row.get("Title") or "").strip() or None,
                artist=(row.get("Artist") or "").strip() or None,
                tags=tuple(t for t in tags if t),
            )
    return meta


def read_story_file(path: Path, max_bytes: int) -> str:
    """Read a story file as UTF-8 (a BOM is accepted); clear errors otherwise."""
    if not path.is_file():
        raise InvalidInputError(f"story file {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInputError(f"story file {path} is {size} bytes, over the {max_bytes} limit")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TextDecodeError(
            f"{path} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from exc
    if "\x00" in text:
        raise TextDecodeError(f"{path} looks binary (it contains NUL bytes), not a text story")
    return text


@dataclass
class PreparedFile:
    """One audio file hashed and decoded for the engine (what the ingest benchmark times
    stage by stage)."""

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
        self._record: ModelRecord | None = None
        self.metadata = metadata or open_metadata_store(self.settings)
        self.vectors = vectors or open_vector_store(self.settings)

    # ---- model ------------------------------------------------------------------------------
    @property
    def model(self) -> EmotionModel:
        if self._model is None:
            s = self.settings
            self._model = load_configured_model(s, s.emotion_model)
        return self._model

    def _model_record_id(self) -> int:
        """The model's database id, registering it (and its collection) on first use."""
        if self._record is None:
            self._record = register_model(self.metadata, self.vectors, self.model)
        return self._record.id

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

        def prepare(path: Path) -> PreparedFile:
            sha, _, audio = prepare_file(path, self.settings, self.metadata, cat.id, model_id)
            return PreparedFile(path, sha, audio)

        workers = max(1, min(4, (os.cpu_count() or 2)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            window = 2 * workers
            futures: dict[int, Future[PreparedFile]] = {
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
                        added = self._store(cat, model_id, prepared, (meta or {}).get(path.stem))
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
        self, catalogue: Catalogue, model_id: int, prepared: PreparedFile, meta: TrackMeta | None
    ) -> bool:
        """Embed and store one decoded file; whether its track row is new."""
        assert prepared.audio is not None
        audio = prepared.audio
        _track, created = embed_and_store(
            self.metadata,
            self.vectors,
            self.model,
            model_id,
            catalogue,
            TrackCreate(
                catalogue_id=catalogue.id,
                uri=str(prepared.path.resolve()),
                content_hash=prepared.sha,
                duration_s=float(audio.duration_s),
                sample_rate=int(audio.original_sample_rate),
                channels=int(audio.channels),
                title=meta.title if meta else None,
                artist=meta.artist if meta else None,
                tags=meta.tags if meta else (),
            ),
            audio,
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
        distinct: bool = False,
    ) -> CueSheet:
        """Segment ``text`` into scenes and return the top-k tracks for each (with
        ``distinct``, no track twice in the sheet)."""
        limits = self.settings.limits
        check_story(text, limits.max_story_chars)
        check_top_k(top_k, limits.max_top_k)
        model = self.model
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
        (sheet,) = match_texts(
            model,
            self.vectors,
            [text],
            top_k=top_k,
            flt=None if flt.is_empty else flt,
            catalogue=catalogue,
            max_chars=limits.max_story_chars,
            distinct=distinct,
        )
        if isinstance(sheet, StorycueError):
            raise sheet
        return sheet

    def close(self) -> None:
        self.metadata.close()
