"""The evaluation harness of ``../shared/EVALUATION.md``: any model, query set and gallery.

Queries (labelled texts) are embedded with the model's text branch; gallery clips with its
audio branch (backbone features cached per clip list). Each query ranks the whole gallery by
the model's own distance, and the ranking is scored with macro P@5, P@10, MRR, mAP and
R-precision under the manual, VA and word mappings, together with per-side diagnostics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from storycue.config import Settings
from storycue.data.fourq import FourQRecord, load_fourq, load_gallery
from storycue.data.goemotions import load_goemotions
from storycue.data.isear import load_isear
from storycue.data.nrc_vad import load_nrc_vad
from storycue.data.splits import split_fourq
from storycue.errors import InvalidInputError
from storycue.evaluation.mappings import (
    MANUAL_MAPPING,
    quadrant_of,
    quadrant_tags,
    va_mapping,
    word_mapping,
)
from storycue.evaluation.metrics import retrieval_metrics
from storycue.log import get_logger
from storycue.models.emotion import EmotionModel

log = get_logger(__name__)

MappingName = Literal["manual", "va", "word"]
MAPPINGS: tuple[MappingName, ...] = ("manual", "va", "word")
QUERY_SETS = ("isear-test", "isear-validation", "goemotions-test", "goemotions-validation")
Progress = Callable[[str, int, int], None]


@dataclass
class QuerySet:
    name: str
    texts: list[str]
    labels: list[str]


@dataclass
class Gallery:
    name: str
    records: list[FourQRecord]
    features: dict[str, np.ndarray]  # backbone feature key -> (N, dim)
    missing: list[str] = field(default_factory=list)

    @property
    def quadrants(self) -> list[str]:
        return [r.quadrant for r in self.records]


def load_queries(name: str, settings: Settings) -> QuerySet:
    """A labelled text query set by name (see :data:`QUERY_SETS`)."""
    if name not in QUERY_SETS:
        raise InvalidInputError(f"unknown query set {name!r}; choose from {', '.join(QUERY_SETS)}")
    dataset, part = name.split("-", 1)
    if dataset == "isear":
        recs = load_isear(part, settings=settings)  # type: ignore[arg-type]
        return QuerySet(name, [r.text for r in recs], [r.emotion for r in recs])
    rows = [g for g in load_goemotions(part, settings=settings) if g.ekman]  # type: ignore[arg-type]
    return QuerySet(name, [g.text for g in rows], [str(g.ekman) for g in rows])


def fourq_gallery(
    part: str, backbone: Any, settings: Settings, progress: Progress | None = None
) -> Gallery:
    """One part of storycue's artist-disjoint 4Q split as a gallery."""
    from storycue.training.va import fourq_features

    split = split_fourq(load_fourq(settings=settings))
    feats = fourq_features(split, backbone, _cache_dir(settings), progress=progress)
    return Gallery(f"4q-{part}", split.part(part), feats[part])


def folder_gallery(
    audio_dir: Path,
    metadata_csv: Path,
    backbone: Any,
    settings: Settings,
    progress: Progress | None = None,
) -> Gallery:
    """Any folder of audio plus a metadata CSV in the 4Q format."""
    from storycue.training.features import audio_features

    loaded = load_gallery(audio_dir, metadata_csv)
    if not loaded.records:
        raise InvalidInputError(f"no gallery clip of {metadata_csv} was found under {audio_dir}")

    def _prog(done: int, total: int) -> None:
        if progress is not None:
            progress("gallery audio features", done, total)

    raw, failed = audio_features(
        backbone,
        [r.audio_path for r in loaded.records],
        _cache_dir(settings),
        tag="gallery",
        progress=_prog,
    )
    keep = [i for i in range(len(loaded.records)) if i not in set(failed)]
    missing = list(loaded.missing_audio) + [loaded.records[i].song_id for i in failed]
    return Gallery(
        name=str(audio_dir),
        records=[loaded.records[i] for i in keep],
        features={k: v[keep] for k, v in raw.items()},
        missing=missing,
    )


def _cache_dir(settings: Settings) -> Path:
    return settings.home / "cache" / "features"


def build_mapping(
    name: MappingName,
    labels: Sequence[str],
    model: EmotionModel,
    settings: Settings,
    train_records: Sequence[FourQRecord] | None = None,
) -> dict[str, frozenset[str]]:
    """The text-label → quadrant mapping ``name`` for ``labels``."""
    uniq = sorted(set(labels))
    if name == "manual":
        unknown = [lab for lab in uniq if lab not in MANUAL_MAPPING]
        if unknown:
            raise InvalidInputError(f"the manual mapping has no entry for {unknown}")
        return {lab: MANUAL_MAPPING[lab] for lab in uniq}
    if name == "va":
        return va_mapping(uniq, load_nrc_vad(settings=settings))
    if name == "word":
        records = train_records
        if records is None:
            records = split_fourq(load_fourq(settings=settings)).train
        encoder = model.text_encoder
        return word_mapping(uniq, lambda xs: encoder.encode(list(xs)), quadrant_tags(records))
    raise InvalidInputError(f"unknown mapping {name!r}; choose from {', '.join(MAPPINGS)}")


def evaluate(
    model: EmotionModel,
    queries: QuerySet,
    gallery: Gallery,
    settings: Settings,
    *,
    mappings: Sequence[MappingName] = MAPPINGS,
) -> dict[str, Any]:
    """Score ``model`` on ``queries`` against ``gallery``; a JSON-ready report."""
    from storycue.training.features import text_features

    text_feats = text_features(
        model.text_encoder, queries.texts, _cache_dir(settings), tag=f"queries-{queries.name}"
    )
    q = model.project_text_features(text_feats)
    audio_in = np.concatenate([gallery.features[k] for k in model.info.audio_features], axis=1)
    g = model.project_audio_features(audio_in)
    scores = model.score(q, g)
    report: dict[str, Any] = {
        "model": {
            **model.identity.model_dump(),
            "family": model.info.family,
            "distance": model.distance,
            "checkpoint_sha256": model.checkpoint_sha256,
        },
        "queries": {"name": queries.name, "count": len(queries.texts)},
        "gallery": {
            "name": gallery.name,
            "count": len(gallery.records),
            "quadrants": {qd: gallery.quadrants.count(qd) for qd in sorted(set(gallery.quadrants))},
            "missing": gallery.missing,
        },
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mappings": {},
        "diagnostics": {},
    }
    for name in mappings:
        mapping = build_mapping(name, queries.labels, model, settings)
        result = retrieval_metrics(scores, queries.labels, gallery.quadrants, mapping)
        report["mappings"][name] = {
            "mapping": {k: sorted(v) for k, v in mapping.items()},
            **result.to_dict(),
        }
    if model.info.va_axes:
        music_q = [quadrant_of(float(v), float(a)) for v, a in g[:, :2]]
        music_acc = float(
            np.mean([p == t for p, t in zip(music_q, gallery.quadrants, strict=True)])
        )
        text_q = [quadrant_of(float(v), float(a)) for v, a in q[:, :2]]
        text_ok = [
            tq in MANUAL_MAPPING.get(lab, frozenset())
            for tq, lab in zip(text_q, queries.labels, strict=True)
        ]
        report["diagnostics"] = {
            "music_quadrant_accuracy": music_acc,
            "text_quadrant_agreement_manual": float(np.mean(text_ok)),
        }
    return report
