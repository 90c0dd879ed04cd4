"""storycue's story set: public-domain passages with the mood their reader intends.

``resources/stories.jsonl`` holds passages of Poe, Dickens, Andersen, the Grimms, Austen
and others, each a few sentences to a paragraph, one JSON object a line::

    {"id": "poe-telltale-3", "story": "The Tell-Tale Heart", "scene": 3,
     "author": "Edgar Allan Poe", "work": "The Tell-Tale Heart", "year": 1843,
     "source": "the climax", "quadrant": "Q2", "valence": 0.1, "arousal": 0.95,
     "rationale": "...", "text": "It grew louder—louder—louder! ..."}

The intended quadrant and rough valence/arousal (in [0, 1], 0.5 neutral) were written
down, with the reason, before any model read the passages (the file's first commit has
no model output beside it). Passages of one ``story`` in ``scene`` order make a story
whose mood turns, which is what ``storycue demo`` cues.

:func:`story_report` says how a model's reading agrees with the intention: quadrant,
side of the midpoint on each axis, correlations, and, against a gallery, whether the top
clips come from the intended quadrant; the frozen-encoder probe stands beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from storycue.config import Settings
from storycue.data.mappings import quadrant_of
from storycue.errors import DatasetFormatError, InvalidInputError
from storycue.evaluation.continuous import (
    ModelReader,
    RatedTexts,
    VAReader,
    correlations,
    matching_arousal,
    read_passages,
    ridge_probe,
)

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
#: Intended arousal from which a passage counts as high (low) arousal in matching.
HIGH_AROUSAL = 0.6
LOW_AROUSAL = 0.4


@dataclass(frozen=True)
class StoryPassage:
    """One passage with its source and intended mood."""

    id: str
    story: str
    scene: int
    author: str
    work: str
    year: int
    source: str
    quadrant: str
    valence: float
    arousal: float
    rationale: str
    text: str

    @property
    def citation(self) -> str:
        return f"{self.author}, {self.work} ({self.year}), {self.source}"


_FIELDS = {
    "id": str, "story": str, "scene": int, "author": str, "work": str, "year": int,
    "source": str, "quadrant": str, "valence": float, "arousal": float, "rationale": str,
    "text": str,
}  # fmt: skip


def default_story_set() -> Path:
    """The story set shipped with storycue (``resources/stories.jsonl``): a *test* part,
    read once per candidate release."""
    return Path(str(resources.files("storycue").joinpath("resources/stories.jsonl")))


def dev_story_set() -> Path:
    """The story set's *validation* part (``resources/stories-dev.jsonl``): 29 other
    passages, 16 of them calm, written down the same way, on which settings are chosen."""
    return Path(str(resources.files("storycue").joinpath("resources/stories-dev.jsonl")))


def load_story_set(path: Path | None = None) -> list[StoryPassage]:
    """Read and check a story set (default: the shipped one)."""
    path = path or default_story_set()
    if not path.is_file():
        raise InvalidInputError(f"story set {path} does not exist")
    passages: list[StoryPassage] = []
    seen: set[str] = set()
    for line_no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path}:{line_no}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetFormatError(f"{path}:{line_no}: expected a JSON object")
        missing = [k for k in ("id", "quadrant", "valence", "arousal", "text") if k not in row]
        if missing:
            raise DatasetFormatError(f"{path}:{line_no}: missing {missing}")
        values: dict[str, Any] = {}
        for key, kind in _FIELDS.items():
            raw = row.get(key, "" if kind is str else 0)
            if (kind is float and isinstance(raw, bool)) or (kind is int and isinstance(raw, bool)):
                raise DatasetFormatError(f"{path}:{line_no}: {key} must be a number")
            try:
                values[key] = kind(raw)
            except (TypeError, ValueError) as exc:
                raise DatasetFormatError(f"{path}:{line_no}: bad {key} {raw!r}") from exc
        p = StoryPassage(**values)
        if p.id in seen:
            raise DatasetFormatError(f"{path}:{line_no}: duplicate id {p.id!r}")
        seen.add(p.id)
        if p.quadrant not in QUADRANTS:
            raise DatasetFormatError(f"{path}:{line_no}: quadrant must be one of {QUADRANTS}")
        if not (0.0 <= p.valence <= 1.0 and 0.0 <= p.arousal <= 1.0):
            raise DatasetFormatError(f"{path}:{line_no}: valence and arousal must be in [0, 1]")
        if not p.text.strip():
            raise DatasetFormatError(f"{path}:{line_no}: empty text")
        if quadrant_of(p.valence, p.arousal) != p.quadrant:
            raise DatasetFormatError(
                f"{path}:{line_no}: intended quadrant {p.quadrant} disagrees with its valence "
                f"{p.valence} and arousal {p.arousal}"
            )
        passages.append(p)
    if not passages:
        raise InvalidInputError(f"story set {path} holds no passage")
    return passages


def story_set(spec: str | None) -> list[StoryPassage] | None:
    """A ``--stories`` argument: ``None``, ``builtin`` (storycue's own set, a test part),
    ``dev`` (its validation part) or the path of a JSON-lines file."""
    if spec is None:
        return None
    if spec == "dev":
        return load_story_set(dev_story_set())
    return load_story_set(None if spec == "builtin" else Path(spec))


def stories_of(passages: Sequence[StoryPassage]) -> dict[str, list[StoryPassage]]:
    """Passages grouped by story, each story's scenes in order."""
    out: dict[str, list[StoryPassage]] = {}
    for p in passages:
        out.setdefault(p.story, []).append(p)
    return {k: sorted(v, key=lambda p: p.scene) for k, v in out.items()}


def story_text(scenes: Sequence[StoryPassage]) -> str:
    """One story from its scenes: paragraphs separated by blank lines."""
    return "\n\n".join(p.text for p in scenes)


def as_rated(passages: Sequence[StoryPassage], name: str = "stories") -> RatedTexts:
    return RatedTexts(
        name,
        [p.text for p in passages],
        np.asarray([(p.valence, p.arousal) for p in passages]),
        "storycue's story set: intended valence/arousal, written before any model read it",
    )


def _agreement(
    reader: VAReader, passages: Sequence[StoryPassage], encoder: Any, midpoint: float
) -> tuple[dict[str, Any], np.ndarray]:
    readings = read_passages(reader, [p.text for p in passages], encoder.count_tokens,
                             encoder.max_tokens)  # fmt: skip
    intended = np.asarray([(p.valence, p.arousal) for p in passages], np.float64)
    side = (readings > midpoint) == (intended > 0.5)
    quads = [quadrant_of(float(v), float(a), centre=midpoint) for v, a in readings]
    summary = {
        "name": reader.name,
        "quadrant_agreement": float(np.mean([q == p.quadrant for q, p in zip(quads, passages,
                                                                             strict=True)])),
        "valence_side_agreement": float(side[:, 0].mean()),
        "arousal_side_agreement": float(side[:, 1].mean()),
        "midpoint": midpoint,
        **correlations(readings, intended),
    }  # fmt: skip
    return summary, readings


def story_report(
    model: Any,
    settings: Settings,
    passages: Sequence[StoryPassage],
    *,
    gallery_vectors: np.ndarray | None = None,
    gallery_quadrants: Sequence[str] | None = None,
    gallery_tag_va: np.ndarray | None = None,
    k: int = 5,
) -> dict[str, Any]:
    """Agreement of ``model`` (a valence-arousal model) and of the frozen-encoder probe with
    the intended moods of ``passages``; with a gallery, the quadrants of each passage's top
    ``k`` clips and the arousal-in-matching measures of
    :func:`storycue.evaluation.continuous.matching_arousal`."""
    if not model.info.va_axes:
        return {
            "available": False,
            "reason": f"the {model.info.family} family has no valence-arousal axes to compare "
            "with the intended moods",
        }
    probe = ridge_probe(model.info.text_encoder, settings)
    centre = float(model.info.va_centre if model.info.va_centre is not None else 0.5)
    mine, readings = _agreement(ModelReader(model, settings), passages, model.text_encoder,
                                centre)  # fmt: skip
    theirs, probe_readings = _agreement(probe, passages, probe.encoder, 0.5)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "available": True,
        "count": len(passages),
        "intended_quadrants": {q: sum(p.quadrant == q for p in passages) for q in QUADRANTS},
        "model": mine,
        "probe": theirs,
        "passages": rows,
    }
    top_quads: list[list[str]] | None = None
    if gallery_vectors is not None and gallery_quadrants is not None:
        q_vectors = model.from_va(readings, role="text")
        scores = model.score(q_vectors, np.asarray(gallery_vectors, np.float32))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        quads = np.asarray(list(gallery_quadrants))
        top_quads = [list(quads[t]) for t in top]
        report[f"top{k}_intended_quadrant"] = float(
            np.mean([np.mean([q == p.quadrant for q in tq])
                     for tq, p in zip(top_quads, passages, strict=True)])
        )  # fmt: skip
        if gallery_tag_va is not None:
            keep = np.isfinite(np.asarray(gallery_tag_va)).all(axis=1)
            report["matching"] = matching_arousal(
                model, np.asarray(gallery_vectors)[keep],
                [q for q, ok in zip(gallery_quadrants, keep, strict=True) if ok],
                np.asarray(gallery_tag_va)[keep], as_rated(passages), settings,
                high=HIGH_AROUSAL, low=LOW_AROUSAL, k=k, readings=readings,
            )  # fmt: skip
    for i, p in enumerate(passages):
        row: dict[str, Any] = {
            "id": p.id,
            "citation": p.citation,
            "intended": {"quadrant": p.quadrant, "valence": p.valence, "arousal": p.arousal},
            "model": {
                "quadrant": quadrant_of(
                    float(readings[i, 0]), float(readings[i, 1]), centre=centre
                ),
                "valence": round(float(readings[i, 0]), 4),
                "arousal": round(float(readings[i, 1]), 4),
            },
            "probe": {
                "valence": round(float(probe_readings[i, 0]), 4),
                "arousal": round(float(probe_readings[i, 1]), 4),
            },
        }
        if top_quads is not None:
            row[f"top{k}_quadrants"] = top_quads[i]
        rows.append(row)
    return report
