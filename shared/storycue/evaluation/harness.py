"""The evaluation harness of ``../shared/EVALUATION.md``: any model, query set and gallery.

Queries (labelled texts) are embedded with the model's text branch; gallery clips with its
audio branch (backbone features cached per clip list). Each query ranks the whole gallery by
the model's own distance, and the ranking is scored with macro P@5, P@10, MRR, mAP and
R-precision under the manual, VA and word mappings, together with per-side diagnostics.

Diagnostics (``report["diagnostics"]``, all floats; how each was computed is in
``report["diagnostics_notes"]``):

* ``text_accuracy`` — emotion classification accuracy on the query set's own labels. A
  space with a classifier reads it: the label axes of a joint ``vocabulary`` (classification)
  or the ``cls-<dataset>`` taxonomy head (multi-head classification). Any other space uses
  the nearest label prototype (``text_accuracy_prototype``, computed for every model): the
  mean projection of each label's *training* texts (ISEAR train for ISEAR queries,
  GoEmotions train, single-label Ekman rows, for GoEmotions queries), nearest by the model's
  own score. For a valence-arousal model this is the nearest label VA point.
  ``text_balanced_accuracy`` is the mean per-label recall of the same predictions.
* ``music_quadrant_accuracy`` — nearest quadrant prototype (mean projection of the 4Q
  *train* clips of each quadrant) for every gallery clip, any family; for valence-arousal
  models also ``music_quadrant_accuracy_va_rule`` (the quadrant the clip's VA point falls
  in) and ``text_quadrant_agreement_manual`` (the query's VA quadrant is one its label maps
  to under the manual mapping).
* ``emobank_{valence,arousal}_{pearson,spearman}`` — valence-arousal models only: the
  text head's first two outputs against the EmoBank test ratings (rescaled to [0, 1]).

A diagnostic whose data are missing is left out and its note says why; the retrieval
scores never depend on it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from storycue.config import Settings
from storycue.data.fourq import FourQRecord, load_fourq, load_gallery
from storycue.data.goemotions import load_goemotions
from storycue.data.isear import load_isear
from storycue.data.mappings import (
    MANUAL_MAPPING,
    quadrant_of,
    quadrant_tags,
    va_mapping,
    word_mapping,
)
from storycue.data.nrc_vad import load_nrc_vad
from storycue.data.splits import split_fourq
from storycue.errors import InvalidInputError, StorycueError
from storycue.evaluation.metrics import (
    balanced_accuracy,
    classification_accuracy,
    retrieval_metrics,
    va_correlations,
)
from storycue.evaluation.reading import text_reading_section
from storycue.log import get_logger
from storycue.models.emotion import EmotionModel
from storycue.models.features import feature_cache_dir
from storycue.models.finetuned import base_of, is_finetuned_name
from storycue.models.text import pretrained_text_encoder

log = get_logger(__name__)

MappingName = Literal["manual", "va", "word"]
MAPPINGS: tuple[MappingName, ...] = ("manual", "va", "word")
QUERY_SETS = ("isear-test", "isear-validation", "goemotions-test", "goemotions-validation")
Progress = Callable[[str, int, int], None]


@dataclass
class QuerySet:
    """Labelled text queries (``name`` is one of :data:`QUERY_SETS` or free-form)."""

    name: str
    texts: list[str]
    labels: list[str]


@dataclass
class Gallery:
    """Music clips with quadrant labels and their backbone features."""

    name: str
    records: list[FourQRecord]
    features: dict[str, np.ndarray]  # backbone feature key -> (N, dim)
    missing: list[str] = field(default_factory=list)
    #: Where the clips come from (split seed, fingerprint, ...); copied into reports.
    info: dict[str, Any] = field(default_factory=dict)

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
    from storycue.models.features import fourq_features

    split = split_fourq(load_fourq(settings=settings))
    feats = fourq_features(split, backbone, feature_cache_dir(settings), progress=progress)
    key = {"val": "validation", "dev": "validation"}.get(part, part)
    info = {
        "source": "4Q (Panda et al. 2018), storycue's artist-disjoint split",
        "part": key,
        "split_seed": split.seed,
        "split_fractions": list(split.fractions),
        "split_fingerprint": split.fingerprint,
        "backbone": f"{backbone.name}@{backbone.version}",
    }
    return Gallery(f"4q-{key}", split.part(key), feats[key], info=info)


def folder_gallery(
    audio_dir: Path,
    metadata_csv: Path,
    backbone: Any,
    settings: Settings,
    progress: Progress | None = None,
) -> Gallery:
    """Any folder of audio plus a metadata CSV in the 4Q format."""
    from storycue.models.features import audio_features

    loaded = load_gallery(audio_dir, metadata_csv)
    if not loaded.records:
        raise InvalidInputError(f"no gallery clip of {metadata_csv} was found under {audio_dir}")

    def _prog(done: int, total: int) -> None:
        if progress is not None:
            progress("gallery audio features", done, total)

    raw, failed = audio_features(
        backbone,
        [r.audio_path for r in loaded.records],
        feature_cache_dir(settings),
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
        info={"source": str(metadata_csv), "backbone": f"{backbone.name}@{backbone.version}"},
    )


def build_mapping(
    name: MappingName,
    labels: Sequence[str],
    model: EmotionModel | None,
    settings: Settings,
    train_records: Sequence[FourQRecord] | None = None,
    *,
    text_encoder: Any = None,
) -> dict[str, frozenset[str]]:
    """The text-label → quadrant mapping ``name`` for ``labels``.

    The word mapping embeds labels and mood tags with ``text_encoder`` (default: the
    model's); a caller without a model (the bridge baseline) passes the encoder. A
    fine-tuned encoder is replaced by its pretrained base: the mapping belongs to the
    evaluation protocol, so models must not move it by fine-tuning their encoder.
    """
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
        encoder = text_encoder
        if encoder is None:
            if model is None:
                raise InvalidInputError("the word mapping needs a model or a text encoder")
            encoder = model.text_encoder
        if is_finetuned_name(str(encoder.name)):
            encoder = pretrained_text_encoder(base_of(str(encoder.name)))
        return word_mapping(uniq, lambda xs: encoder.encode(list(xs)), quadrant_tags(records))
    raise InvalidInputError(f"unknown mapping {name!r}; choose from {', '.join(MAPPINGS)}")


def evaluate(
    model: EmotionModel,
    queries: QuerySet,
    gallery: Gallery,
    settings: Settings,
    *,
    mappings: Sequence[MappingName] = MAPPINGS,
    diagnostics: bool = True,
    text_reference: LabelledFeatures | None = None,
    music_reference: Gallery | None = None,
    emobank_reference: LabelledFeatures | None = None,
    reading: bool = False,
    reading_part: Literal["validation", "test"] = "test",
    stories: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``queries`` against ``gallery``; a JSON-ready report.

    With ``diagnostics`` the per-side diagnostics of the module docstring are added. Their
    reference data default to the real datasets (:func:`query_training_texts`, the 4Q train
    part, :func:`emobank_texts`); pass ``text_reference`` / ``music_reference`` /
    ``emobank_reference`` to use other data (tests, other corpora). With ``reading`` the
    report gains how the model reads prose (:mod:`storycue.evaluation.continuous`):
    ``continuous`` (EmoBank ``reading_part`` against the frozen-encoder probe),
    ``matching`` (arousal in matching against ``gallery``) and, given ``stories``
    (:mod:`storycue.evaluation.stories` passages), ``stories``.
    """
    from storycue.models.features import text_features

    text_feats = text_features(
        model.text_encoder,
        queries.texts,
        feature_cache_dir(settings),
        tag=f"queries-{queries.name}",
    )
    q = model.project_text_features(text_feats)
    g = model.project_audio_features(gallery_input(model, gallery))
    scores = model.score(q, g)
    report: dict[str, Any] = {
        "model": {
            **model.identity.model_dump(),
            "family": model.info.family,
            "distance": model.distance,
            "checkpoint_sha256": model.checkpoint_sha256,
        },
        "queries": {"name": queries.name, "count": len(queries.texts)},
        "gallery": gallery_summary(gallery),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mappings": {},
        "diagnostics": {},
        "diagnostics_notes": {},
    }
    for name in mappings:
        mapping = build_mapping(name, queries.labels, model, settings)
        result = retrieval_metrics(scores, queries.labels, gallery.quadrants, mapping)
        report["mappings"][name] = {
            "mapping": {k: sorted(v) for k, v in mapping.items()},
            **result.to_dict(),
        }
    if diagnostics:
        diag, notes = model_diagnostics(
            model,
            queries,
            q,
            gallery,
            g,
            settings,
            text_reference=text_reference,
            music_reference=music_reference,
            emobank_reference=emobank_reference,
        )
        report["diagnostics"] = diag
        report["diagnostics_notes"] = notes
    if reading or stories is not None:
        report.update(
            text_reading_section(model, gallery, g, settings, part=reading_part, stories=stories)
        )
    return report


def gallery_input(model: EmotionModel, gallery: Gallery) -> np.ndarray:
    """The audio head's input for every gallery clip (the model's backbone feature keys)."""
    missing = [k for k in model.info.audio_features if k not in gallery.features]
    if missing:
        raise InvalidInputError(f"gallery {gallery.name} lacks backbone feature(s) {missing}")
    return np.concatenate([gallery.features[k] for k in model.info.audio_features], axis=1)


def gallery_summary(gallery: Gallery) -> dict[str, Any]:
    """The JSON description of a gallery used in reports."""
    quads = gallery.quadrants
    return {
        "name": gallery.name,
        "count": len(gallery.records),
        "quadrants": {qd: quads.count(qd) for qd in sorted(set(quads))},
        "missing": gallery.missing,
        **({"info": gallery.info} if gallery.info else {}),
    }


# ---- diagnostics ---------------------------------------------------------------------------


@dataclass
class LabelledFeatures:
    """Frozen text-encoder features with labels (``labels[i]`` may be ``""``) and, where
    known, valence-arousal ratings ``va`` in [0, 1] (``(N, 2)``, NaN where unknown)."""

    name: str
    features: np.ndarray
    labels: list[str]
    va: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, np.float32)
        if self.features.ndim != 2 or self.features.shape[0] != len(self.labels):
            raise InvalidInputError(
                f"{self.name}: {len(self.labels)} labels for features {self.features.shape}"
            )
        if self.va is not None:
            self.va = np.asarray(self.va, np.float32).reshape(-1, 2)
            if self.va.shape[0] != len(self.labels):
                raise InvalidInputError(f"{self.name}: {self.va.shape[0]} VA rows")


_reference_cache: dict[tuple[str, ...], LabelledFeatures] = {}
_reference_lock = threading.Lock()


def query_dataset(queries_name: str) -> str:
    """The dataset a query set comes from: ``"isear"`` or ``"goemotions"``."""
    dataset = queries_name.split("-", 1)[0]
    if dataset not in ("isear", "goemotions"):
        raise InvalidInputError(
            f"query set {queries_name!r} has no known training split (isear-*, goemotions-*)"
        )
    return dataset


def query_training_texts(
    queries_name: str,
    settings: Settings,
    encoder: Any,
    part: Literal["train", "validation", "test"] = "train",
) -> LabelledFeatures:
    """Labelled texts of the query set's own dataset and split ``part``, with features.

    ISEAR queries -> ISEAR ``part``; GoEmotions queries -> GoEmotions ``part`` (single-label
    Ekman rows). Features come from the shared ``va-<part>`` cache of the feature bank (all
    text sources, so the cache is the one training filled), then the rows of the dataset
    are kept. Memoised per process.
    """
    from storycue.data.textsets import DEFAULT_TEXT_SOURCES, text_training_set
    from storycue.models.features import text_features

    dataset = query_dataset(queries_name)
    key = ("texts", dataset, part, str(encoder.name), str(encoder.pooling), str(settings.home))
    with _reference_lock:
        if key in _reference_cache:
            return _reference_cache[key]
    tset = text_training_set(part, load_nrc_vad(settings=settings), DEFAULT_TEXT_SOURCES, settings)
    feats = text_features(encoder, tset.texts, feature_cache_dir(settings), tag=f"va-{part}")
    keep = [i for i, src in enumerate(tset.source) if src == dataset]
    if not keep:
        raise InvalidInputError(f"no {dataset} {part} texts were found")
    ref = LabelledFeatures(
        name=f"{dataset}-{part}",
        features=feats[keep],
        labels=[tset.labels[i] for i in keep],
        va=tset.targets[keep],
    )
    with _reference_lock:
        _reference_cache[key] = ref
    return ref


def emobank_texts(
    settings: Settings, encoder: Any, part: Literal["train", "validation", "test"] = "test"
) -> LabelledFeatures:
    """EmoBank texts of one split with their valence-arousal ratings rescaled to [0, 1]
    (features cached under the tag ``emobank-<part>``; memoised per process)."""
    from storycue.data.emobank import load_emobank
    from storycue.models.features import text_features

    key = ("emobank", part, str(encoder.name), str(encoder.pooling), str(settings.home))
    with _reference_lock:
        if key in _reference_cache:
            return _reference_cache[key]
    rows = load_emobank(part, settings=settings)
    if len(rows) < 2:
        raise InvalidInputError(f"EmoBank {part} has {len(rows)} rows")
    feats = text_features(
        encoder, [r.text for r in rows], feature_cache_dir(settings), tag=f"emobank-{part}"
    )
    va = np.asarray([r.vad01()[:2] for r in rows], np.float32)
    ref = LabelledFeatures(f"emobank-{part}", feats, [""] * len(rows), va=va)
    with _reference_lock:
        _reference_cache[key] = ref
    return ref


def nearest_prototype(
    model: EmotionModel,
    points: np.ndarray,
    reference: np.ndarray,
    reference_labels: Sequence[str],
) -> list[str]:
    """The label of the nearest prototype (mean reference point of each label, by the
    model's own score) of every row of ``points``. Unlabelled (``""``) rows are ignored.

    Circumplex and soft-quadrant models (``va_centre``) rank by an inner product, which
    favours the prototype farthest out rather than the nearest one; their points and
    prototypes are compared by Euclidean distance in the valence-arousal plane instead, so
    the diagnostic stays a classifier."""
    classes = sorted({lab for lab in reference_labels if lab})
    if not classes:
        raise InvalidInputError("nearest_prototype needs labelled reference points")
    labels = np.asarray(list(reference_labels), dtype=object)
    if model.info.va_centre is not None:
        ref = model.va_coordinates(np.asarray(reference))
        protos = np.stack([ref[labels == c].mean(axis=0) for c in classes])
        pts = model.va_coordinates(np.asarray(points))
        best = np.argmin(np.linalg.norm(pts[:, None, :] - protos[None, :, :], axis=2), axis=1)
    else:
        protos = np.stack([np.asarray(reference)[labels == c].mean(axis=0) for c in classes])
        best = np.argmax(model.score(points, protos), axis=1)
    return [classes[int(i)] for i in best]


def classifier_text_predictions(
    model: EmotionModel, embedded: np.ndarray, classes: Sequence[str], dataset: str
) -> tuple[list[str], str] | None:
    """Predictions of a space's own text classifier, when it has one for ``classes``.

    The label axes of a joint ``vocabulary`` (classification family) or the
    ``cls-<dataset>`` taxonomy head (multi-head classification); ``None`` otherwise.
    """
    import torch

    vocab = list(model.info.vocabulary)
    if vocab and all(c in vocab for c in classes):
        axes = [vocab.index(c) for c in classes]
        best = np.argmax(np.asarray(embedded)[:, axes], axis=1)
        return [classes[int(i)] for i in best], "classifier (vocabulary axes)"
    role = f"cls-{dataset}"
    taxonomy = model.info.training.get("taxonomies", {}).get(role)
    head = model.heads.heads.get(role)
    if head is not None and taxonomy:
        with torch.inference_mode():
            logits = head(torch.from_numpy(np.asarray(embedded, np.float32)).to(model.device))
        best = np.argmax(logits.float().cpu().numpy(), axis=1)
        return [str(taxonomy[int(i)]) for i in best], f"classifier (head {role})"
    return None


def model_diagnostics(
    model: EmotionModel,
    queries: QuerySet,
    query_embedded: np.ndarray,
    gallery: Gallery,
    gallery_embedded: np.ndarray,
    settings: Settings,
    *,
    text_reference: LabelledFeatures | None = None,
    music_reference: Gallery | None = None,
    emobank_reference: LabelledFeatures | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """The per-side diagnostics of the module docstring: ``(values, notes)``."""
    diag: dict[str, float] = {}
    notes: dict[str, str] = {}

    # ---- text ----
    try:
        ref = text_reference or query_training_texts(queries.name, settings, model.text_encoder)
        ref_emb = model.project_text_features(ref.features)
        proto = nearest_prototype(model, query_embedded, ref_emb, ref.labels)
        diag["text_accuracy_prototype"] = classification_accuracy(queries.labels, proto)
        classes = sorted({lab for lab in ref.labels if lab})
        own = None
        if text_reference is None:
            own = classifier_text_predictions(
                model, query_embedded, classes, query_dataset(queries.name)
            )
        pred, method = own if own is not None else (proto, "nearest label prototype")
        diag["text_accuracy"] = classification_accuracy(queries.labels, pred)
        diag["text_balanced_accuracy"] = balanced_accuracy(queries.labels, pred)
        notes["text_accuracy"] = (
            f"{method}; prototypes = mean projection of each label's {ref.name} texts "
            f"({len(ref.labels)})"
        )
    except StorycueError as exc:
        notes["text_accuracy"] = f"unavailable: {exc}"

    # ---- music ----
    try:
        mref = music_reference
        if mref is None:
            mref = fourq_gallery("train", model.audio_backbone(), settings)
        ok = ~np.isnan(gallery_input(model, mref)).any(axis=1)
        mref_emb = model.project_audio_features(gallery_input(model, mref)[ok])
        mref_q = [qd for qd, good in zip(mref.quadrants, ok, strict=True) if good]
        pred_q = nearest_prototype(model, gallery_embedded, mref_emb, mref_q)
        diag["music_quadrant_accuracy"] = classification_accuracy(gallery.quadrants, pred_q)
        diag["music_balanced_accuracy"] = balanced_accuracy(gallery.quadrants, pred_q)
        notes["music_quadrant_accuracy"] = (
            f"nearest quadrant prototype (mean projection of the {mref.name} clips, {len(mref_q)})"
        )
    except StorycueError as exc:
        notes["music_quadrant_accuracy"] = f"unavailable: {exc}"

    # ---- valence-arousal ----
    if model.info.va_axes:
        music_q = [
            quadrant_of(float(v), float(a)) for v, a in model.va_coordinates(gallery_embedded)
        ]
        diag["music_quadrant_accuracy_va_rule"] = classification_accuracy(
            gallery.quadrants, music_q
        )
        text_q = [quadrant_of(float(v), float(a)) for v, a in model.va_coordinates(query_embedded)]
        text_ok = [
            tq in MANUAL_MAPPING.get(lab, frozenset())
            for tq, lab in zip(text_q, queries.labels, strict=True)
        ]
        diag["text_quadrant_agreement_manual"] = float(np.mean(text_ok))
        notes["music_quadrant_accuracy_va_rule"] = "quadrant of the clip's (valence, arousal)"
        try:
            eb = emobank_reference or emobank_texts(settings, model.text_encoder)
            pred_va = model.va_coordinates(model.project_text_features(eb.features))
            corr = va_correlations(pred_va, cast(np.ndarray, eb.va))
            for d, axis in enumerate(("valence", "arousal")):
                for kind in ("pearson", "spearman"):
                    diag[f"emobank_{axis}_{kind}"] = corr[f"{kind}_{d}"]
            notes["emobank"] = f"text head vs {eb.name} ratings ({len(eb.labels)} texts)"
        except StorycueError as exc:
            notes["emobank"] = f"unavailable: {exc}"
    return diag, notes
