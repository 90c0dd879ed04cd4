"""The 4Q music emotion set (Panda, Malheiro & Paiva 2018) and galleries in its format.

``4q/metadata.csv`` has one row per clip (``Song, Artist, Title, Quadrant, ...,
MoodsStrSplit, GenresStr``); the audio lies at ``4q/<Quadrant>/<Song>.mp3``. Quadrants
follow Russell's circumplex: Q1 positive valence / high arousal, Q2 negative / high,
Q3 negative / low, Q4 positive / low. Mood tags are AllMusic's (``"Fierce; Harsh"``).

:func:`load_gallery` reads any folder of audio with a CSV in the same format (only
``Song``, ``Quadrant`` and ``MoodsStrSplit`` required), finding each clip by its ``Song``
stem anywhere under the folder.

The data may not be redistributed: it is read from ``STORYCUE_DATA_DIR`` and never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from storycue.config import Settings
from storycue.data._common import (
    collapse_ws,
    read_rows,
    require_file,
    resolve_dataset_dir,
    split_list,
)
from storycue.errors import DatasetFormatError, DatasetNotFoundError
from storycue.log import get_logger

log = get_logger(__name__)

#: The four quadrant labels, in order.
QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
#: Audio file extensions :func:`load_gallery` looks for, in order of preference.
AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")

_REQUIRED = ("Song", "Quadrant", "MoodsStrSplit")


@dataclass(frozen=True, slots=True)
class FourQRecord:
    """One music clip with its quadrant and AllMusic mood tags."""

    song_id: str
    artist: str
    title: str
    quadrant: str
    moods: tuple[str, ...]
    genres: tuple[str, ...]
    audio_path: Path


@dataclass(frozen=True, slots=True)
class GalleryLoad:
    """Result of :func:`load_gallery`: the usable records and the song ids without audio."""

    records: list[FourQRecord]
    missing_audio: list[str] = field(default_factory=list)


def _parse_rows(csv_path: Path, dataset: str) -> list[tuple[int, dict[str, str]]]:
    rows = list(read_rows(csv_path, _REQUIRED, dataset=dataset))
    seen: dict[str, int] = {}
    for line, row in rows:
        song = row["Song"].strip()
        if not song:
            raise DatasetFormatError(f"{csv_path}:{line}: empty Song id")
        quadrant = row["Quadrant"].strip().upper()
        if quadrant not in QUADRANTS:
            raise DatasetFormatError(
                f"{csv_path}:{line}: Quadrant {row['Quadrant']!r} is not one of {QUADRANTS}"
            )
        if song in seen:
            raise DatasetFormatError(
                f"{csv_path}:{line}: Song {song!r} repeats the row at line {seen[song]}"
            )
        seen[song] = line
    return rows


def _record(row: dict[str, str], audio_path: Path) -> FourQRecord:
    return FourQRecord(
        song_id=row["Song"].strip(),
        artist=collapse_ws(row.get("Artist", "")),
        title=collapse_ws(row.get("Title", "")),
        quadrant=row["Quadrant"].strip().upper(),
        moods=split_list(row["MoodsStrSplit"]),
        genres=split_list(row.get("GenresStr", "")),
        audio_path=audio_path,
    )


def load_fourq(
    path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    missing_audio: Literal["error", "skip", "keep"] = "error",
) -> list[FourQRecord]:
    """Load the 4Q clips from ``path`` (default: ``<data_dir>/4q``) in the CSV's order.

    ``missing_audio`` says what to do with a row whose ``<Quadrant>/<Song>.mp3`` is absent:
    raise :class:`DatasetNotFoundError` (default), drop it with a warning, or keep it.
    """
    folder = resolve_dataset_dir("4q", path, settings)
    csv_path = require_file(folder / "metadata.csv", "4q")
    records: list[FourQRecord] = []
    missing: list[str] = []
    for _, row in _parse_rows(csv_path, "4q"):
        rec = _record(row, folder / row["Quadrant"].strip().upper() / f"{row['Song'].strip()}.mp3")
        if not rec.audio_path.is_file():
            missing.append(rec.song_id)
            if missing_audio != "keep":
                continue
        records.append(rec)
    if missing:
        if missing_audio == "error":
            raise DatasetNotFoundError(
                f"4q: {len(missing)} clip(s) listed in {csv_path} have no audio file "
                f"(first: {missing[:5]}); pass missing_audio='skip' to drop them",
                detail={"missing": missing},
            )
        log.warning("fourq_missing_audio", count=len(missing), first=missing[:5])
    log.debug("fourq_loaded", path=str(folder), records=len(records))
    return records


def _index_audio(audio_dir: Path) -> dict[str, Path]:
    """Map file stem -> audio path for every audio file under ``audio_dir``."""
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    index: dict[str, Path] = {}
    for p in sorted(audio_dir.rglob("*")):
        ext = p.suffix.lower()
        if ext not in rank or not p.is_file():
            continue
        current = index.get(p.stem)
        if current is None:
            index[p.stem] = p
            continue
        log.warning("gallery_duplicate_stem", stem=p.stem, kept=str(current), other=str(p))
        if rank[ext] < rank[current.suffix.lower()]:
            index[p.stem] = p
    return index


def load_gallery(audio_dir: str | Path, metadata_csv: str | Path) -> GalleryLoad:
    """Load a music gallery: any folder of audio plus a CSV in the 4Q format.

    The CSV needs ``Song``, ``Quadrant`` and ``MoodsStrSplit``; ``Artist``, ``Title`` and
    ``GenresStr`` are optional. Each row's audio is the file whose stem is the ``Song``
    value, anywhere under ``audio_dir``, with one of :data:`AUDIO_EXTENSIONS` (the first
    extension wins when several exist). Rows without audio are logged and returned in
    :attr:`GalleryLoad.missing_audio`; they are not fatal.
    """
    folder = Path(audio_dir)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"gallery audio folder {folder} does not exist")
    csv_path = Path(metadata_csv)
    index = _index_audio(folder)
    records: list[FourQRecord] = []
    missing: list[str] = []
    for _, row in _parse_rows(csv_path, "gallery"):
        song = row["Song"].strip()
        audio = index.get(song)
        if audio is None:
            missing.append(song)
            continue
        records.append(_record(row, audio))
    if missing:
        log.warning("gallery_missing_audio", count=len(missing), first=missing[:5])
    log.info("gallery_loaded", path=str(folder), records=len(records), missing=len(missing))
    return GalleryLoad(records=records, missing_audio=missing)
