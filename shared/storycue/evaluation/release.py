"""The numbers stored in a release's checkpoint and model card.

One function for every command that makes a release (``storycue train``, ``storycue
calibrate``): retrieval of ISEAR and GoEmotions queries against storycue's 4Q validation
(and, asked for, test) clips (every mapping), and for valence-arousal models the reading of
EmoBank's rated prose on dev (and test) beside the frozen-encoder ridge probe. The
validation parts are the default; computing the test parts *is* the one look at them a
candidate release gets (``docs/results.md``), so the commands ask for it explicitly
(``--test``).
"""

from __future__ import annotations

from typing import Any, Literal

from storycue.config import Settings

Part = Literal["validation", "test"]


def release_metrics(
    model: Any, backbone: Any, settings: Settings, *, test: bool = False
) -> dict[str, Any]:
    """``{"<queries>-><gallery>": {mapping: macro metrics, "diagnostics": ...}, "reading":
    {part: {row: {set: correlations}}}}`` of ``model`` (an :class:`EmotionModel`) on the
    validation parts, and on the test parts too when ``test``."""
    from storycue.evaluation.harness import evaluate, fourq_gallery, load_queries

    metrics: dict[str, Any] = {}
    parts: tuple[Part, ...] = ("validation", "test") if test else ("validation",)
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
