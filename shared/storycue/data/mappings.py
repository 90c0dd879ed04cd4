"""Mappings from text emotion labels to 4Q quadrants (EVALUATION.md, paper Table 2).

A mapping is a ``dict[str, frozenset[str]]``: text label -> the quadrants whose tracks are
relevant to a query with that label.

* :data:`MANUAL_MAPPING` — the fixed, primary mapping.
* :func:`va_mapping` — the quadrant where the label word falls in NRC valence-arousal.
* :func:`word_mapping` — the quadrant whose mood-tag embedding centroid is nearest.

Quadrants (Russell's circumplex): Q1 positive valence / high arousal, Q2 negative / high,
Q3 negative / low, Q4 positive / low; both axes in [0, 1] with centre 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from storycue.data.fourq import QUADRANTS, FourQRecord
from storycue.data.nrc_vad import VadLexicon
from storycue.errors import InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)


_Q1, _Q2, _Q3, _Q4 = (frozenset({q}) for q in QUADRANTS)

#: The fixed text-label -> quadrant mapping (ISEAR, GoEmotions-Ekman and Alm labels).
MANUAL_MAPPING: dict[str, frozenset[str]] = {
    # negative valence, high arousal
    "anger": _Q2,
    "angry": _Q2,
    "disgust": _Q2,
    "disgusted": _Q2,
    "angry-disgusted": _Q2,
    "fear": _Q2,
    "fearful": _Q2,
    # positive valence, high arousal
    "joy": _Q1,
    "happy": _Q1,
    "surprise": _Q1,
    "surprised": _Q1,
    # negative valence, low arousal
    "sadness": _Q3,
    "sad": _Q3,
    # self-conscious emotions: negative valence, either arousal
    "shame": frozenset({"Q2", "Q3"}),
    "guilt": frozenset({"Q2", "Q3"}),
}

#: A representative valence-arousal point of each quadrant (centre of its square).
QUADRANT_VA_CENTRES: dict[str, tuple[float, float]] = {
    "Q1": (0.75, 0.75),
    "Q2": (0.25, 0.75),
    "Q3": (0.25, 0.25),
    "Q4": (0.75, 0.25),
}
#: The neutral point of both axes.
VA_CENTRE = 0.5

EmbedFn = Callable[[list[str]], npt.NDArray[np.floating]]


def quadrant_of(valence: float, arousal: float, centre: float = VA_CENTRE) -> str:
    """Quadrant of a valence-arousal point; values equal to ``centre`` count as
    positive/high."""
    positive = valence >= centre
    high = arousal >= centre
    if high:
        return "Q1" if positive else "Q2"
    return "Q4" if positive else "Q3"


def quadrants_of(va: npt.ArrayLike, centre: float = VA_CENTRE) -> list[str]:
    """Vectorised :func:`quadrant_of` over an ``(n, 2)`` array of (valence, arousal)."""
    arr = np.asarray(va, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError(f"expected an (n, 2) valence-arousal array, got {arr.shape}")
    return [quadrant_of(float(v), float(a), centre) for v, a in arr]


def va_mapping(
    labels: Iterable[str], lexicon: VadLexicon, *, strict: bool = True
) -> dict[str, frozenset[str]]:
    """Each label's quadrant from its NRC valence and arousal (relative to 0.5).

    Labels are looked up with :meth:`VadLexicon.lookup_phrase` (so ``"angry-disgusted"``
    averages both words). A label the lexicon cannot place raises
    :class:`InvalidInputError` when ``strict``, else it is left out (and logged).
    """
    result: dict[str, frozenset[str]] = {}
    missing: list[str] = []
    for label in dict.fromkeys(labels):
        vad = lexicon.lookup_phrase(label)
        if vad is None:
            missing.append(label)
            continue
        result[label] = frozenset({quadrant_of(vad.valence, vad.arousal)})
    if missing:
        if strict:
            raise InvalidInputError(f"NRC VAD lexicon has no entry for label(s) {missing}")
        log.warning("va_mapping_missing_labels", labels=missing)
    return result


def quadrant_tags(records: Sequence[FourQRecord]) -> dict[str, list[str]]:
    """Distinct AllMusic mood tags of each quadrant (sorted), e.g. from the 4Q training
    records. A tag found in several quadrants belongs to each."""
    tags: dict[str, set[str]] = {q: set() for q in QUADRANTS}
    for rec in records:
        tags[rec.quadrant].update(rec.moods)
    return {q: sorted(t) for q, t in tags.items()}


def _unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidInputError("an embedding has zero norm")
    unit: npt.NDArray[np.float64] = rows / norms
    return unit


def word_mapping(
    labels: Iterable[str],
    embed_fn: EmbedFn,
    quadrant_tags: Mapping[str, Sequence[str]],
) -> dict[str, frozenset[str]]:
    """Each label's quadrant by cosine nearest mood-tag centroid.

    ``embed_fn`` maps a list of strings to an ``(n, d)`` array of embeddings (normalised
    or not: rows are L2-normalised here). A quadrant's centroid is the mean of its tags'
    embeddings, re-normalised. Ties go to the first quadrant in ``quadrant_tags`` order.
    """
    label_list = list(dict.fromkeys(labels))
    quads = [q for q, tags in quadrant_tags.items() if tags]
    if not quads:
        raise InvalidInputError("word_mapping needs at least one quadrant with mood tags")
    if not label_list:
        return {}
    centroids = []
    for q in quads:
        emb = _unit(np.asarray(embed_fn(list(quadrant_tags[q])), dtype=np.float64))
        if emb.shape[0] != len(quadrant_tags[q]):
            raise InvalidInputError("embed_fn returned the wrong number of rows")
        centroids.append(emb.mean(axis=0))
    cent = _unit(np.stack(centroids))
    lab = _unit(np.asarray(embed_fn(label_list), dtype=np.float64))
    if lab.shape != (len(label_list), cent.shape[1]):
        raise InvalidInputError("embed_fn returned embeddings of an unexpected shape")
    nearest = np.argmax(lab @ cent.T, axis=1)
    return {label: frozenset({quads[int(i)]}) for label, i in zip(label_list, nearest, strict=True)}


def restrict(
    mapping: Mapping[str, frozenset[str]], labels: Iterable[str]
) -> dict[str, frozenset[str]]:
    """The part of ``mapping`` for ``labels``; :class:`InvalidInputError` for unmapped ones."""
    wanted = list(dict.fromkeys(labels))
    missing = [lab for lab in wanted if lab not in mapping]
    if missing:
        raise InvalidInputError(f"no quadrant mapping for label(s) {missing}")
    return {lab: mapping[lab] for lab in wanted}
