"""Texts with valence-arousal targets, assembled from the labelled and rated datasets.

The one place that decides what a text *should* read as: a labelled text (ISEAR,
GoEmotions) at the NRC VAD position of its label, a rated one (EmoBank) at its rating, a
4Q clip at its quadrant's centre and/or its mood tags. Training fits heads to these sets;
evaluation builds its reference probes from the same sets.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from storycue.config import Settings
from storycue.data.emobank import load_emobank, passage_windows
from storycue.data.fourq import FourQRecord
from storycue.data.goemotions import load_goemotions
from storycue.data.isear import load_isear
from storycue.data.mappings import QUADRANT_VA_CENTRES
from storycue.data.nrc_vad import VadLexicon
from storycue.errors import DatasetNotFoundError, InvalidInputError

MusicTarget = Literal["quadrant", "tags", "blend"]

#: The text sources a model trains on unless told otherwise.
DEFAULT_TEXT_SOURCES: tuple[str, ...] = ("isear", "goemotions", "emobank")
#: Every text source a model can train on. ``emobank-passages`` are EmoBank's sentences
#: joined into passages of consecutive sentences of one document (:data:`PASSAGE_SIZES`),
#: each against the mean rating of its sentences, so a head also learns how a paragraph
#: reads, not only a single sentence.
#: ``goemotions-labels`` are GoEmotions' single-Ekman-group comments placed at the mean NRC
#: position of their *own* labels (relief, gratitude, caring, love... rather than all at
#: "joy"), so labelled positive texts also teach calm positive readings; use it *instead of*
#: ``goemotions``.
#: ``nrc-words`` are the NRC VAD lexicon's words, each at its own valence and arousal: the
#: only source that places *calm* words ("quiet", "sleep", "serene") low on arousal, which
#: no label word does (every ISEAR and Ekman label but sadness sits at arousal >= .5). A
#: word's part of the split is fixed by a hash of the word (:func:`word_part`).
TEXT_SOURCES: tuple[str, ...] = (
    "isear",
    "goemotions",
    "goemotions-labels",
    "emobank",
    "emobank-passages",
    "nrc-words",
)
#: Sources whose targets are human ratings of the text itself (not a label's NRC position).
RATED_SOURCES: tuple[str, ...] = ("emobank", "emobank-passages")
PASSAGE_SIZES: tuple[int, ...] = (2, 3, 4, 6)
#: Sources whose texts are single words of the lexicon.
WORD_SOURCES: tuple[str, ...] = ("nrc-words",)

Part = Literal["train", "validation", "test"]


def word_part(word: str) -> Part:
    """The split part of a lexicon word: 80 % train, 10 % validation, 10 % test, by a CRC-32
    of the word, so the split never depends on the lexicon's order or size."""
    bucket = zlib.crc32(word.encode("utf-8")) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def check_text_sources(sources: Sequence[str]) -> list[str]:
    """``sources`` as a list, or a clear error naming the unknown ones."""
    chosen = [s for s in sources if s]
    bad = sorted(set(chosen) - set(TEXT_SOURCES))
    if bad or not chosen:
        raise InvalidInputError(
            f"text sources must be among {', '.join(TEXT_SOURCES)}; got {list(sources)}"
        )
    return chosen


@dataclass
class TextSet:
    texts: list[str]
    targets: np.ndarray  # (N, 2)
    weights: np.ndarray  # (N,)
    labels: list[str]
    source: list[str]


def label_va(lexicon: VadLexicon, label: str) -> tuple[float, float]:
    vad = lexicon.lookup(label)
    if vad is None:
        raise DatasetNotFoundError(f"label {label!r} is not in the NRC VAD lexicon")
    return float(vad.valence), float(vad.arousal)


def fine_label_va(lexicon: VadLexicon, labels: Sequence[str]) -> tuple[float, float]:
    """Mean NRC position of a text's own labels (GoEmotions' 27 emotions)."""
    if not labels:
        raise InvalidInputError("a labelled text needs at least one label")
    points = [label_va(lexicon, lab) for lab in labels]
    return float(np.mean([p[0] for p in points])), float(np.mean([p[1] for p in points]))


def text_training_set(
    part: Part,
    lexicon: VadLexicon,
    sources: Sequence[str],
    settings: Settings,
    emobank_weight: float = 0.5,
) -> TextSet:
    """Texts with VA targets from the chosen sources for one split part."""
    texts: list[str] = []
    targets: list[tuple[float, float]] = []
    weights: list[float] = []
    labels: list[str] = []
    source: list[str] = []
    if "isear" in sources:
        for r in load_isear(part, settings=settings):
            texts.append(r.text)
            targets.append(label_va(lexicon, r.emotion))
            weights.append(1.0)
            labels.append(r.emotion)
            source.append("isear")
    for name in ("goemotions", "goemotions-labels"):
        if name not in sources:
            continue
        for g in load_goemotions(part, settings=settings):
            if g.ekman is None:
                continue
            texts.append(g.text)
            # the Ekman group's word, or (goemotions-labels) the comment's own labels
            targets.append(
                label_va(lexicon, g.ekman)
                if name == "goemotions"
                else fine_label_va(lexicon, g.labels)
            )
            weights.append(1.0)
            labels.append(g.ekman)
            source.append(name)
    if "emobank" in sources:
        for e in load_emobank(part, settings=settings):
            v, a, _ = e.vad01()
            texts.append(e.text)
            targets.append((v, a))
            weights.append(emobank_weight)
            labels.append("")
            source.append("emobank")
    if "emobank-passages" in sources:
        for text, v, a in passage_windows(load_emobank(part, settings=settings), PASSAGE_SIZES):
            texts.append(text)
            targets.append((v, a))
            weights.append(emobank_weight)
            labels.append("")
            source.append("emobank-passages")
    if "nrc-words" in sources:
        for word, vad in lexicon.items():
            if word_part(word) != part:
                continue
            texts.append(word)
            targets.append((float(vad.valence), float(vad.arousal)))
            weights.append(1.0)
            labels.append("")
            source.append("nrc-words")
    return TextSet(
        texts=texts,
        targets=np.asarray(targets, np.float32).reshape(-1, 2),
        weights=np.asarray(weights, np.float32),
        labels=labels,
        source=source,
    )


def music_targets(
    records: Sequence[FourQRecord], lexicon: VadLexicon, how: MusicTarget = "blend"
) -> np.ndarray:
    """VA target of each clip from its quadrant and/or mood tags."""
    out = np.zeros((len(records), 2), np.float32)
    for i, r in enumerate(records):
        centre = np.asarray(QUADRANT_VA_CENTRES[r.quadrant], np.float32)
        found = [lexicon.lookup_phrase(m) for m in r.moods]
        tags = [np.asarray((v.valence, v.arousal), np.float32) for v in found if v is not None]
        tag_mean = np.mean(tags, axis=0) if tags else centre
        if how == "quadrant":
            out[i] = centre
        elif how == "tags":
            out[i] = tag_mean
        else:
            out[i] = 0.5 * centre + 0.5 * tag_mean
    return out
