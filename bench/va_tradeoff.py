"""The trade-off between reading prose and the label proxy, on validation parts only.

One text encoder, one head recipe, one knob: how much EmoBank's rated prose weighs against the
labelled texts (ISEAR, GoEmotions placed at their label words' NRC positions) in the VA text
head's loss, from mostly labels to prose alone. Each point is a head trained on the same feature
bank (built once) and scored by ``va_validation.score_checkpoint`` (ISEAR and GoEmotions
validation -> the 108 4Q validation clips; EmoBank dev): the rows go to
``bench/results/va_validation.json`` (label ``trade-off ...``) and the curve to
``docs/figures/va-tradeoff.png``. Never reads a test part.

    python bench/va_tradeoff.py [--text-encoder NAME] [--weights 0.5,2,8,32,prose] [--seed 0]
    python bench/va_tradeoff.py --plot-only     # redraw the figure from the stored rows
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from _harness import REPO_ROOT, scratch_dir
from storycue.config import get_settings
from storycue.log import configure_logging
from storycue.models.features import feature_cache_dir
from storycue.training.families import build_feature_bank, get_family
from storycue.training.run import TrainOptions, training_backbone, training_encoder
from va_validation import load_rows, rule_score, score_checkpoint, store_row

FIGURE = REPO_ROOT / "docs" / "figures" / "va-tradeoff.png"
SHIPPED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2+ft-f5bcab0d07"
LABEL = "trade-off"


def point_label(weight: str, encoder: str, seed: int) -> str:
    tag = encoder.split("+")[-1]
    return f"{LABEL}: EmoBank weight {weight}, stretch 3, encoder {tag}, seed {seed}"


def train_points(encoder: str, weights: list[str], seed: int) -> list[dict[str, Any]]:
    settings = get_settings()
    options = TrainOptions(family="va-regression", text_encoder=encoder)
    bank = build_feature_bank(
        settings,
        training_encoder(settings, options),
        training_backbone(settings, options),
        feature_cache_dir(settings),
        text_parts=("train", "validation"),
    )
    fam = get_family("va-regression")
    rows: list[dict[str, Any]] = []
    doc = load_rows()
    with scratch_dir() as tmp:
        for w in weights:
            cfg = replace(fam.default_config(), version="0.0.0", seed=seed, emobank_stretch=3.0)
            if w == "prose":  # EmoBank's rated sentences alone: no labelled text at all
                cfg = replace(cfg, text_sources=["emobank"], emobank_weight=1.0)
            else:
                cfg = replace(cfg, emobank_weight=float(w))
            path = Path(tmp) / f"tradeoff-{w}.safetensors"
            fam.train(bank, cfg).save(path)
            row = score_checkpoint(str(path))
            row["emobank_weight"] = w
            store_row(doc, row, point_label(w, encoder, seed))
            rows.append(row)
            print(f"weight {w}: rule score {rule_score(row):.3f}", file=sys.stderr)
    return rows


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def key(r: dict[str, Any]) -> float:
        w = r["emobank_weight"]
        return float("inf") if w == "prose" else float(w)

    rows = sorted(rows, key=key)
    names = [
        "prose only" if r["emobank_weight"] == "prose" else f"w={r['emobank_weight']}" for r in rows
    ]
    read = [r["reading"]["model"] for r in rows]
    series_read = {
        "EmoBank dev valence r": [x["sentences"]["valence_pearson"] for x in read],
        "EmoBank dev arousal r": [x["sentences"]["arousal_pearson"] for x in read],
        "fiction valence r": [x["fiction"]["valence_pearson"] for x in read],
        "6-sentence scenes valence ρ": [x["fiction-scenes-6"]["valence_spearman"] for x in read],
        "calm sentences' top-5 in Q3/Q4": [
            r["matching"]["sentences"]["low_arousal_top5_q34"] for r in rows
        ],
    }
    series_ret = {
        "ISEAR P@5": [r["isear-validation"]["p@5"] for r in rows],
        "ISEAR MRR": [r["isear-validation"]["mrr"] for r in rows],
        "ISEAR mAP": [r["isear-validation"]["ap"] for r in rows],
        "GoEmotions P@5": [r["goemotions-validation"]["p@5"] for r in rows],
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    xs = range(len(rows))
    for name, ys in series_read.items():
        axes[0].plot(xs, ys, marker="o", label=name)
    for name, ys in series_ret.items():
        axes[1].plot(xs, ys, marker="o", label=name)
    axes[0].set_title("reading prose (EmoBank dev; calm prose → calm music)")
    axes[1].set_title("label proxy (validation queries → 4Q validation clips, manual)")
    for ax in axes:
        ax.set_xticks(list(xs), names)
        ax.set_xlabel("weight of EmoBank's rated sentences against the labelled texts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    enc = rows[0]["text_encoder"].split("+")[-1] if rows else ""
    fig.suptitle(
        f"One VA head, one knob: prose against the labels (encoder {enc}, validation only)"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def stored_rows(encoder: str) -> list[dict[str, Any]]:
    tag = encoder.split("+")[-1]
    rows = [
        r
        for r in load_rows()["rows"]
        if r.get("label", "").startswith(LABEL) and r["text_encoder"].endswith(tag)
    ]
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:  # the newest row of each weight
        latest[r["emobank_weight"]] = r
    return list(latest.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--text-encoder", default=SHIPPED_ENCODER)
    ap.add_argument("--weights", default="0.5,2,8,32,prose", help="EmoBank weights, or prose")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args()
    configure_logging("WARNING")
    if not args.plot_only:
        weights = [w.strip() for w in args.weights.split(",") if w.strip()]
        train_points(args.text_encoder, weights, args.seed)
    plot(stored_rows(args.text_encoder), args.figure)
    print(f"wrote {args.figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
