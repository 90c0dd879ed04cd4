"""The numbers stored in a release's checkpoint and model card.

One function for every command that makes a release (``storycue train --evaluate-after``,
``storycue calibrate``): retrieval of ISEAR and GoEmotions queries against storycue's 4Q
validation and test clips (every mapping), and for valence-arousal models the reading of
EmoBank's rated prose on dev and test beside the frozen-encoder ridge probe. Computing
them *is* the one look at the test parts a candidate gets (``docs/results.md``).
"""

from __future__ import annotations

from typing import Any, Literal

from storycue.config import Settings

Part = Literal["validation", "test"]


def release_metrics(model: Any, backbone: Any, settings: Settings) -> dict[str, Any]:
    """``{"<queries>-><gallery>": {mapping: macro metrics, "diagnostics": ...}, "reading":
    {part: {row: {set: correlations}}}}`` of ``model`` (an :class:`EmotionModel`)."""
    from storycue.evaluation.harness import evaluate, fourq_gallery, load_queries

    metrics: dict[str, Any] = {}
    parts: tuple[Part, ...] = ("validation", "test")
    for part in parts:
        gallery = fourq_gallery(part, backbone, settings)
        for qs in (f"isear-{part}", f"goemotions-{part}"):
            rep = evaluate(model, load_queries(qs, settings), gallery, settings)
            metrics[f"{qs}->4q-{part}"] = {m: r["macro"] for m, r in rep["mappings"].items()} | {
                "diagnostics": rep["diagnostics"]
            }
    if model.info.va_axes:
        from storycue.evaluation.continuous import continuous_report

        metrics["reading"] = {}
        for part in parts:
            rows = continuous_report(model, settings, part=part)["rows"]
            metrics["reading"][part] = {
                key: {
                    name: {k: v for k, v in res.items() if not k.endswith("ci95")}
                    for name, res in row["sets"].items()
                }
                for key, row in rows.items()
            }
    return metrics
