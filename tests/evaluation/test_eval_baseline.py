"""The bridge baseline: logistic regressions joined by a mapping, on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_report import make_gallery

from storycue.config import Settings
from storycue.data.mappings import MANUAL_MAPPING
from storycue.errors import InvalidInputError
from storycue.evaluation.baseline import (
    BridgeBaseline,
    evaluate_baseline,
    fit_classifier,
    score_baseline,
)
from storycue.evaluation.harness import QuerySet
from storycue.evaluation.metrics import retrieval_metrics

LABELS = ("anger", "joy", "sadness", "shame")
QUADS = ("Q1", "Q2", "Q3", "Q4")


def _data(
    classes: tuple[str, ...], n: int, d: int, rng: np.random.Generator, protos: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    k = np.arange(n) % len(classes)
    return protos[k] + rng.normal(size=(n, d)), [classes[i] for i in k]


@pytest.fixture(scope="module")
def baseline() -> BridgeBaseline:
    rng = np.random.default_rng(1)
    tp, mp = 3.0 * rng.normal(size=(4, 8)), 3.0 * rng.normal(size=(4, 5))
    xt, yt = _data(LABELS, 120, 8, rng, tp)
    xv, yv = _data(LABELS, 40, 8, rng, tp)
    mt, qt = _data(QUADS, 80, 5, rng, mp)
    mv, qv = _data(QUADS, 40, 5, rng, mp)
    return BridgeBaseline(
        text=fit_classifier(xt, yt, xv, yv, c_grid=(0.01, 1.0)),
        music=fit_classifier(mt, qt, mv, qv, c_grid=(0.01, 1.0)),
        audio_features=["features"],
    )


def test_classifiers_fit_and_choose_c(baseline: BridgeBaseline) -> None:
    assert baseline.text.classes == sorted(LABELS)
    assert baseline.music.classes == list(QUADS)
    assert baseline.text.c in (0.01, 1.0)
    assert set(baseline.text.validation_scores) == {0.01, 1.0}
    assert baseline.text.validation_accuracy > 0.9
    assert baseline.music.validation_balanced_accuracy > 0.9
    summary = baseline.summary()
    assert summary["music_classifier"]["classes"] == list(QUADS)


def test_score_is_mass_on_the_same_quadrant(baseline: BridgeBaseline) -> None:
    rng = np.random.default_rng(2)
    x_text, x_music = rng.normal(size=(6, 8)), rng.normal(size=(7, 5))
    mapping = {lab: MANUAL_MAPPING[lab] for lab in LABELS}
    scores = score_baseline(baseline, x_text, x_music, mapping)
    pt = baseline.text.predict_proba(x_text)
    pm = baseline.music.predict_proba(x_music)
    expected = np.zeros((6, 7))
    for i in range(6):
        for j in range(7):
            for li, lab in enumerate(baseline.text.classes):
                for qi, q in enumerate(baseline.music.classes):
                    if q in mapping[lab]:
                        expected[i, j] += pt[i, li] * pm[j, qi]
    np.testing.assert_allclose(scores, expected, rtol=1e-10)
    assert np.all((scores >= 0) & (scores <= 1 + 1e-12))
    # the same data give the same baseline
    np.testing.assert_allclose(pt.sum(axis=1), 1.0)


def test_missing_mapping_entry_is_an_error(baseline: BridgeBaseline) -> None:
    with pytest.raises(InvalidInputError, match="shame"):
        score_baseline(baseline, np.zeros((1, 8)), np.zeros((1, 5)), {"joy": frozenset({"Q1"})})
    with pytest.raises(InvalidInputError):
        baseline.text.predict_proba(np.zeros((2, 3)))


def test_fit_classifier_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        fit_classifier(np.zeros((4, 2)), ["a"] * 4, np.zeros((2, 2)), ["a", "a"])
    with pytest.raises(InvalidInputError):
        fit_classifier(np.zeros((4, 2)), ["a", "b"] * 2, np.zeros((2, 3)), ["a", "b"])


def test_evaluate_baseline_report(baseline: BridgeBaseline, tmp_path: object) -> None:
    rng = np.random.default_rng(3)
    # queries and clips drawn from the same prototypes as training: near-perfect retrieval
    tp_rng = np.random.default_rng(1)
    tp, mp = 3.0 * tp_rng.normal(size=(4, 8)), 3.0 * tp_rng.normal(size=(4, 5))
    xq, yq = _data(LABELS, 40, 8, rng, tp)
    gallery = make_gallery(40, rng, "toy")
    k = np.asarray([QUADS.index(q) for q in gallery.quadrants])
    gallery.features["features"] = (mp[k] + rng.normal(size=(40, 5))).astype(np.float32)
    report = evaluate_baseline(
        baseline,
        QuerySet("isear-test", [f"q{i}" for i in range(40)], yq),
        gallery,
        Settings(),
        text_encoder=None,
        mappings=("manual",),
        query_features=xq,
    )
    assert report["model"]["family"] == "bridge-baseline"
    assert report["mappings"]["manual"]["macro"]["p@5"] > 0.8
    assert report["diagnostics"]["text_accuracy"] > 0.9
    assert report["diagnostics"]["music_quadrant_accuracy"] > 0.9
    # consistent with scoring by hand through the shared metrics
    mapping = {lab: MANUAL_MAPPING[lab] for lab in LABELS}
    scores = score_baseline(baseline, xq, gallery.features["features"], mapping)
    direct = retrieval_metrics(scores, yq, gallery.quadrants, mapping)
    assert direct.macro["ap"] == pytest.approx(report["mappings"]["manual"]["macro"]["ap"])
