"""ISEAR (Scherer & Wallbott 1994): 7,666 self-reported emotional situations.

``isear/isear.csv`` has columns ``id, emotion, text``; the emotion is one of anger,
disgust, fear, joy, sadness, shame, guilt. Cleaning (:func:`clean_isear`):

1. **Placeholders** are dropped: non-answers such as ``"[ No response.]"``,
   ``"NO RESPONSE."``, ``"[ Never experienced.]"``, ``"[ Same as in anger.]"``,
   ``"Doesn't apply."``, ``"Blank."``, ``"[ Do not remember any incident.]"`` (see
   :func:`is_placeholder`; short texts only, so real answers that merely *start* with
   "I cannot remember ..." and then describe a situation are kept).
2. **Exact duplicate texts** (compared after collapsing whitespace and case) keep their
   first row (by id) when all copies carry the same emotion; when the copies disagree on
   the emotion, every copy is dropped (the label is ambiguous).

The split (:func:`split_isear`) is stratified by emotion, 70/15/15 train/validation/test
with a fixed seed, as the evaluation protocol asks; queries are the test part.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storycue.config import Settings
from storycue.data._common import collapse_ws, read_rows, require_file, resolve_dataset_dir
from storycue.data.splits import DEFAULT_FRACTIONS, DEFAULT_SEED, Split, stratified_split
from storycue.errors import DatasetFormatError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

#: ISEAR's seven emotion labels.
ISEAR_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "shame", "guilt")

IsearPart = Literal["train", "validation", "val", "dev", "test", "all"]

# Whole-text patterns (on the normalised text, see _normalise) that mark a non-answer.
_PLACEHOLDER_PATTERNS: tuple[str, ...] = (
    r"no (response|reponse|description|answer)\b.*",
    r"(nothing|none|blank|never|n a|not applicable( to myself)?|(it )?(doesn't|does not) apply)",
    r"(honestly )?(i )?(have )?(never|not) (felt|experienced|been)\b.*",
    r"(i )?(do not|don't|can not|cannot|can't) (remember|recall|think of|know)\b.*",
    r"(the )?same as\b.*",
    r"as for \w+",
    r"(normally )?i do not (usually )?feel \w+",
    r"i am quite shameless.*",
)
_PLACEHOLDER = re.compile("|".join(f"(?:{p})" for p in _PLACEHOLDER_PATTERNS))
#: Placeholders are short: a text with more words is a real answer.
PLACEHOLDER_MAX_WORDS = 20


@dataclass(frozen=True, slots=True)
class IsearRecord:
    """One ISEAR situation: its id, emotion label and text."""

    id: str
    emotion: str
    text: str


@dataclass(frozen=True, slots=True)
class IsearCleaning:
    """What :func:`clean_isear` removed."""

    records: list[IsearRecord]
    placeholders: list[IsearRecord]
    duplicates: list[IsearRecord]
    conflicting: list[IsearRecord]


def _normalise(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z' ]+", " ", text)
    return collapse_ws(text)


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is a non-answer (see the module docstring)."""
    norm = _normalise(text)
    if not norm:
        return True
    if len(norm.split()) > PLACEHOLDER_MAX_WORDS:
        return False
    return _PLACEHOLDER.fullmatch(norm) is not None


def read_isear(
    path: str | Path | None = None, *, settings: Settings | None = None
) -> list[IsearRecord]:
    """All rows of ``isear.csv`` (no cleaning), in file order."""
    folder = resolve_dataset_dir("isear", path, settings)
    csv_path = require_file(folder / "isear.csv", "isear")
    records: list[IsearRecord] = []
    for line, row in read_rows(csv_path, ("id", "emotion", "text"), dataset="isear"):
        emotion = row["emotion"].strip().lower()
        if emotion not in ISEAR_LABELS:
            raise DatasetFormatError(
                f"{csv_path}:{line}: emotion {row['emotion']!r} is not one of {ISEAR_LABELS}"
            )
        records.append(
            IsearRecord(id=row["id"].strip(), emotion=emotion, text=collapse_ws(row["text"]))
        )
    if len({r.id for r in records}) != len(records):
        raise DatasetFormatError(f"{csv_path}: ids are not unique")
    return records


def clean_isear(records: Sequence[IsearRecord]) -> IsearCleaning:
    """Drop placeholders and duplicate texts (see the module docstring)."""
    placeholders = [r for r in records if is_placeholder(r.text)]
    kept = [r for r in records if not is_placeholder(r.text)]
    by_text: dict[str, list[IsearRecord]] = defaultdict(list)
    for r in sorted(kept, key=lambda r: r.id):
        by_text[collapse_ws(r.text).casefold()].append(r)
    clean: list[IsearRecord] = []
    duplicates: list[IsearRecord] = []
    conflicting: list[IsearRecord] = []
    for copies in by_text.values():
        if len({c.emotion for c in copies}) > 1:
            conflicting.extend(copies)
        else:
            clean.append(copies[0])
            duplicates.extend(copies[1:])
    clean.sort(key=lambda r: r.id)
    return IsearCleaning(
        records=clean, placeholders=placeholders, duplicates=duplicates, conflicting=conflicting
    )


def split_isear(
    records: Sequence[IsearRecord],
    *,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> Split[IsearRecord]:
    """Stratified (by emotion) train/validation/test split of cleaned records."""
    return stratified_split(
        records, label=lambda r: r.emotion, key=lambda r: r.id, seed=seed, fractions=fractions
    )


def load_isear(
    split: IsearPart = "test",
    path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    seed: int = DEFAULT_SEED,
) -> list[IsearRecord]:
    """Cleaned ISEAR records of one split part (default: the query set, ``"test"``)."""
    cleaning = clean_isear(read_isear(path, settings=settings))
    log.debug(
        "isear_cleaned",
        kept=len(cleaning.records),
        placeholders=len(cleaning.placeholders),
        duplicates=len(cleaning.duplicates),
        conflicting=len(cleaning.conflicting),
    )
    if split == "all":
        return cleaning.records
    if split not in ("train", "validation", "val", "dev", "test"):
        raise InvalidInputError(f"unknown ISEAR split {split!r}")
    return split_isear(cleaning.records, seed=seed).part(split)
