"""Validation-only scores of valence-arousal checkpoints: what a release is chosen by.

Never touches a test part. For each checkpoint (a path or a shipped name) it scores, on
storycue's 4Q *validation* clips as the catalogue:

* retrieval: ISEAR validation and GoEmotions validation queries, manual mapping (P@5, MRR,
  mAP; ``../shared/EVALUATION.md``);
* reading prose: EmoBank dev, every genre, fiction, and 3-/6-sentence fiction scenes
  (Pearson/Spearman of valence and arousal), beside the frozen-encoder ridge probe;
* arousal in matching: within-quadrant Spearman and the high/low-arousal top-5 shares over
  EmoBank dev sentences *and* over the dev fiction scenes (the passages of several sentences
  that a story is made of), plus how far the scenes' arousal reading sits from their rating
  (``arousal_bias``) and how often it falls on the rated side of the midpoint.

Appends one row per checkpoint to ``bench/results/va_validation.json`` (``--label`` names
the run) and prints them. ``--summary`` prints every stored row scored by the story-grade
selection rule (``bench/results/va_selection_rule-2026-12-02.txt``): its guards and its
seven-number score; ``--rule 2026-12-05b`` by the rule that adds the story set's validation
part (``va_selection_rule-2026-12-05b.txt``; only rows scored since carry ``stories-dev``:
how each checkpoint reads those 29 passages and what its top-5 clips are).

    python bench/va_validation.py CHECKPOINT [CHECKPOINT ...] [--label TEXT]
    python bench/va_validation.py --summary [--rule 2026-12-05b]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from storycue.config import get_settings
from storycue.data.emobank import rescale
from storycue.data.nrc_vad import load_nrc_vad
from storycue.evaluation.continuous import (
    HIGH_AROUSAL_RATING,
    LOW_AROUSAL_RATING,
    ModelReader,
    continuous_report,
    emobank_sets,
    matching_arousal,
    read_passages,
    ridge_probe,
    tag_va,
)
from storycue.evaluation.harness import evaluate, fourq_gallery, gallery_input, load_queries
from storycue.evaluation.stories import dev_story_set, load_story_set, story_report
from storycue.models.checkpoints import find_checkpoint
from storycue.models.emotion import load_emotion_model

OUT = Path(__file__).resolve().parent / "results" / "va_validation.json"


def score_checkpoint(target: str) -> dict[str, Any]:
    settings = get_settings()
    path = find_checkpoint(target, settings)
    model = load_emotion_model(str(path), device="cpu")
    gallery = fourq_gallery("validation", model.audio_backbone(), settings)
    row: dict[str, Any] = {
        "checkpoint": str(path.name),
        "model": model.identity.key,
        "sha256": model.checkpoint_sha256,
        "text_encoder": model.info.text_encoder,
    }
    for qs in ("isear-validation", "goemotions-validation"):
        rep = evaluate(
            model, load_queries(qs, settings), gallery, settings,
            mappings=("manual",), diagnostics=False,
        )  # fmt: skip
        m = rep["mappings"]["manual"]["macro"]
        row[qs] = {k: round(float(m[k]), 4) for k in ("p@5", "mrr", "ap")}
    rated = emobank_sets(settings, "validation")
    probe = ridge_probe(model.info.text_encoder, settings)
    cont = continuous_report(model, settings, part="validation", sets=rated, probe=probe)
    row["reading"] = {
        key: {
            name: {k: round(v, 4) for k, v in res.items() if not k.endswith("ci95") and k != "n"}
            for name, res in r["sets"].items()
        }
        for key, r in cont["rows"].items()
    }
    tags = tag_va(gallery.records, load_nrc_vad(settings=settings))
    keep = np.isfinite(tags).all(axis=1)
    clips = model.project_audio_features(gallery_input(model, gallery))
    vectors = clips[keep]
    quads = [q for q, ok in zip(gallery.quadrants, keep, strict=True) if ok]
    reader = ModelReader(model, settings)
    enc = model.text_encoder
    row["matching"] = {}
    for s in rated:
        if s.name == "fiction":
            continue
        readings = read_passages(reader, s.texts, enc.count_tokens, enc.max_tokens)
        m = matching_arousal(
            model, vectors, quads, tags[keep], s, settings,
            high=rescale(HIGH_AROUSAL_RATING), low=rescale(LOW_AROUSAL_RATING),
            readings=readings,
        )  # fmt: skip
        side = np.mean((readings[:, 1] >= 0.5) == (s.va[:, 1] >= 0.5))
        row["matching"][s.name] = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in m.items()
            if k.startswith(("within_quadrant_spearman", "high_", "low_"))
        } | {
            "arousal_bias": round(float(np.mean(readings[:, 1] - s.va[:, 1])), 4),
            "arousal_side_agreement": round(float(side), 4),
        }
    row["stories-dev"] = story_row(model, settings, clips, gallery.quadrants, tags)
    return row


def story_row(
    model: Any, settings: Any, clips: np.ndarray, quadrants: list[str], tags: np.ndarray
) -> dict[str, Any]:
    """How ``model`` reads the story set's validation part, and what its top-5 clips are
    among the gallery's projected ``clips`` (their ``quadrants`` and tag positions)."""
    rep = story_report(
        model, settings, load_story_set(dev_story_set()),
        gallery_vectors=clips, gallery_quadrants=quadrants, gallery_tag_va=tags,
    )  # fmt: skip
    mine = rep["model"]
    match = rep["matching"]
    return {
        k: round(float(v), 4)
        for k, v in {
            "quadrant_agreement": mine["quadrant_agreement"],
            "valence_side_agreement": mine["valence_side_agreement"],
            "arousal_side_agreement": mine["arousal_side_agreement"],
            "valence_pearson": mine["valence_pearson"],
            "arousal_pearson": mine["arousal_pearson"],
            "top5_intended_quadrant": rep["top5_intended_quadrant"],
            "high_arousal_top5_q12": match["high_arousal_top5_q12"],
            "low_arousal_top5_q34": match["low_arousal_top5_q34"],
        }.items()
    } | {"readings": {p["id"]: [p["model"]["valence"], p["model"]["arousal"]]
                      for p in rep["passages"]}}  # fmt: skip


def rule_guards(row: dict[str, Any]) -> dict[str, bool]:
    """The retrieval guards of the 2026-12-02 rule, each passed or not."""
    return {
        "isear p@5 >= .865": row["isear-validation"]["p@5"] >= 0.865,
        "isear mrr >= .89": row["isear-validation"]["mrr"] >= 0.89,
        "goemotions p@5 >= .78": row["goemotions-validation"]["p@5"] >= 0.78,
        "high-A top-5 Q1/Q2 >= .90": row["matching"]["sentences"]["high_arousal_top5_q12"] >= 0.90,
    }


def rule_parts(row: dict[str, Any]) -> list[float]:
    """The 2026-12-02 rule's seven validation numbers (four correlations with EmoBank dev
    ratings, three that ask whether calm prose gets calm music)."""
    read, match = row["reading"]["model"], row["matching"]
    return [
        read["sentences"]["valence_pearson"],
        read["sentences"]["arousal_pearson"],
        read["fiction"]["valence_pearson"],
        read["fiction-scenes-6"]["valence_spearman"],
        match["sentences"]["low_arousal_top5_q34"],
        match["fiction-scenes-3"]["arousal_side_agreement"],
        match["fiction-scenes-6"]["arousal_side_agreement"],
    ]


def rule_score(row: dict[str, Any]) -> float:
    """The 2026-12-02 rule's score: the mean of its seven numbers."""
    return float(np.mean(rule_parts(row)))


def story_guards(row: dict[str, Any]) -> dict[str, bool]:
    """The 2026-12-05b rule's guards: the 2026-12-02 ones and the story validation part's
    high-arousal passages."""
    stories = row["stories-dev"]
    return rule_guards(row) | {
        "stories high-A top-5 Q1/Q2 >= .90": stories["high_arousal_top5_q12"] >= 0.90
    }


def story_score(row: dict[str, Any]) -> float:
    """The 2026-12-05b rule's score: the 2026-12-02 seven numbers and the story validation
    part's arousal side agreement and calm passages' top-5 share in Q3/Q4, nine in all."""
    stories = row["stories-dev"]
    parts = [*rule_parts(row), stories["arousal_side_agreement"], stories["low_arousal_top5_q34"]]
    return float(np.mean(parts))


RULES = {"2026-12-02": (rule_guards, rule_score), "2026-12-05b": (story_guards, story_score)}


def summary(rows: list[dict[str, Any]], rule: str = "2026-12-02") -> str:
    """Every stored row the rule can score (the 2026-12-05b rule needs the story numbers),
    with its guards and score."""
    guards, score = RULES[rule]
    lines = ["| created | label | checkpoint | text encoder | ISEAR P@5 / MRR | guards | score |",
             "|---|---|---|---|---|---|---:|"]  # fmt: skip
    for row in rows:
        if rule == "2026-12-05b" and "stories-dev" not in row:
            continue
        failed = [k for k, ok in guards(row).items() if not ok]
        isear = row["isear-validation"]
        lines.append(
            f"| {row['created'][:16]} | {row['label']} | {row['checkpoint']} | "
            f"{row['text_encoder'].split('+')[-1]} | {isear['p@5']:.3f} / {isear['mrr']:.3f} | "
            f"{'ok' if not failed else 'fails ' + ', '.join(failed)} | {score(row):.3f} |"
        )
    return "\n".join(lines)


def load_rows() -> dict[str, Any]:
    """The stored document of ``va_validation.json`` (an empty one before the first row)."""
    if OUT.is_file():
        doc: dict[str, Any] = json.loads(OUT.read_text())
        return doc
    return {"what": __doc__.split("\n\n")[0] if __doc__ else "", "rows": []}


def store_row(doc: dict[str, Any], row: dict[str, Any], label: str) -> None:
    """Label and date ``row``, append it to ``doc`` and write the file."""
    row["label"] = label
    row["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["rows"].append(row)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--label", default="")
    ap.add_argument("--summary", action="store_true", help="print the stored rows by the rule")
    ap.add_argument("--rule", choices=sorted(RULES), default="2026-12-02",
                    help="the selection rule --summary scores by")  # fmt: skip
    args = ap.parse_args()
    doc = load_rows()
    if args.summary:
        print(summary(doc["rows"], args.rule))
        return
    if not args.checkpoints:
        ap.error("name at least one checkpoint, or --summary")
    for target in args.checkpoints:
        row = score_checkpoint(target)
        store_row(doc, row, args.label)
        print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
