"""EmoBank (Buechel & Hahn 2017): 10,062 sentences rated for valence, arousal, dominance.

``emobank/emobank.csv`` has ``id, split, V, A, D, text`` with ratings on a 1-5 scale and
``split`` one of train/dev/test; ``emobank/meta.tsv`` (optional) gives each id's
``category`` (genre, e.g. fiction, blog, letters). Use :func:`rescale` to map ratings to
[0, 1] (the NRC lexicon's range). Licence: CC-BY-SA 4.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storycue.config import Settings
from storycue.data._common import collapse_ws, read_rows, require_file, resolve_dataset_dir
from storycue.errors import DatasetFormatError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

EmoBankSplit = Literal["train", "dev", "validation", "test", "all"]
RATING_MIN = 1.0
RATING_MAX = 5.0


@dataclass(frozen=True, slots=True)
class EmoBankRecord:
    """One sentence with its mean valence, arousal and dominance ratings (1-5)."""

    id: str
    split: str
    valence: float
    arousal: float
    dominance: float
    text: str
    genre: str | None

    def vad01(self) -> tuple[float, float, float]:
        """Valence, arousal, dominance rescaled to [0, 1]."""
        return rescale(self.valence), rescale(self.arousal), rescale(self.dominance)


def rescale(rating: float) -> float:
    """Map a 1-5 rating to [0, 1]: ``(r - 1) / 4``."""
    return (rating - RATING_MIN) / (RATING_MAX - RATING_MIN)


def _genres(folder: Path) -> dict[str, str]:
    meta = folder / "meta.tsv"
    if not meta.is_file():
        log.info("emobank_meta_missing", path=str(meta))
        return {}
    return {
        row["id"].strip(): row["category"].strip()
        for _, row in read_rows(meta, ("id", "category"), dataset="emobank", delimiter="\t")
    }


def load_emobank(
    split: EmoBankSplit = "all",
    path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    genre: str | None = None,
) -> list[EmoBankRecord]:
    """EmoBank rows of one split (``"all"`` for every row), optionally of one genre."""
    name = {"validation": "dev"}.get(split, split)
    if name not in ("train", "dev", "test", "all"):
        raise InvalidInputError(f"unknown EmoBank split {split!r}")
    folder = resolve_dataset_dir("emobank", path, settings)
    csv_path = require_file(folder / "emobank.csv", "emobank")
    genres = _genres(folder)
    records: list[EmoBankRecord] = []
    for line, row in read_rows(csv_path, ("id", "split", "V", "A", "D", "text"), dataset="emobank"):
        try:
            v, a, d = float(row["V"]), float(row["A"]), float(row["D"])
        except ValueError as exc:
            raise DatasetFormatError(f"{csv_path}:{line}: non-numeric rating") from exc
        if not all(RATING_MIN <= x <= RATING_MAX for x in (v, a, d)):
            raise DatasetFormatError(f"{csv_path}:{line}: rating outside [1, 5]")
        rec = EmoBankRecord(
            id=row["id"].strip(),
            split=row["split"].strip(),
            valence=v,
            arousal=a,
            dominance=d,
            text=collapse_ws(row["text"]),
            genre=genres.get(row["id"].strip()),
        )
        if name != "all" and rec.split != name:
            continue
        if genre is not None and rec.genre != genre:
            continue
        records.append(rec)
    return records
