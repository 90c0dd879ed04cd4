"""The AudioSet mood subset used in the paper (10 s YouTube clips), from a manifest.

The clips are not distributed; a user who has them describes them with a manifest CSV
(default name ``manifest.csv``) in the folder that holds them::

    path,label
    clips/abc123_30.wav,happy
    clips/def456_10.flac,scary

* ``path``: the audio file, relative to the manifest's folder (absolute paths also work);
* ``label``: one of :data:`AUDIOSET_MOOD_LABELS` (happy, funny, sad, tender, exciting,
  angry, scary), case-insensitive.

Rows whose file is missing are logged and returned in :attr:`AudiosetMoodSet.missing`;
an unknown label or a missing column is a :class:`DatasetFormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storycue.data._common import read_rows
from storycue.errors import DatasetFormatError, DatasetNotFoundError
from storycue.log import get_logger

log = get_logger(__name__)

AUDIOSET_MOOD_LABELS: tuple[str, ...] = (
    "happy",
    "funny",
    "sad",
    "tender",
    "exciting",
    "angry",
    "scary",
)
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True, slots=True)
class AudiosetMoodRecord:
    """One clip and its mood label."""

    audio_path: Path
    label: str


@dataclass(frozen=True, slots=True)
class AudiosetMoodSet:
    """The clips found and the manifest paths that had no file."""

    records: list[AudiosetMoodRecord]
    missing: list[str] = field(default_factory=list)


def load_audioset_mood(path: str | Path) -> AudiosetMoodSet:
    """Read a manifest: ``path`` is the manifest CSV or the folder holding ``manifest.csv``."""
    manifest = Path(path)
    if manifest.is_dir():
        manifest = manifest / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetNotFoundError(f"AudioSet mood manifest {manifest} does not exist")
    base = manifest.parent
    records: list[AudiosetMoodRecord] = []
    missing: list[str] = []
    for line, row in read_rows(manifest, ("path", "label"), dataset="audioset_mood"):
        label = row["label"].strip().lower()
        if label not in AUDIOSET_MOOD_LABELS:
            raise DatasetFormatError(
                f"{manifest}:{line}: label {row['label']!r} is not one of {AUDIOSET_MOOD_LABELS}"
            )
        rel = row["path"].strip()
        if not rel:
            raise DatasetFormatError(f"{manifest}:{line}: empty path")
        audio = base / rel
        if not audio.is_file():
            missing.append(rel)
            continue
        records.append(AudiosetMoodRecord(audio_path=audio, label=label))
    if missing:
        log.warning("audioset_mood_missing_audio", count=len(missing), first=missing[:5])
    return AudiosetMoodSet(records=records, missing=missing)
