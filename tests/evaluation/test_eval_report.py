"""Harness diagnostics on a hand-built model, and the Table-3 Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from storycue.config import Settings
from storycue.data.fourq import FourQRecord
from storycue.data.mappings import QUADRANT_VA_CENTRES
from storycue.errors import InvalidInputError
from storycue.evaluation.harness import Gallery, LabelledFeatures, QuerySet, evaluate
from storycue.evaluation.report import render_diagnostics, render_table
from storycue.models.emotion import EmotionModel
from storycue.models.heads import HeadConfig, MLPHead
from support.toys import toy_model

LABEL_QUADRANT = {"joy": "Q1", "anger": "Q2", "fear": "Q2", "sadness": "Q3"}
QUADS = ("Q1", "Q2", "Q3", "Q4")


class FakeEncoder:
    """A text 'encoder' that looks texts up in a table (no model download)."""

    name = "fake-encoder"
    pooling = "mean"

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def encode(self, texts: list[str], allow_truncation: bool = False) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def va_head(in_dim: int) -> MLPHead:
    """sigmoid(8 (x[:2] - 0.5)): the first two input features are valence and arousal."""
    head = MLPHead(HeadConfig(in_dim=in_dim, out_dim=2, hidden=[], dropout=0.0, output="sigmoid"))
    with torch.no_grad():
        lin = head.net[0]
        assert isinstance(lin, torch.nn.Linear)
        lin.weight.zero_()
        lin.weight[0, 0] = 8.0
        lin.weight[1, 1] = 8.0
        lin.bias.fill_(-4.0)
    return head.eval()


def va_model(d_text: int = 6, d_audio: int = 5) -> EmotionModel:
    text, audio = va_head(d_text), va_head(d_audio)
    heads = {"text": text, "audio": audio}
    return toy_model("toy-va", "va-regression", "euclid", 2, heads, va_axes=True)


def make_texts(
    n: int, rng: np.random.Generator, d: int = 6
) -> tuple[list[str], list[str], np.ndarray]:
    labels = [list(LABEL_QUADRANT)[i % 4] for i in range(n)]
    va = np.asarray([QUADRANT_VA_CENTRES[LABEL_QUADRANT[lab]] for lab in labels])
    feats = np.concatenate([va + 0.08 * rng.normal(size=(n, 2)), rng.normal(size=(n, d - 2))], 1)
    return [f"text {i} {rng.integers(1 << 30)}" for i in range(n)], labels, feats


def make_gallery(n: int, rng: np.random.Generator, name: str, d: int = 5) -> Gallery:
    quads = [QUADS[i % 4] for i in range(n)]
    va = np.asarray([QUADRANT_VA_CENTRES[q] for q in quads])
    feats = np.concatenate([va + 0.08 * rng.normal(size=(n, 2)), rng.normal(size=(n, d - 2))], 1)
    records = [
        FourQRecord(
            song_id=f"{name}-{i}",
            artist=f"artist {i}",
            title=f"clip {i}",
            quadrant=q,
            moods=("happy", "bright") if q == "Q1" else ("sad", q.lower()),
            genres=(),
            audio_path=Path(f"/nonexistent/{name}-{i}.mp3"),
        )
        for i, q in enumerate(quads)
    ]
    return Gallery(name, records, {"features": feats.astype(np.float32)})


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    texts, labels, feats = make_texts(80, rng)
    _, ref_labels, ref_feats = make_texts(120, rng)
    model = va_model()
    model.use_text_encoder(FakeEncoder(dict(zip(texts, feats, strict=True))))
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    emobank_va = rng.uniform(0, 1, size=(50, 2))
    emobank = LabelledFeatures(
        "emobank-toy",
        np.concatenate([emobank_va, rng.normal(size=(50, 4))], 1),
        [""] * 50,
        va=emobank_va,
    )
    return evaluate(
        model,
        QuerySet("isear-test", texts, labels),
        make_gallery(40, rng, "toy-gallery"),
        settings,
        mappings=("manual",),
        text_reference=LabelledFeatures("toy-train", ref_feats, ref_labels),
        music_reference=make_gallery(60, rng, "toy-train"),
        emobank_reference=emobank,
    )


def test_harness_diagnostics_on_a_va_model(toy_report: dict[str, Any]) -> None:
    diag = toy_report["diagnostics"]
    # anger and fear share a VA point, so at best half of them are told apart
    assert 0.6 <= diag["text_accuracy"] <= 0.9
    assert diag["text_accuracy"] == diag["text_accuracy_prototype"]
    assert diag["music_quadrant_accuracy"] > 0.9
    assert diag["music_quadrant_accuracy_va_rule"] > 0.9
    assert diag["text_quadrant_agreement_manual"] > 0.9
    assert diag["emobank_valence_pearson"] > 0.9
    assert diag["emobank_arousal_spearman"] > 0.9
    assert "prototype" in toy_report["diagnostics_notes"]["text_accuracy"]
    assert toy_report["mappings"]["manual"]["macro"]["p@5"] > 0.9


def _fake(name: str, family: str, qs: str, value: float, sha: str = "ab" * 32) -> dict[str, Any]:
    macro = {"p@5": value, "p@10": value, "mrr": value, "ap": value, "r_precision": value}
    return {
        "model": {"name": name, "version": "1.0.0", "family": family, "checkpoint_sha256": sha},
        "queries": {"name": qs, "count": 10},
        "gallery": {
            "name": "4q-test",
            "count": 108,
            "quadrants": {"Q1": 27, "Q2": 27, "Q3": 27, "Q4": 27},
            "info": {"source": "4Q", "part": "test", "split_seed": 1, "split_fingerprint": "ff"},
        },
        "mappings": {m: {"macro": macro} for m in ("manual", "va", "word")},
        "diagnostics": {"text_accuracy": 0.5, "music_quadrant_accuracy": 0.6},
    }


def test_render_table_layout(toy_report: dict[str, Any]) -> None:
    results = [
        _fake("bridge-baseline", "bridge-baseline", "isear-test", 0.7, sha=""),
        _fake("va-regression", "va-regression", "isear-test", 0.5),
        _fake("va-regression", "va-regression", "goemotions-test", 0.4),
        _fake("m3", "metric-3branch", "isear-test", 0.8),
    ]
    md = render_table(results, command="storycue evaluate --models va-regression,m3")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert header.count("|") == 2 + 2 * 3 * 3  # model + query sets x mappings x metrics
    assert "isear-test manual P@5" in header and "goemotions-test word mAP" in header
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    body = rows[1:4]
    assert body[0].startswith("| va-regression 1.0.0")
    assert body[1].startswith("| metric-3branch (m3 1.0.0)")
    assert body[2].startswith("| bridge baseline")  # the baseline row comes last
    assert "**0.800**" in body[1] and "–" in body[1]  # best in bold; missing cells dashed
    assert "108 clips" in md and "`ff`" in md and "sha256 `abababababab`" in md
    assert "storycue evaluate --models va-regression,m3" in md
    assert "#### Diagnostics" in md
    # a real harness report renders too
    assert "toy-va 0.1.0" in render_table([toy_report])


def test_render_rejects_empty_input() -> None:
    with pytest.raises(InvalidInputError):
        render_table([])
    with pytest.raises(InvalidInputError):
        render_diagnostics([])


def _reading(model: str, v: float) -> dict[str, object]:
    stats = {"n": 40, "valence_pearson": v, "arousal_pearson": v / 2,
             "valence_spearman": v, "arousal_spearman": v / 2}  # fmt: skip
    sets = {
        k: dict(stats) for k in ("sentences", "fiction", "fiction-scenes-3", "fiction-scenes-6")
    }
    return {
        "part": "test",
        "sets": {k: {"count": 40, "description": k} for k in sets},
        "rows": {
            "model": {"name": model, "available": True, "sets": sets},
            "probe": {"name": "ridge probe on frozen m", "available": True,
                      "sets": {k: dict(stats, valence_pearson=0.5) for k in sets}},
        },
        "probe": {"encoder": "m", "alpha": 1.0, "alpha_chosen_on": "EmoBank dev",
                  "trained_on": "EmoBank train (10 sentences)"},
    }  # fmt: skip


def test_reading_section_lists_models_then_one_probe_and_explains_missing_axes() -> None:
    from storycue.evaluation.report import render_reading, render_reading_table

    a = _fake("va-regression", "va-regression", "isear-test", 0.5)
    a["continuous"] = _reading("va-regression 1.0.0", 0.7)
    a["matching"] = {
        "available": True,
        "emobank": {
            "within_quadrant_spearman": 0.2,
            "within_quadrant_spearman_gentle": 0.3,
            "within_quadrant_spearman_strong": 0.1,
            "high_arousal_top5_q12": 0.9,
            "high_arousal_queries": 4,
            "low_arousal_top5_q34": 0.8,
            "low_arousal_queries": 3,
        },
    }
    b = _fake("m3", "metric-2branch", "isear-test", 0.4)
    b["continuous"] = _reading("m3 1.0.0", 0.0)
    b["continuous"]["rows"]["model"] = {  # type: ignore[index]
        "name": "m3 1.0.0", "available": False, "reason": "no valence-arousal axes"}  # fmt: skip
    md = render_reading_table([a, b])
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "model |" not in ln]
    assert [r.split(" | ")[0] for r in rows[:3]] == [
        "| va-regression 1.0.0", "| m3 1.0.0", "| ridge probe on frozen m (baseline)"]  # fmt: skip
    assert "0.700" in rows[0] and rows[1].count("–") == 16
    assert "m3 1.0.0: no valence-arousal axes." in md
    assert "0.200 (0.300 / 0.100)" in md and "0.900 (4)" in md
    text = render_reading(a)
    assert "valence r 0.700" in text and "within-quadrant ρ 0.200 (gentle 0.300" in text
    assert "#### Reading prose" in render_table([a, b])
