"""GoEmotions (Demszky et al. 2020): 58k Reddit comments, 27 emotions + neutral.

Files: ``goemotions/{train,dev,test}.tsv`` (``text<TAB>label ids<TAB>comment id``, no
header; ids are comma-separated indices into ``labels.txt``, one label name per line).

The retrieval protocol uses the **Ekman grouping** (:data:`EKMAN_GROUPS`): a row is kept
by :func:`load_goemotions` (``ekman_only=True``) when all its labels fall in exactly one
Ekman group; neutral rows, and rows mixing neutral with an emotion, are dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storycue.config import Settings
from storycue.data._common import collapse_ws, require_file, resolve_dataset_dir
from storycue.errors import DatasetFormatError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

GoEmotionsSplit = Literal["train", "dev", "validation", "test"]

#: Ekman group -> GoEmotions labels in it (neutral is in none).
EKMAN_GROUPS: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "joy": (
        "joy",
        "amusement",
        "approval",
        "excitement",
        "gratitude",
        "love",
        "optimism",
        "relief",
        "pride",
        "admiration",
        "desire",
        "caring",
    ),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
}
#: The six Ekman labels, in order.
EKMAN_LABELS: tuple[str, ...] = tuple(EKMAN_GROUPS)
#: GoEmotions label -> Ekman group.
EKMAN_OF: dict[str, str] = {lab: g for g, labs in EKMAN_GROUPS.items() for lab in labs}
NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class GoEmotionsRecord:
    """One comment: its text, original labels and single Ekman group (or ``None``)."""

    comment_id: str
    text: str
    labels: tuple[str, ...]
    ekman: str | None


def ekman_group(labels: Sequence[str]) -> str | None:
    """The one Ekman group covering all ``labels``; ``None`` when neutral, mixed or empty."""
    if not labels or NEUTRAL in labels:
        return None
    groups = {EKMAN_OF.get(lab) for lab in labels}
    if None in groups:
        raise InvalidInputError(f"unknown GoEmotions label(s) in {list(labels)}")
    return groups.pop() if len(groups) == 1 else None


def read_labels(folder: Path) -> tuple[str, ...]:
    """Label names from ``labels.txt``, one a line, in id order."""
    path = require_file(folder / "labels.txt", "goemotions")
    names = tuple(x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip())
    unknown = [n for n in names if n != NEUTRAL and n not in EKMAN_OF]
    if unknown:
        raise DatasetFormatError(f"{path}: unexpected label name(s) {unknown}")
    return names


def load_goemotions(
    split: GoEmotionsSplit = "test",
    path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    ekman_only: bool = True,
) -> list[GoEmotionsRecord]:
    """Rows of one GoEmotions split; with ``ekman_only`` only single-Ekman-group rows."""
    name = {"validation": "dev"}.get(split, split)
    if name not in ("train", "dev", "test"):
        raise InvalidInputError(f"unknown GoEmotions split {split!r}")
    folder = resolve_dataset_dir("goemotions", path, settings)
    names = read_labels(folder)
    tsv = require_file(folder / f"{name}.tsv", "goemotions")
    records: list[GoEmotionsRecord] = []
    total = 0
    with tsv.open(encoding="utf-8", newline="") as fh:
        for line_no, fields in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not fields:
                continue
            if len(fields) != 3:
                raise DatasetFormatError(f"{tsv}:{line_no}: expected 3 tab-separated fields")
            text, ids, comment_id = fields
            try:
                labels = tuple(names[int(i)] for i in ids.split(","))
            except (ValueError, IndexError) as exc:
                raise DatasetFormatError(f"{tsv}:{line_no}: bad label ids {ids!r}") from exc
            total += 1
            rec = GoEmotionsRecord(
                comment_id=comment_id.strip(),
                text=collapse_ws(text),
                labels=labels,
                ekman=ekman_group(labels),
            )
            if ekman_only and rec.ekman is None:
                continue
            records.append(rec)
    log.debug("goemotions_loaded", split=name, rows=total, kept=len(records))
    return records
