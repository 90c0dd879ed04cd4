"""The bridge baseline of ``EVALUATION.md``: two logistic regressions joined by a mapping.

Every results table carries this row; a family that does not beat it is not useful.

* **Text classifier** — multinomial logistic regression on the frozen text-encoder
  features (all-MiniLM-L6-v2, standardised) of the query set's *own* training split: ISEAR
  train for ISEAR queries, GoEmotions train (single-label Ekman rows) for GoEmotions
  queries. It gives ``P_text(l | query)`` over the dataset's labels ``l``.
* **Music classifier** — multinomial logistic regression on the frozen backbone features
  (musicnn ``penultimate`` by default, standardised) of the 4Q train clips. It gives
  ``P_music(q | track)`` over the quadrants ``q``.
* **Score** — for a text-label -> quadrants mapping ``m``::

      score(query, track) = sum_l P_text(l | query) * sum_{q in m(l)} P_music(q | track)

  i.e. the probability mass the two classifiers put on the same quadrant under the
  mapping: the probability that the track is relevant to the query when the two posteriors
  are taken as independent (a label mapped to two quadrants, such as *shame*, counts the
  music mass on both). Higher is better; ties are broken by gallery order as for every
  model, so the score plugs into :func:`storycue.evaluation.metrics.retrieval_metrics` for
  any mapping.

Each classifier's inverse regularisation ``C`` is chosen from :data:`DEFAULT_C_GRID` by the
class-balanced log loss (each class weighing the same, matching the macro averaging of the
retrieval metrics) on the matching validation split (ISEAR / GoEmotions validation, 4Q
validation); ties go to the smaller ``C``. Log loss rather than accuracy because the score
multiplies probabilities, so their calibration matters (on the 108 4Q validation clips,
accuracy is also too coarse to choose ``C`` reliably). Classes are weighted ``"balanced"``
by default, so a frequent label (GoEmotions' *joy*) does not dominate every query's quadrant
mass. The lbfgs solver is deterministic: the same data give the same baseline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from storycue.config import Settings
from storycue.data.fourq import QUADRANTS
from storycue.errors import InvalidInputError
from storycue.evaluation.harness import (
    MAPPINGS,
    Gallery,
    MappingName,
    QuerySet,
    build_mapping,
    fourq_gallery,
    gallery_summary,
    query_dataset,
    query_training_texts,
)
from storycue.evaluation.metrics import (
    argmax_labels,
    balanced_accuracy,
    classification_accuracy,
    retrieval_metrics,
)
from storycue.log import get_logger

log = get_logger(__name__)

#: Inverse regularisation strengths tried for each classifier.
DEFAULT_C_GRID: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 1.0)
#: Backbone feature keys the music classifier reads by default.
DEFAULT_BASELINE_AUDIO_FEATURES: tuple[str, ...] = ("penultimate",)
#: Name and version of the baseline in reports (bump the version when the recipe changes).
BASELINE_NAME = "bridge-baseline"
BASELINE_VERSION = "1.0.0"

ClassWeight = Literal["balanced"] | None


@dataclass
class ClassifierFit:
    """One fitted logistic regression (scaler + model) with how its ``C`` was chosen."""

    classes: list[str]
    pipeline: Any  # sklearn Pipeline(StandardScaler, LogisticRegression)
    c: float
    #: Class-balanced validation log loss of each ``C`` tried (lower is better).
    validation_scores: dict[float, float]
    validation_accuracy: float
    validation_balanced_accuracy: float
    n_train: int

    def predict_proba(self, features: npt.ArrayLike) -> np.ndarray:
        """``(N, len(classes))`` class probabilities, columns in :attr:`classes` order."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise InvalidInputError(f"features must be 2-D, got shape {x.shape}")
        expected = int(self.pipeline.n_features_in_)
        if x.shape[1] != expected:
            raise InvalidInputError(
                f"features have {x.shape[1]} columns; the classifier expects {expected}"
            )
        probs = np.asarray(self.pipeline.predict_proba(x), np.float64)
        order = [list(self.pipeline.classes_).index(c) for c in self.classes]
        out: np.ndarray = probs[:, order]
        return out

    def predict(self, features: npt.ArrayLike) -> list[str]:
        """The most probable class of each row."""
        return argmax_labels(self.predict_proba(features), self.classes)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no weights)."""
        return {
            "classes": list(self.classes),
            "C": self.c,
            "validation_log_loss_by_C": {str(k): v for k, v in self.validation_scores.items()},
            "validation_accuracy": self.validation_accuracy,
            "validation_balanced_accuracy": self.validation_balanced_accuracy,
            "n_train": self.n_train,
        }


def fit_classifier(
    x_train: npt.ArrayLike,
    y_train: Sequence[str],
    x_val: npt.ArrayLike,
    y_val: Sequence[str],
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    class_weight: ClassWeight = "balanced",
    max_iter: int = 2000,
) -> ClassifierFit:
    """Standardise + multinomial logistic regression, ``C`` chosen on the validation data
    by class-balanced log loss (ties to the smaller ``C``); the chosen fit is kept as is."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt = np.asarray(x_train, np.float64)
    xv = np.asarray(x_val, np.float64)
    if xt.ndim != 2 or xt.shape[0] != len(y_train) or xt.shape[0] == 0:
        raise InvalidInputError(f"{len(y_train)} training labels for features {xt.shape}")
    if xv.ndim != 2 or xv.shape[0] != len(y_val) or xv.shape[0] == 0:
        raise InvalidInputError(f"{len(y_val)} validation labels for features {xv.shape}")
    if xv.shape[1] != xt.shape[1]:
        raise InvalidInputError("training and validation features differ in width")
    classes = sorted(set(y_train))
    if len(classes) < 2:
        raise InvalidInputError(f"a classifier needs at least two classes, got {classes}")
    if not c_grid:
        raise InvalidInputError("the C grid is empty")
    yv = np.asarray(list(y_val), dtype=object)
    unseen = sorted(set(yv.tolist()) - set(classes))
    if unseen:
        raise InvalidInputError(f"validation labels {unseen} are not in the training labels")
    counts = {c: int((yv == c).sum()) for c in set(yv.tolist())}
    weights = np.asarray([len(yv) / (len(counts) * counts[c]) for c in yv], np.float64)
    best: tuple[float, float, Any] | None = None  # (log loss, C, pipeline)
    scores: dict[float, float] = {}
    for c in sorted(float(v) for v in c_grid):
        pipe = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, random_state=0),
        )
        pipe.fit(xt, np.asarray(list(y_train), dtype=object))
        loss = float(
            log_loss(yv, pipe.predict_proba(xv), sample_weight=weights, labels=pipe.classes_)
        )
        scores[c] = loss
        if best is None or loss < best[0]:
            best = (loss, c, pipe)
    assert best is not None
    pipe = best[2]
    pred = [str(p) for p in pipe.predict(xv)]
    return ClassifierFit(
        classes=classes,
        pipeline=pipe,
        c=best[1],
        validation_scores=scores,
        validation_accuracy=classification_accuracy(list(y_val), pred),
        validation_balanced_accuracy=balanced_accuracy(list(y_val), pred),
        n_train=int(xt.shape[0]),
    )


@dataclass
class BridgeBaseline:
    """A text classifier and a music quadrant classifier joined by a label mapping."""

    text: ClassifierFit
    music: ClassifierFit
    audio_features: list[str]
    text_encoder: str = ""
    audio_backbone: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [q for q in self.music.classes if q not in QUADRANTS]
        if unknown:
            raise InvalidInputError(f"music classes {unknown} are not 4Q quadrants")

    def quadrant_mass(self, mapping: dict[str, frozenset[str]]) -> np.ndarray:
        """``M[l, q] = 1`` when the music class ``q`` is relevant to text label ``l``."""
        missing = [lab for lab in self.text.classes if lab not in mapping]
        if missing:
            raise InvalidInputError(f"the mapping has no entry for text label(s) {missing}")
        return np.asarray(
            [[q in mapping[lab] for q in self.music.classes] for lab in self.text.classes],
            np.float64,
        )

    def audio_input(self, gallery: Gallery) -> np.ndarray:
        """The music classifier's input for every gallery clip."""
        missing = [k for k in self.audio_features if k not in gallery.features]
        if missing:
            raise InvalidInputError(f"gallery {gallery.name} lacks backbone feature(s) {missing}")
        return np.concatenate([gallery.features[k] for k in self.audio_features], axis=1)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of both classifiers."""
        return {
            "text_classifier": self.text.summary(),
            "music_classifier": self.music.summary(),
            "audio_features": list(self.audio_features),
            "text_encoder": self.text_encoder,
            "audio_backbone": self.audio_backbone,
            **self.info,
        }


def score_baseline(
    baseline: BridgeBaseline,
    text_features: npt.ArrayLike,
    audio_features: npt.ArrayLike,
    mapping: dict[str, frozenset[str]],
) -> np.ndarray:
    """``scores[i, j]`` = probability mass the two classifiers put on the same quadrant
    under ``mapping`` (module docstring); ``(n_queries, n_tracks)``, higher is better."""
    p_text = baseline.text.predict_proba(text_features)
    p_music = baseline.music.predict_proba(audio_features)
    scores: np.ndarray = p_text @ baseline.quadrant_mass(mapping) @ p_music.T
    return scores


def fit_bridge_baseline(
    settings: Settings,
    queries_name: str,
    backbone: Any,
    *,
    text_encoder: Any = None,
    audio_features: Sequence[str] = DEFAULT_BASELINE_AUDIO_FEATURES,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    class_weight: ClassWeight = "balanced",
) -> BridgeBaseline:
    """Fit the baseline for a query set (``isear-*`` or ``goemotions-*``) on the real data.

    Text: the dataset's train split, ``C`` chosen on its validation split (features from
    the shared ``va-train`` / ``va-validation`` caches). Music: the 4Q train part of
    storycue's split, ``C`` chosen on the validation part (features from the 4Q cache of
    ``backbone``). ``text_encoder`` defaults to ``settings.text_encoder`` (only loaded when
    a cache is missing).
    """
    if text_encoder is None:
        from storycue.models.text import TextEncoder

        text_encoder = TextEncoder(
            settings.text_encoder,
            device=settings.torch_device(),
            batch_size=settings.batch.text,
            max_tokens=settings.text_max_tokens,
        )
    dataset = query_dataset(queries_name)
    tr = query_training_texts(queries_name, settings, text_encoder, "train")
    va = query_training_texts(queries_name, settings, text_encoder, "validation")
    text_fit = fit_classifier(
        tr.features, tr.labels, va.features, va.labels, c_grid=c_grid, class_weight=class_weight
    )
    keys = list(audio_features)
    mtr = fourq_gallery("train", backbone, settings)
    mva = fourq_gallery("validation", backbone, settings)
    xs, ys = [], []
    for gal in (mtr, mva):
        missing = [k for k in keys if k not in gal.features]
        if missing:
            raise InvalidInputError(f"backbone features lack {missing}")
        x = np.concatenate([gal.features[k] for k in keys], axis=1)
        ok = ~np.isnan(x).any(axis=1)
        xs.append(x[ok])
        ys.append([qd for qd, good in zip(gal.quadrants, ok, strict=True) if good])
    music_fit = fit_classifier(xs[0], ys[0], xs[1], ys[1], c_grid=c_grid, class_weight=class_weight)
    baseline = BridgeBaseline(
        text=text_fit,
        music=music_fit,
        audio_features=keys,
        text_encoder=str(text_encoder.name),
        audio_backbone=f"{backbone.name}@{backbone.version}",
        info={
            "text_data": f"{dataset} train ({len(tr.labels)}), C on {dataset} validation "
            f"({len(va.labels)})",
            "music_data": f"4Q train ({len(ys[0])} clips), C on 4Q validation ({len(ys[1])})",
            "music_split": mtr.info,
            "class_weight": class_weight,
        },
    )
    log.info(
        "bridge_baseline_fitted",
        dataset=dataset,
        text_C=text_fit.c,
        text_val_acc=round(text_fit.validation_accuracy, 4),
        music_C=music_fit.c,
        music_val_acc=round(music_fit.validation_accuracy, 4),
    )
    return baseline


def evaluate_baseline(
    baseline: BridgeBaseline,
    queries: QuerySet,
    gallery: Gallery,
    settings: Settings,
    *,
    text_encoder: Any,
    mappings: Sequence[MappingName] = MAPPINGS,
    query_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score the baseline on ``queries`` against ``gallery``: a report shaped like
    :func:`storycue.evaluation.harness.evaluate`'s, its diagnostics being the two
    classifiers' accuracies on the queries and on the gallery.

    ``query_features`` (text-encoder features of the queries) skip the feature cache.
    """
    from storycue.models.features import feature_cache_dir, text_features

    if query_features is None:
        query_features = text_features(
            text_encoder, queries.texts, feature_cache_dir(settings), tag=f"queries-{queries.name}"
        )
    audio_in = baseline.audio_input(gallery)
    labels = sorted(set(queries.labels) | set(baseline.text.classes))
    report: dict[str, Any] = {
        "model": {
            "name": BASELINE_NAME,
            "version": BASELINE_VERSION,
            "dim": len(baseline.music.classes),
            "family": BASELINE_NAME,
            "distance": "probability",
            "checkpoint_sha256": "",
            "details": baseline.summary(),
        },
        "queries": {"name": queries.name, "count": len(queries.texts)},
        "gallery": gallery_summary(gallery),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mappings": {},
    }
    for name in mappings:
        mapping = build_mapping(name, labels, None, settings, text_encoder=text_encoder)
        scores = score_baseline(baseline, query_features, audio_in, mapping)
        result = retrieval_metrics(scores, queries.labels, gallery.quadrants, mapping)
        report["mappings"][name] = {
            "mapping": {k: sorted(v) for k, v in mapping.items()},
            **result.to_dict(),
        }
    text_pred = baseline.text.predict(query_features)
    music_pred = baseline.music.predict(audio_in)
    report["diagnostics"] = {
        "text_accuracy": classification_accuracy(queries.labels, text_pred),
        "text_balanced_accuracy": balanced_accuracy(queries.labels, text_pred),
        "music_quadrant_accuracy": classification_accuracy(gallery.quadrants, music_pred),
        "music_balanced_accuracy": balanced_accuracy(gallery.quadrants, music_pred),
    }
    report["diagnostics_notes"] = {
        "text_accuracy": f"text logistic regression ({baseline.info.get('text_data', '')})",
        "music_quadrant_accuracy": "music logistic regression "
        f"({baseline.info.get('music_data', '')})",
    }
    return report
