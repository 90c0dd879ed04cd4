"""Retrieval metrics of text-to-music search (EVALUATION.md) and per-side diagnostics.

:func:`retrieval_metrics` takes a score matrix ``scores[i, j]`` (query ``i`` x gallery
track ``j``; **higher = better** unless ``higher_is_better=False``, e.g. for distances),
the query labels, the gallery labels and a mapping (query label -> set of relevant
gallery labels). Track ``j`` is relevant to query ``i`` when
``gallery_labels[j] in mapping[query_labels[i]]``.

Each query's ranking sorts the gallery by score, ties broken by gallery index (a stable
sort), and gives:

* ``p@k`` — relevant tracks among the top ``k``, divided by ``k`` (by the gallery size
  when it is smaller than ``k``);
* ``mrr`` — 1 / rank of the first relevant track, 0 when none is relevant;
* ``ap`` — average precision: mean of the precision at each relevant track's rank
  (0 when none is relevant);
* ``r_precision`` — precision at rank R, R = number of relevant tracks (0 when R = 0).

**Macro** averages (the paper's, and the ones to report) average each metric over the
queries of one text label, then over labels; **micro** averages are over all queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from storycue.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RetrievalResult:
    """Per-query, per-label, macro and micro retrieval metrics."""

    metric_names: tuple[str, ...]
    per_query: dict[str, FloatArray]
    per_label: dict[str, dict[str, float]]
    macro: dict[str, float]
    micro: dict[str, float]
    label_counts: dict[str, int]
    n_queries: int
    n_gallery: int
    n_relevant: npt.NDArray[np.int64] = field(repr=False)

    def to_dict(self, *, include_per_query: bool = False) -> dict[str, object]:
        """Plain JSON-serialisable form (per-query values only when asked)."""
        out: dict[str, object] = {
            "metrics": list(self.metric_names),
            "n_queries": self.n_queries,
            "n_gallery": self.n_gallery,
            "label_counts": dict(self.label_counts),
            "macro": dict(self.macro),
            "micro": dict(self.micro),
            "per_label": {k: dict(v) for k, v in self.per_label.items()},
        }
        if include_per_query:
            out["per_query"] = {k: v.tolist() for k, v in self.per_query.items()}
            out["n_relevant"] = self.n_relevant.tolist()
        return out


def relevance_matrix(
    query_labels: Sequence[str],
    gallery_labels: Sequence[str],
    mapping: Mapping[str, frozenset[str] | set[str]],
) -> npt.NDArray[np.bool_]:
    """``rel[i, j]``: whether gallery track ``j`` is relevant to query ``i``."""
    unmapped = sorted({q for q in query_labels if q not in mapping})
    if unmapped:
        raise InvalidInputError(f"query label(s) {unmapped} have no entry in the mapping")
    gal_values = sorted(set(gallery_labels))
    q_values = sorted(set(query_labels))
    table = np.array([[g in mapping[q] for g in gal_values] for q in q_values], dtype=bool)
    table = table.reshape(len(q_values), len(gal_values))
    q_pos = {q: i for i, q in enumerate(q_values)}
    g_pos = {g: i for i, g in enumerate(gal_values)}
    qi = np.array([q_pos[q] for q in query_labels], dtype=np.int64)
    gi = np.array([g_pos[g] for g in gallery_labels], dtype=np.int64)
    result: npt.NDArray[np.bool_] = table[qi[:, None], gi[None, :]]
    return result


def ranked_relevance(
    scores: npt.ArrayLike, relevance: npt.ArrayLike, *, higher_is_better: bool = True
) -> npt.NDArray[np.bool_]:
    """Relevance in rank order: row ``i`` sorted best-first, ties by gallery index."""
    s = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(relevance, dtype=bool)
    if s.ndim != 2 or s.shape != rel.shape:
        raise InvalidInputError(
            f"scores {s.shape} and relevance {rel.shape} must be equal 2-D shapes"
        )
    if not np.all(np.isfinite(s)):
        raise InvalidInputError("scores contain NaN or infinite values")
    order = np.argsort(-s if higher_is_better else s, axis=1, kind="stable")
    ranked: npt.NDArray[np.bool_] = np.take_along_axis(rel, order, axis=1)
    return ranked


def per_query_metrics(
    ranked: npt.NDArray[np.bool_], ks: Sequence[int] = (5, 10)
) -> dict[str, FloatArray]:
    """P@k, MRR, AP and R-precision of each row of a ranked relevance matrix."""
    n_q, n_g = ranked.shape
    hits = np.cumsum(ranked, axis=1, dtype=np.float64)  # relevant within top r
    ranks = np.arange(1, n_g + 1, dtype=np.float64)
    n_rel = hits[:, -1] if n_g else np.zeros(n_q)
    out: dict[str, FloatArray] = {}
    for k in ks:
        if k < 1:
            raise InvalidInputError(f"cut-off k must be >= 1, got {k}")
        kk = min(k, n_g)
        out[f"p@{k}"] = hits[:, kk - 1] / kk if kk else np.zeros(n_q)
    any_rel = ranked.any(axis=1)
    first = np.argmax(ranked, axis=1) if n_g else np.zeros(n_q, dtype=np.int64)
    out["mrr"] = np.where(any_rel, 1.0 / (first + 1.0), 0.0)
    prec = hits / ranks
    safe = np.maximum(n_rel, 1.0)
    out["ap"] = np.where(any_rel, (prec * ranked).sum(axis=1) / safe, 0.0)
    r_idx = np.maximum(n_rel.astype(np.int64) - 1, 0)
    r_prec = hits[np.arange(n_q), r_idx] / safe if n_g else np.zeros(n_q)
    out["r_precision"] = np.where(any_rel, r_prec, 0.0)
    return out


def retrieval_metrics(
    scores: npt.ArrayLike,
    query_labels: Sequence[str],
    gallery_labels: Sequence[str],
    mapping: Mapping[str, frozenset[str] | set[str]],
    *,
    higher_is_better: bool = True,
    ks: Sequence[int] = (5, 10),
) -> RetrievalResult:
    """Score a text-to-music retrieval run (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise InvalidInputError(f"scores must be 2-D (queries x gallery), got shape {s.shape}")
    if s.shape != (len(query_labels), len(gallery_labels)):
        raise InvalidInputError(
            f"scores shape {s.shape} does not match {len(query_labels)} query labels "
            f"x {len(gallery_labels)} gallery labels"
        )
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise InvalidInputError("retrieval_metrics needs at least one query and one track")
    rel = relevance_matrix(query_labels, gallery_labels, mapping)
    ranked = ranked_relevance(s, rel, higher_is_better=higher_is_better)
    per_query = per_query_metrics(ranked, ks)
    names = tuple(per_query)
    labels = np.asarray(query_labels, dtype=object)
    label_values = sorted(set(query_labels))
    per_label = {
        lab: {m: float(per_query[m][labels == lab].mean()) for m in names} for lab in label_values
    }
    macro = {m: float(np.mean([per_label[lab][m] for lab in label_values])) for m in names}
    micro = {m: float(per_query[m].mean()) for m in names}
    counts = {lab: int((labels == lab).sum()) for lab in label_values}
    return RetrievalResult(
        metric_names=names,
        per_query=per_query,
        per_label=per_label,
        macro=macro,
        micro=micro,
        label_counts=counts,
        n_queries=s.shape[0],
        n_gallery=s.shape[1],
        n_relevant=rel.sum(axis=1).astype(np.int64),
    )


# ---- per-side diagnostics --------------------------------------------------------------


def _pair(
    y_true: Sequence[str], y_pred: Sequence[str]
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.str_]]:
    t = np.asarray(list(y_true), dtype=str)
    p = np.asarray(list(y_pred), dtype=str)
    if t.shape != p.shape:
        raise InvalidInputError(f"{t.shape[0]} true labels but {p.shape[0]} predictions")
    if t.size == 0:
        raise InvalidInputError("accuracy of an empty set is undefined")
    return t, p


def classification_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of predictions equal to the true label."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def per_class_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """Recall of each true class (sorted by class)."""
    t, p = _pair(y_true, y_pred)
    return {str(c): float(np.mean(p[t == c] == c)) for c in sorted(set(t.tolist()))}


def balanced_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Mean of the per-class accuracies (macro recall)."""
    return float(np.mean(list(per_class_accuracy(y_true, y_pred).values())))


def argmax_labels(probabilities: npt.ArrayLike, classes: Sequence[str]) -> list[str]:
    """The class of the highest probability in each row (first on ties)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise InvalidInputError(f"probabilities {probs.shape} do not match {len(classes)} classes")
    return [classes[int(i)] for i in np.argmax(probs, axis=1)]


def va_correlations(predicted: npt.ArrayLike, target: npt.ArrayLike) -> dict[str, float]:
    """Pearson and Spearman correlation per column of ``(n, d)`` predictions vs ratings
    (e.g. d = 2: valence, arousal), keys ``pearson_0``, ``spearman_0``, ..."""
    from scipy.stats import pearsonr, spearmanr

    pred = np.asarray(predicted, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    if pred.ndim == 1:
        pred, tgt = pred[:, None], tgt.reshape(-1, 1)
    if pred.shape != tgt.shape or pred.shape[0] < 2:
        raise InvalidInputError(f"need matching (n>=2, d) arrays, got {pred.shape}, {tgt.shape}")
    out: dict[str, float] = {}
    for d in range(pred.shape[1]):
        out[f"pearson_{d}"] = float(pearsonr(pred[:, d], tgt[:, d]).statistic)
        out[f"spearman_{d}"] = float(spearmanr(pred[:, d], tgt[:, d]).statistic)
    return out
