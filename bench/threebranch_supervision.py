"""How clean is the supervision of the two metric-learning families on 4Q?

Three-branch metric learning (paper section 3.5) ties text labels to music through a third
vocabulary: a text label's positive clips are those carrying one of its ``k`` nearest
AllMusic tags in the word space, and an AllMusic tag anchors the texts of its nearest text
label. Two-branch ties a label to the clips of its word-mapped quadrant. This script asks,
for the 4Q *train* clips, how many of each family's positive clips lie in the quadrants the
label maps to under the fixed manual mapping of ``../shared/EVALUATION.md`` (the relation
retrieval is scored by), and how many clips each label gets. No training: only the
relations the families build (:class:`storycue.training.families.metric.Relations`).
Writes ``bench/results/threebranch_supervision.json``.

    python bench/threebranch_supervision.py [--text-encoder NAME] [--k 1,3,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from storycue.config import get_settings
from storycue.data.mappings import MANUAL_MAPPING
from storycue.models.features import feature_cache_dir
from storycue.models.musicnn import load_backbone
from storycue.models.text import TextEncoder
from storycue.training.families import build_feature_bank, get_family
from storycue.training.families.metric import Relations

OUT = Path(__file__).resolve().parent / "results" / "threebranch_supervision.json"


def relation_quality(rel: Relations, quads: np.ndarray) -> dict[str, Any]:
    prec: dict[str, float] = {}
    share: dict[str, float] = {}
    for lab in rel.labels:
        pos = rel.word_clip[rel.words.index(lab)]
        good = np.isin(quads, sorted(MANUAL_MAPPING[lab]))
        prec[lab] = round(float(good[pos].mean()), 3)
        share[lab] = round(float(pos.mean()), 3)
    out: dict[str, Any] = {
        "label_positive_precision": round(float(np.mean(list(prec.values()))), 3),
        "label_positive_share_of_clips": round(float(np.mean(list(share.values()))), 3),
        "per_label_precision": prec,
    }
    if rel.near_label:
        tag_prec = []
        for tag, lab in rel.near_label.items():
            pos = rel.word_clip[rel.words.index(tag)]
            tag_prec.append(float(np.isin(quads[pos], sorted(MANUAL_MAPPING[lab])).mean()))
        out["tag_anchor_precision"] = round(float(np.mean(tag_prec)), 3)
        out["tag_anchors"] = len(tag_prec)
        out["near_tags"] = rel.near_tags
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-encoder", default=None, help="default: STORYCUE_TEXT_ENCODER")
    ap.add_argument("--k", default="1,3,8,16,32", help="nearest tags per label to try")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    settings = get_settings()
    name = args.text_encoder or settings.text_encoder
    bank = build_feature_bank(
        settings,
        TextEncoder(name, backend="torch"),
        load_backbone("MSD_musicnn"),
        feature_cache_dir(settings),
        text_parts=("train", "validation"),
    )
    quads = np.asarray(bank.music["train"].quadrants)
    family = get_family("metric-3branch")
    result: dict[str, Any] = {
        "two_branch_word_mapping": relation_quality(
            Relations(bank, family.default_config(), 2), quads
        )
    }
    for k in (int(x) for x in args.k.split(",")):
        cfg = replace(family.default_config(), k_nearest_tags=k)
        result[f"three_branch_k{k}"] = relation_quality(Relations(bank, cfg, 3), quads)
    payload = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "text_encoder": bank.text_encoder,
        "word_space": bank.word_space,
        "train_clips": len(quads),
        "python": platform.python_version(),
        "relations": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    for key, r in result.items():
        print(
            f"{key:28s} precision {r['label_positive_precision']:.3f}  clips per label "
            f"{r['label_positive_share_of_clips']:.3f}  tag anchors "
            f"{r.get('tag_anchor_precision', float('nan')):.3f}"
        )


if __name__ == "__main__":
    main()
