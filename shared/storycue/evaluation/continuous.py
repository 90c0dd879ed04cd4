"""Continuous emotion: how well a model reads the valence and arousal of prose.

The retrieval protocol (:mod:`storycue.evaluation.harness`) asks whether a text lands in
the right *quadrant*; a story user needs more: how a passage feels, on a scale, at the
length of a scene. This module scores a model's text side against human ratings:

* **EmoBank** (Buechel & Hahn 2017) test sentences, all genres and the fiction genre alone,
  and **scenes**: windows of ``3`` and ``6`` consecutive test sentences of one fiction
  document (ids carry the document and character offsets; windows do not overlap and a
  short tail is dropped), joined with spaces and scored against the mean of their ratings;
* a **story set** (:mod:`storycue.evaluation.stories`): passages whose intended quadrant and
  rough valence/arousal were written down before any model read them.

Every number stands beside the **frozen-encoder ridge probe**: a ridge regression from the
*pretrained* text encoder's features (the base of the model's encoder) to EmoBank's
valence and arousal, trained on the EmoBank train split with its penalty chosen on the dev
split. A model that does not beat the probe reads prose worse than a linear map of the
encoder it started from.

Passages longer than the encoder's token limit are segmented as the product segments a
story (:func:`storycue.pipeline.segment.segment_story`) and read as the token-weighted mean
of their segments' readings, so nothing is truncated.

:func:`matching_arousal` measures whether arousal matters in *matching*: the rank
correlation, within the query's quadrant, of clip scores with closeness to the clips'
tag-derived valence-arousal, and the share of high-arousal scenes whose top-5 clips are
high-arousal music (Q1/Q2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from storycue.config import Settings
from storycue.data.emobank import EmoBankRecord, EmoBankSplit, load_emobank, scene_windows
from storycue.data.mappings import quadrant_of
from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.features import feature_cache_dir

log = get_logger(__name__)

#: Scene sizes (consecutive EmoBank fiction sentences) of the continuous evaluation.
SCENE_SIZES: tuple[int, ...] = (3, 6)
#: Ridge penalties the probe chooses from (on EmoBank dev).
PROBE_ALPHAS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
#: EmoBank arousal (1-5) from which a sentence counts as high-arousal in matching.
HIGH_AROUSAL_RATING = 3.5
LOW_AROUSAL_RATING = 2.5
Part = Literal["train", "validation", "test"]


@dataclass(frozen=True)
class RatedTexts:
    """Texts with human (or intended) valence and arousal in [0, 1]."""

    name: str
    texts: list[str]
    va: np.ndarray  # (N, 2)
    description: str = ""

    def __post_init__(self) -> None:
        va = np.asarray(self.va, np.float32).reshape(-1, 2)
        if va.shape[0] != len(self.texts):
            raise InvalidInputError(f"{self.name}: {len(self.texts)} texts, {va.shape[0]} ratings")
        object.__setattr__(self, "va", va)

    def __len__(self) -> int:
        return len(self.texts)


class VAReader(Protocol):
    """Something that reads (valence, arousal) in [0, 1]-like units off texts."""

    name: str

    def read_segments(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, 2)`` readings of texts that each fit the encoder's token limit."""
        ...


# ---- EmoBank sets -----------------------------------------------------------------------
def _rated(name: str, records: Sequence[EmoBankRecord], description: str) -> RatedTexts:
    return RatedTexts(
        name, [r.text for r in records], np.asarray([r.vad01()[:2] for r in records]), description
    )


def emobank_sets(settings: Settings, part: Part = "test") -> list[RatedTexts]:
    """The EmoBank sets of the continuous evaluation for one split part."""
    rows = load_emobank(part, settings=settings)
    if len(rows) < 3:
        raise InvalidInputError(f"EmoBank {part} has {len(rows)} rows")
    fiction = [r for r in rows if r.genre == "fiction"]
    sets = [_rated("sentences", rows, f"EmoBank {part}, every genre, one sentence each")]
    if not fiction:
        log.warning("emobank_no_fiction", hint="meta.tsv missing? genre-level sets skipped")
        return sets
    sets.append(_rated("fiction", fiction, f"EmoBank {part}, fiction genre, one sentence each"))
    for size in SCENE_SIZES:
        windows = scene_windows(fiction, size)
        if len(windows) < 3:
            continue
        sets.append(
            RatedTexts(
                f"fiction-scenes-{size}",
                [" ".join(r.text for r in w) for w in windows],
                np.asarray([np.mean([r.vad01()[:2] for r in w], axis=0) for w in windows]),
                f"EmoBank {part}, fiction: {size} consecutive sentences of one document "
                "joined, against their mean rating (non-overlapping windows)",
            )
        )
    return sets


# ---- readers --------------------------------------------------------------------------------
def read_passages(
    reader: VAReader,
    texts: Sequence[str],
    count_tokens: Callable[[Sequence[str]], list[int]],
    max_tokens: int,
) -> np.ndarray:
    """Readings of passages of any length: segmented like a story, the token-weighted mean
    of the segments' readings."""
    from storycue.pipeline.segment import segment_story

    seg_texts: list[str] = []
    owner: list[int] = []
    weight: list[float] = []
    counts = count_tokens(list(texts))
    for i, (text, n) in enumerate(zip(texts, counts, strict=True)):
        if n <= max_tokens:
            seg_texts.append(text)
            owner.append(i)
            weight.append(float(n))
            continue
        for seg in segment_story(text, count_tokens, max_tokens):
            seg_texts.append(seg.text)
            owner.append(i)
            weight.append(float(seg.tokens))
    readings = np.asarray(reader.read_segments(seg_texts), np.float64).reshape(-1, 2)
    out = np.zeros((len(texts), 2), np.float64)
    total = np.zeros(len(texts), np.float64)
    for r, i, w in zip(readings, owner, weight, strict=True):
        out[i] += w * r
        total[i] += w
    return (out / np.maximum(total, 1e-9)[:, None]).astype(np.float32)


class ModelReader:
    """A valence-arousal model's text side: head outputs as (valence, arousal)."""

    def __init__(self, model: Any, settings: Settings) -> None:
        if not model.info.va_axes:
            raise InvalidInputError(f"model {model.identity.key} has no valence-arousal axes")
        self.model = model
        self.name = f"{model.identity.name} {model.identity.version}"
        self._cache = feature_cache_dir(settings)

    @property
    def encoder(self) -> Any:
        return self.model.text_encoder

    def read_segments(self, texts: Sequence[str]) -> np.ndarray:
        from storycue.models.features import text_features

        feats = text_features(self.encoder, list(texts), self._cache, tag="continuous")
        va: np.ndarray = self.model.va_coordinates(self.model.project_text_features(feats))
        return va


class RidgeProbe:
    """Ridge regression from frozen pretrained-encoder features to EmoBank's ratings.

    Trained on EmoBank train; the penalty is the one of :data:`PROBE_ALPHAS` with the best
    mean Pearson correlation (valence, arousal) on EmoBank dev.
    """

    def __init__(self, encoder: Any, settings: Settings) -> None:
        from sklearn.linear_model import Ridge

        from storycue.models.features import text_features

        self.encoder = encoder
        self.name = f"ridge probe on frozen {encoder.name}"
        self._cache = feature_cache_dir(settings)
        data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        parts: tuple[EmoBankSplit, ...] = ("train", "validation")
        for part in parts:
            rows = load_emobank(part, settings=settings)
            if len(rows) < 10:
                raise InvalidInputError(f"EmoBank {part} has too few rows for the probe")
            x = text_features(encoder, [r.text for r in rows], self._cache, tag=f"emobank-{part}")
            data[part] = (x, np.asarray([r.vad01()[:2] for r in rows], np.float64))
        best: tuple[float, float] = (-np.inf, PROBE_ALPHAS[0])
        dev_scores: dict[str, float] = {}
        for alpha in PROBE_ALPHAS:
            fit = Ridge(alpha=alpha).fit(*data["train"])
            pred = fit.predict(data["validation"][0])
            score = float(
                np.mean([_pearson(pred[:, d], data["validation"][1][:, d]) for d in (0, 1)])
            )
            dev_scores[str(alpha)] = round(score, 4)
            if score > best[0]:
                best = (score, alpha)
        self.alpha = best[1]
        self.dev_scores = dev_scores
        self._ridge = Ridge(alpha=self.alpha).fit(*data["train"])
        self.train_size = len(data["train"][0])

    def read_segments(self, texts: Sequence[str]) -> np.ndarray:
        from storycue.models.features import text_features

        feats = text_features(self.encoder, list(texts), self._cache, tag="continuous")
        return np.asarray(self._ridge.predict(feats), np.float32).reshape(-1, 2)

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": str(self.encoder.name),
            "trained_on": f"EmoBank train ({self.train_size} sentences)",
            "alpha": self.alpha,
            "alpha_chosen_on": "EmoBank dev, mean Pearson of valence and arousal",
            "dev_scores": self.dev_scores,
        }


_probe_cache: dict[tuple[str, str], RidgeProbe] = {}
_probe_lock = threading.Lock()


def ridge_probe(encoder_name: str, settings: Settings) -> RidgeProbe:
    """The probe on the *pretrained* base of ``encoder_name`` (memoised per process)."""
    from storycue.models.finetuned import base_of

    base = base_of(encoder_name)
    key = (base, str(settings.home))
    with _probe_lock:
        probe = _probe_cache.get(key)
        if probe is None:
            from storycue.models.text import pretrained_text_encoder

            probe = RidgeProbe(pretrained_text_encoder(base), settings)
            _probe_cache[key] = probe
        return probe


# ---- scores ---------------------------------------------------------------------------------
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    return _pearson(rankdata(x), rankdata(y))


def correlations(
    pred: np.ndarray, truth: np.ndarray, *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Pearson and Spearman of predicted against true valence and arousal, with bootstrap
    95 % intervals of each (``bootstrap`` resamples, fixed ``seed``: deterministic)."""
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(p), size=(bootstrap, len(p))) if bootstrap else None
    out: dict[str, Any] = {"n": len(p)}
    for d, axis in enumerate(("valence", "arousal")):
        for kind, fn in (("pearson", _pearson), ("spearman", _spearman)):
            out[f"{axis}_{kind}"] = fn(p[:, d], t[:, d])
            if idx is not None:
                boots = np.asarray([fn(p[i, d], t[i, d]) for i in idx])
                lo, hi = np.nanpercentile(boots, [2.5, 97.5])
                out[f"{axis}_{kind}_ci95"] = [float(lo), float(hi)]
    return out


def continuous_report(
    model: Any | None,
    settings: Settings,
    *,
    part: Part = "test",
    sets: Sequence[RatedTexts] | None = None,
    probe: RidgeProbe | None = None,
    encoder_name: str | None = None,
) -> dict[str, Any]:
    """The continuous-emotion section of an evaluation report.

    ``model`` may be ``None`` or a family without valence-arousal axes: its row then says
    why it has no numbers, and the probe still stands. ``sets`` default to
    :func:`emobank_sets` of ``part``; ``probe`` to :func:`ridge_probe` of the model's encoder.
    """
    rated = list(sets) if sets is not None else emobank_sets(settings, part)
    name = encoder_name or (model.info.text_encoder if model is not None else None)
    if name is None:
        raise InvalidInputError("the continuous evaluation needs a model or an encoder name")
    probe = probe or ridge_probe(name, settings)
    rows: dict[str, Any] = {}
    readers: dict[str, VAReader] = {"probe": probe}
    if model is not None and model.info.va_axes:
        readers = {"model": ModelReader(model, settings), "probe": probe}
    elif model is not None:
        rows["model"] = {
            "name": f"{model.identity.name} {model.identity.version}",
            "available": False,
            "reason": f"the {model.info.family} family's space has no valence-arousal axes "
            "(its axes are labels, words or learned dimensions), so there is no valence or "
            "arousal reading to correlate with ratings",
        }
    encoder = probe.encoder
    for key, reader in readers.items():
        row: dict[str, Any] = {"name": reader.name, "available": True, "sets": {}}
        for s in rated:
            pred = read_passages(reader, s.texts, encoder.count_tokens, encoder.max_tokens)
            row["sets"][s.name] = correlations(pred, s.va)
        rows[key] = row
    return {
        "part": part,
        "sets": {s.name: {"count": len(s), "description": s.description} for s in rated},
        "rows": rows,
        "probe": probe.describe(),
        "notes": "Pearson/Spearman of the text side's valence and arousal against human "
        "ratings rescaled to [0, 1] (bootstrap 95 % intervals, 1000 resamples); passages over "
        "the token limit are read as the token-weighted mean of their segments.",
    }


# ---- arousal in matching --------------------------------------------------------------------
def matching_arousal(
    model: Any,
    gallery_vectors: np.ndarray,
    gallery_quadrants: Sequence[str],
    gallery_tag_va: np.ndarray,
    queries: RatedTexts,
    settings: Settings,
    *,
    high: float,
    low: float,
    k: int = 5,
    readings: np.ndarray | None = None,
) -> dict[str, Any]:
    """Does arousal matter when ``queries`` (texts with ratings in [0, 1]) are matched
    against a gallery (space vectors, quadrant labels, tag-derived valence-arousal)?

    * ``within_quadrant_spearman``: for each query, the Spearman correlation, over the
      gallery clips of the quadrant the query's reading falls in, between the model's score
      and closeness (minus the distance) of the clip's tag valence-arousal to the query's
      reading; mean over queries. 0 means the score ignores where inside a quadrant a clip
      lies. ``_gentle`` / ``_strong``: the same over the queries whose reading lies nearer
      to / farther from the neutral point than the median query's (largest axis offset).
    * ``high_arousal_top{k}_q12``: queries rated at or above ``high`` — mean share of their
      top-``k`` clips in Q1/Q2 (high-arousal music), and the share of queries whose top
      ``k`` are all Q1/Q2; likewise ``low_arousal_top{k}_q34`` for queries at or below
      ``low``.
    """
    if readings is None:  # a caller that has read the queries already passes them
        enc = model.text_encoder
        readings = read_passages(
            ModelReader(model, settings), queries.texts, enc.count_tokens, enc.max_tokens
        )
    q_vectors = model.from_va(readings, role="text")
    scores = model.score(q_vectors, np.asarray(gallery_vectors, np.float32))
    quads = np.asarray(list(gallery_quadrants))
    tag_va = np.asarray(gallery_tag_va, np.float64)
    within: list[float] = []
    strength: list[float] = []
    for i, r in enumerate(readings):
        members = np.flatnonzero(quads == quadrant_of(float(r[0]), float(r[1])))
        if members.size < 3:
            continue
        closeness = -np.linalg.norm(tag_va[members] - r[None, :], axis=1)
        rho = _spearman(scores[i, members], closeness)
        if np.isfinite(rho):
            within.append(rho)
            strength.append(float(np.abs(r - 0.5).max()))
    # Gently felt queries (reading nearer the neutral point than the median query's) are
    # where closeness and a quadrant's extremes part: report them apart.
    cut = float(np.median(strength)) if strength else 0.0
    gentle = [w for w, st in zip(within, strength, strict=True) if st <= cut]
    strong = [w for w, st in zip(within, strength, strict=True) if st > cut]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_quads = quads[top]
    out: dict[str, Any] = {
        "queries": queries.name,
        "count": len(queries),
        "within_quadrant_spearman": float(np.mean(within)) if within else float("nan"),
        "within_quadrant_spearman_gentle": float(np.mean(gentle)) if gentle else float("nan"),
        "within_quadrant_spearman_strong": float(np.mean(strong)) if strong else float("nan"),
        "within_quadrant_queries": len(within),
    }
    for name, mask, wanted in (
        ("high_arousal", queries.va[:, 1] >= high, ("Q1", "Q2")),
        ("low_arousal", queries.va[:, 1] <= low, ("Q3", "Q4")),
    ):
        key = f"{name}_top{k}_{'q12' if wanted[0] == 'Q1' else 'q34'}"
        rows = np.flatnonzero(mask)
        share = np.isin(top_quads[rows], wanted).mean(axis=1) if rows.size else np.zeros(0)
        out[key] = float(share.mean()) if rows.size else float("nan")
        out[f"{key}_all"] = float((share == 1.0).mean()) if rows.size else float("nan")
        out[f"{name}_queries"] = int(rows.size)
    return out


def tag_va(records: Sequence[Any], lexicon: Any) -> np.ndarray:
    """Each clip's valence-arousal from its mood tags (mean NRC position of the tags the
    lexicon knows; NaN for a clip with none)."""
    out = np.full((len(records), 2), np.nan, np.float64)
    for i, r in enumerate(records):
        found = [lexicon.lookup_phrase(m) for m in r.moods]
        pts = [(v.valence, v.arousal) for v in found if v is not None]
        if pts:
            out[i] = np.mean(pts, axis=0)
    return out
