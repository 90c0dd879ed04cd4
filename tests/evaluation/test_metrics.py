from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from storycue.errors import InvalidInputError
from storycue.evaluation.metrics import (
    argmax_labels,
    balanced_accuracy,
    classification_accuracy,
    per_class_accuracy,
    ranked_relevance,
    relevance_matrix,
    retrieval_metrics,
    va_correlations,
)

MAP = {"joy": frozenset({"Q1"}), "sad": frozenset({"Q3"}), "shame": frozenset({"Q2", "Q3"})}


def test_hand_computed_single_query() -> None:
    gallery = ["Q1", "Q3", "Q1", "Q2", "Q1", "Q4"]
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    res = retrieval_metrics(scores, ["sad"], gallery, MAP, ks=(1, 3))
    # ranking = gallery order; one relevant track (Q3) at rank 2
    assert res.per_query["p@1"][0] == 0.0
    assert res.per_query["p@3"][0] == pytest.approx(1 / 3)
    assert res.per_query["mrr"][0] == 0.5
    assert res.per_query["ap"][0] == 0.5
    assert res.per_query["r_precision"][0] == 0.0
    joy = retrieval_metrics(scores, ["joy"], gallery, MAP, ks=(5,))
    # relevant at ranks 1, 3, 5: AP = (1 + 2/3 + 3/5) / 3; R = 3, top-3 has 2 relevant
    assert joy.per_query["ap"][0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert joy.per_query["p@5"][0] == pytest.approx(3 / 5)
    assert joy.per_query["r_precision"][0] == pytest.approx(2 / 3)
    assert joy.per_query["mrr"][0] == 1.0


def test_ties_broken_by_gallery_index() -> None:
    gallery = ["Q3", "Q1", "Q1", "Q3"]
    scores = np.zeros((1, 4))  # all tied: ranking is the gallery order
    res = retrieval_metrics(scores, ["joy"], gallery, MAP, ks=(1, 2))
    assert res.per_query["mrr"][0] == 0.5
    assert res.per_query["ap"][0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert res.per_query["p@1"][0] == 0.0
    # a partial tie: the later index loses among equals
    scores2 = np.array([[1.0, 0.5, 1.0, 0.5]])
    ranked = ranked_relevance(scores2, [[False, True, True, False]])
    assert ranked.tolist() == [[False, True, True, False]]  # order 0, 2, 1, 3


def test_distances_lower_is_better() -> None:
    gallery = ["Q1", "Q3", "Q1"]
    dist = np.array([[3.0, 1.0, 2.0]])
    sim = -dist
    a = retrieval_metrics(dist, ["sad"], gallery, MAP, higher_is_better=False)
    b = retrieval_metrics(sim, ["sad"], gallery, MAP)
    assert a.per_query["mrr"][0] == b.per_query["mrr"][0] == 1.0
    assert a.to_dict() == b.to_dict()


def test_no_relevant_and_all_relevant() -> None:
    gallery = ["Q1", "Q1", "Q1"]
    scores = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    res = retrieval_metrics(scores, ["sad", "joy"], gallery, MAP, ks=(5, 10))
    for m in res.metric_names:
        assert res.per_query[m][0] == 0.0  # nothing relevant
        assert res.per_query[m][1] == 1.0  # everything relevant (k capped at gallery size)
    assert res.n_relevant.tolist() == [0, 3]


def test_macro_vs_micro() -> None:
    gallery = ["Q1", "Q3"]
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = ["joy", "joy", "joy", "sad"]
    res = retrieval_metrics(scores, labels, gallery, MAP, ks=(1,))
    assert res.per_label["joy"]["p@1"] == 1.0
    assert res.per_label["sad"]["p@1"] == 1.0
    scores[3] = [1.0, 0.0]  # the sad query now fails
    res = retrieval_metrics(scores, labels, gallery, MAP, ks=(1,))
    assert res.macro["p@1"] == pytest.approx(0.5)
    assert res.micro["p@1"] == pytest.approx(0.75)
    assert res.macro["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert res.label_counts == {"joy": 3, "sad": 1}


def test_multi_quadrant_mapping() -> None:
    rel = relevance_matrix(["shame", "joy"], ["Q1", "Q2", "Q3", "Q4"], MAP)
    assert rel.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_ap_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    quadrants = ["Q1", "Q2", "Q3", "Q4"]
    gallery = [quadrants[i] for i in rng.integers(0, 4, size=60)]
    labels = [["joy", "sad", "shame"][i] for i in rng.integers(0, 3, size=40)]
    scores = rng.normal(size=(40, 60))
    res = retrieval_metrics(scores, labels, gallery, MAP)
    rel = relevance_matrix(labels, gallery, MAP)
    expected = [average_precision_score(rel[i], scores[i]) for i in range(40)]
    np.testing.assert_allclose(res.per_query["ap"], expected, rtol=1e-12)
    # R-precision and P@10 agree with a direct loop
    for i in range(40):
        order = np.argsort(-scores[i], kind="stable")
        r = int(rel[i].sum())
        assert res.per_query["r_precision"][i] == pytest.approx(rel[i][order][:r].mean())
        assert res.per_query["p@10"][i] == pytest.approx(rel[i][order][:10].mean())


def test_to_dict_is_json() -> None:
    res = retrieval_metrics(np.eye(2), ["joy", "sad"], ["Q1", "Q3"], MAP)
    data = res.to_dict(include_per_query=True)
    text = json.dumps(data)
    assert json.loads(text)["macro"]["mrr"] == 1.0
    # one relevant track of two: P@k (k capped at the gallery size) is 1/2, the rest 1
    assert data["per_query"] == {
        m: [0.5, 0.5] if m.startswith("p@") else [1.0, 1.0] for m in res.metric_names
    }
    assert set(res.to_dict()) == {
        "metrics", "n_queries", "n_gallery", "label_counts", "macro", "micro", "per_label"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("scores", "qlabels", "glabels", "message"),
    [
        (np.zeros((1, 2)), ["joy"], ["Q1"], "does not match"),
        (np.zeros(2), ["joy"], ["Q1", "Q2"], "2-D"),
        (np.array([[np.nan, 1.0]]), ["joy"], ["Q1", "Q2"], "NaN"),
        (np.zeros((1, 2)), ["boredom"], ["Q1", "Q2"], "no entry"),
        (np.zeros((0, 2)), [], ["Q1", "Q2"], "at least one"),
    ],
)
def test_retrieval_metrics_bad_input(
    scores: np.ndarray, qlabels: list[str], glabels: list[str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        retrieval_metrics(scores, qlabels, glabels, MAP)


def test_bad_k() -> None:
    with pytest.raises(InvalidInputError, match="cut-off"):
        retrieval_metrics(np.eye(2), ["joy", "sad"], ["Q1", "Q3"], MAP, ks=(0,))


def test_classification_helpers() -> None:
    true = ["a", "a", "a", "b"]
    pred = ["a", "a", "b", "a"]
    assert classification_accuracy(true, pred) == 0.5
    assert per_class_accuracy(true, pred) == {"a": pytest.approx(2 / 3), "b": 0.0}
    assert balanced_accuracy(true, pred) == pytest.approx(1 / 3)
    assert argmax_labels([[0.2, 0.8], [0.5, 0.5]], ["x", "y"]) == ["y", "x"]
    with pytest.raises(InvalidInputError):
        classification_accuracy(["a"], ["a", "b"])
    with pytest.raises(InvalidInputError):
        classification_accuracy([], [])
    with pytest.raises(InvalidInputError):
        argmax_labels([[0.2, 0.8]], ["x"])


def test_va_correlations() -> None:
    x = np.array([[0.1, 0.9], [0.2, 0.5], [0.3, 0.1], [0.4, 0.2]])
    out = va_correlations(x, x * 2 + 1)
    assert out["pearson_0"] == pytest.approx(1.0)
    assert out["spearman_1"] == pytest.approx(1.0)
    assert va_correlations([1, 2, 3], [3, 2, 1])["spearman_0"] == pytest.approx(-1.0)
    with pytest.raises(InvalidInputError):
        va_correlations([1.0], [1.0])
