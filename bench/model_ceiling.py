"""How far can retrieval go on these features? Oracle analysis of the two sides.

Fits logistic-regression posteriors on the frozen, cached features (text: the text
encoder's mean-pooled ISEAR embeddings, 7 labels; music: a musicnn layer, 4 quadrants) on
the train parts, then scores ISEAR queries against 4Q clips of one split part with the
manual mapping of ``../shared/EVALUATION.md``, three ways: both sides as predicted, the
text side replaced by the true label ("perfect text"), and the music side replaced by the
true quadrant ("perfect music"). Writes ``bench/results/model_ceiling.json``.

    python bench/model_ceiling.py [--part validation] [--backbone MSD_musicnn]
        [--text-encoder NAME] [--out bench/results/model_ceiling.json]

``--text-encoder`` takes any encoder name, a fine-tuned one (``<base>+ft-<digest>``) too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from storycue.config import get_settings
from storycue.data.fourq import load_fourq
from storycue.data.isear import load_isear
from storycue.data.mappings import MANUAL_MAPPING
from storycue.data.splits import split_fourq
from storycue.evaluation.metrics import retrieval_metrics
from storycue.models.features import feature_cache_dir, fourq_features, text_features
from storycue.models.musicnn.backbone import load_backbone
from storycue.models.text import TextEncoder

QUADRANTS = ["Q1", "Q2", "Q3", "Q4"]
OUT = Path(__file__).resolve().parent / "results" / "model_ceiling.json"


def _macro(scores: np.ndarray, qlab: list[str], glab: list[str]) -> dict[str, Any]:
    r = retrieval_metrics(scores, qlab, glab, MANUAL_MAPPING)
    return {
        "macro": {k: round(r.macro[k], 4) for k in ("p@5", "mrr", "ap")},
        "per_label_p@5": {lab: round(v["p@5"], 4) for lab, v in r.per_label.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="validation", choices=["validation", "test"])
    ap.add_argument("--backbone", default="MSD_musicnn")
    ap.add_argument("--layer", default="penultimate")
    ap.add_argument("--text-encoder", default=None, help="default: STORYCUE_TEXT_ENCODER")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    s = get_settings()
    cache = feature_cache_dir(s)
    split = split_fourq(load_fourq(settings=s))
    audio = fourq_features(split, load_backbone(args.backbone), cache)
    enc = TextEncoder(args.text_encoder or s.text_encoder)

    def isear(part: str) -> tuple[np.ndarray, list[str]]:
        rs = load_isear(part, settings=s)  # type: ignore[arg-type]
        x = text_features(enc, [r.text for r in rs], cache, tag=f"isear-{part}")
        return x, [r.emotion for r in rs]

    xt, yt = isear("train")
    xq, yq = isear(args.part)
    labels = sorted(set(yt))
    text_clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.003, max_iter=3000))
    text_clf.fit(xt, yt)
    music_clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
    music_clf.fit(audio["train"][args.layer], [r.quadrant for r in split.part("train")])
    gal = [r.quadrant for r in split.part(args.part)]

    pt = text_clf.predict_proba(xq)
    pm = music_clf.predict_proba(audio[args.part][args.layer])
    assert list(text_clf.classes_) == labels and list(music_clf.classes_) == QUADRANTS
    w = np.array([[q in MANUAL_MAPPING[lab] for q in QUADRANTS] for lab in labels], float)
    true_t = np.eye(len(labels))[[labels.index(lab) for lab in yq]]
    true_m = np.eye(4)[[QUADRANTS.index(q) for q in gal]] * 0.9 + 0.025
    result = {
        "part": args.part,
        "backbone": f"{args.backbone}:{args.layer}",
        "text_encoder": enc.name,
        "text_accuracy": round(float(text_clf.score(xq, yq)), 4),
        "music_accuracy": round(float(music_clf.score(audio[args.part][args.layer], gal)), 4),
        "real_text_x_real_music": _macro(pt @ w @ pm.T, yq, gal),
        "perfect_text_x_real_music": _macro(true_t @ w @ pm.T, yq, gal),
        "real_text_x_perfect_music": _macro(pt @ w @ true_m.T, yq, gal),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
