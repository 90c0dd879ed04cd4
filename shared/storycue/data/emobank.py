"""EmoBank (Buechel & Hahn 2017): 10,062 sentences rated for valence, arousal, dominance.

``emobank/emobank.csv`` has ``id, split, V, A, D, text`` with ratings on a 1-5 scale and
``split`` one of train/dev/test; ``emobank/meta.tsv`` (optional) gives each id's
``category`` (genre, e.g. fiction, blog, letters). Use :func:`rescale` to map ratings to
[0, 1] (the NRC lexicon's range). Licence: CC-BY-SA 4.0.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def emobank_document(record_id: str) -> tuple[str, int, int]:
    """``(document, start, end)`` of an EmoBank id ``<document>_<start>_<end>``."""
    doc, start, end = [*record_id.rsplit("_", 2), "", ""][:3]
    if not (start.isdigit() and end.isdigit()):
        raise InvalidInputError(f"EmoBank id {record_id!r} carries no character offsets")
    return doc, int(start), int(end)


def scene_windows(records: Sequence[EmoBankRecord], size: int) -> list[list[EmoBankRecord]]:
    """Non-overlapping windows of ``size`` consecutive sentences of one document each
    (sentences ordered by character offset; a document's short tail is dropped)."""
    if size < 1:
        raise InvalidInputError("scene size must be >= 1")
    docs: dict[str, list[tuple[int, EmoBankRecord]]] = {}
    for r in records:
        doc, start, _ = emobank_document(r.id)
        docs.setdefault(doc, []).append((start, r))
    out: list[list[EmoBankRecord]] = []
    for doc in sorted(docs):
        ordered = [r for _, r in sorted(docs[doc], key=lambda x: x[0])]
        out.extend(ordered[i : i + size] for i in range(0, len(ordered) - size + 1, size))
    return out


def passage_windows(
    records: Sequence[EmoBankRecord], sizes: Sequence[int]
) -> list[tuple[str, float, float]]:
    """Passages of consecutive sentences of one document: for each size, the
    non-overlapping windows of :func:`scene_windows`, as ``(joined text, mean valence,
    mean arousal)`` with the means rescaled to [0, 1]. Records without character offsets in
    their id are left out (they cannot be ordered)."""
    ordered = [r for r in records if _has_offsets(r.id)]
    out: list[tuple[str, float, float]] = []
    for size in sizes:
        for w in scene_windows(ordered, size):
            v = sum(rescale(r.valence) for r in w) / len(w)
            a = sum(rescale(r.arousal) for r in w) / len(w)
            out.append((" ".join(r.text for r in w), v, a))
    return out


def _has_offsets(record_id: str) -> bool:
    parts = record_id.rsplit("_", 2)
    return len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()
