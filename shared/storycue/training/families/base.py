"""The common interface of the emotion-space families: a feature bank, a config, a protocol.

Every family trains small heads on *frozen* features, so all of them read one
:class:`FeatureBank`: per split part, text-encoder features of labelled texts (ISEAR,
GoEmotions-Ekman, EmoBank with valence-arousal ratings) and backbone features of the 4Q
clips (quadrant + AllMusic mood tags), plus the word-space vectors of every label and tag.
:func:`build_feature_bank` builds it from the real datasets through the same feature
caches as VA training; :meth:`FeatureBank.from_arrays` builds one from plain arrays (tests,
other data).

A :class:`Family` turns a bank and a :class:`FamilyConfig` into :class:`EmotionHeads` whose
``"text"`` and ``"audio"`` heads embed queries and tracks into the family's space, so that
retrieval for every family is ``EmotionModel.score(project_text(q), project_audio(g))``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np

from storycue.config import Settings
from storycue.data.fourq import QUADRANTS, FourQRecord, load_fourq
from storycue.data.isear import clean_isear, read_isear, split_isear
from storycue.data.mappings import MANUAL_MAPPING, QUADRANT_VA_CENTRES
from storycue.data.nrc_vad import load_nrc_vad
from storycue.data.splits import PARTS, split_fourq
from storycue.data.textsets import DEFAULT_TEXT_SOURCES
from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads, mood_vocabulary
from storycue.training.families.wordvec import EncoderWordSpace, WordSpace

log = get_logger(__name__)

Part = Literal["train", "validation", "test"]
Selection = Literal["auto", "loss", "mrr"]
#: Feature-bank format version, recorded in checkpoints.
BANK_VERSION = 1
DEFAULT_AUDIO_FEATURES: tuple[str, ...] = ("penultimate", "mean_pool", "max_pool")


def normalise_tag(tag: str) -> str:
    """Canonical form of a label or mood tag: trimmed, single-spaced, lower-case."""
    return " ".join(tag.split()).lower()


@dataclass
class TextPart:
    """Frozen text features of one split part with their labels.

    ``labels[i]`` is ``""`` for texts without a categorical label (EmoBank); ``va[i]`` is
    the (valence, arousal) target in [0, 1] (NRC position of the label, or the EmoBank
    rating) and NaN where unknown.
    """

    features: np.ndarray
    labels: list[str]
    sources: list[str]
    texts: list[str] = field(default_factory=list)
    va: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        n = self.features.shape[0]
        if self.features.ndim != 2:
            raise InvalidInputError(f"text features must be 2-D, got {self.features.shape}")
        if not self.texts:
            self.texts = [""] * n
        if self.va.size == 0:
            self.va = np.full((n, 2), np.nan, np.float32)
        self.va = np.asarray(self.va, np.float32).reshape(-1, 2)
        for what, seq in (
            ("labels", self.labels),
            ("sources", self.sources),
            ("texts", self.texts),
        ):
            if len(seq) != n:
                raise InvalidInputError(f"text part: {len(seq)} {what} for {n} feature rows")
        if self.va.shape[0] != n:
            raise InvalidInputError(f"text part: {self.va.shape[0]} VA rows for {n} texts")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def select(self, mask: np.ndarray) -> TextPart:
        """The rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return TextPart(
            features=self.features[idx],
            labels=[self.labels[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            va=self.va[idx],
        )


@dataclass
class MusicPart:
    """Backbone features of one part's 4Q clips with quadrants and AllMusic mood tags.

    ``tag_va[i]`` is the mean NRC (valence, arousal) of the clip's tags (the quadrant
    centre when none is in the lexicon); NaN when unknown.
    """

    features: np.ndarray
    quadrants: list[str]
    moods: list[tuple[str, ...]]
    song_ids: list[str] = field(default_factory=list)
    tag_va: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        n = self.features.shape[0]
        if self.features.ndim != 2:
            raise InvalidInputError(f"music features must be 2-D, got {self.features.shape}")
        if not self.song_ids:
            self.song_ids = [f"clip{i}" for i in range(n)]
        self.moods = [tuple(normalise_tag(m) for m in ms) for ms in self.moods]
        if self.tag_va.size == 0:
            self.tag_va = np.full((n, 2), np.nan, np.float32)
        self.tag_va = np.asarray(self.tag_va, np.float32).reshape(-1, 2)
        for what, seq in (
            ("quadrants", self.quadrants),
            ("mood lists", self.moods),
            ("song ids", self.song_ids),
        ):
            if len(seq) != n:
                raise InvalidInputError(f"music part: {len(seq)} {what} for {n} feature rows")
        bad = sorted({q for q in self.quadrants if q not in QUADRANTS})
        if bad:
            raise InvalidInputError(f"music part: unknown quadrant(s) {bad}")

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass
class FeatureBank:
    """Frozen features of every split part plus the word space of labels and tags.

    ``words``/``word_vectors`` hold a unit vector for every text label, every mood tag and
    every mood word; ``mapping`` (text label -> relevant quadrants, the manual mapping by
    default) is used only for validation retrieval scores (early stopping), never as a
    training target unless a family's config asks for it.
    """

    text: dict[str, TextPart]
    music: dict[str, MusicPart]
    words: list[str]
    word_vectors: np.ndarray
    word_space: str = "custom"
    mapping: dict[str, frozenset[str]] = field(default_factory=dict)
    mood_words: list[str] = field(default_factory=list)
    mood_word_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    text_encoder: str = "synthetic"
    text_pooling: Literal["mean", "cls"] = "mean"
    audio_backbone: str = "synthetic"
    audio_backbone_version: str = "0"
    audio_features: list[str] = field(default_factory=lambda: ["features"])
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, parts in (("text", self.text), ("music", self.music)):
            missing = [p for p in ("train", "validation") if p not in parts]
            if missing:
                raise InvalidInputError(f"feature bank: {kind} lacks part(s) {missing}")
        self.words = [normalise_tag(w) for w in self.words]
        self.word_vectors = np.asarray(self.word_vectors, np.float32)
        if self.word_vectors.shape[0] != len(self.words) or self.word_vectors.ndim != 2:
            raise InvalidInputError(
                f"feature bank: {len(self.words)} words but word vectors of shape "
                f"{self.word_vectors.shape}"
            )
        self._word_index = {w: i for i, w in enumerate(self.words)}
        needed = set(self.text_labels) | set(self.tags)
        missing_words = sorted(needed - set(self._word_index))
        if missing_words:
            raise InvalidInputError(f"feature bank: no word vector for {missing_words[:10]}")
        dims = {p.features.shape[1] for p in self.text.values()}
        adims = {p.features.shape[1] for p in self.music.values()}
        if len(dims) != 1 or len(adims) != 1:
            raise InvalidInputError("feature bank: parts disagree on feature dimensions")
        if not self.mapping:
            self.mapping = {
                lab: MANUAL_MAPPING[lab] for lab in self.text_labels if lab in MANUAL_MAPPING
            }
        if not self.data:
            self.data = {"fingerprint": self.fingerprint()}

    # ---- vocabularies --------------------------------------------------------------------
    @property
    def text_dim(self) -> int:
        return int(self.text["train"].features.shape[1])

    @property
    def audio_dim(self) -> int:
        return int(self.music["train"].features.shape[1])

    @property
    def word_dim(self) -> int:
        return int(self.word_vectors.shape[1])

    @property
    def text_labels(self) -> list[str]:
        """Sorted categorical text labels of the training part (union over sources)."""
        return sorted({lab for lab in self.text["train"].labels if lab})

    @property
    def taxonomies(self) -> dict[str, list[str]]:
        """Sorted labels of each labelled text source in the training part."""
        out: dict[str, set[str]] = {}
        part = self.text["train"]
        for lab, src in zip(part.labels, part.sources, strict=True):
            if lab:
                out.setdefault(src, set()).add(lab)
        return {src: sorted(labs) for src, labs in sorted(out.items())}

    @property
    def tags(self) -> list[str]:
        """Sorted AllMusic mood tags of the training clips (the music tag vocabulary)."""
        return sorted({m for ms in self.music["train"].moods for m in ms})

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """Word-space vectors of ``words`` ``(len(words), word_dim)``."""
        try:
            idx = [self._word_index[normalise_tag(w)] for w in words]
        except KeyError as exc:
            raise InvalidInputError(f"feature bank has no word vector for {exc.args[0]!r}") from exc
        out: np.ndarray = self.word_vectors[idx]
        return out

    def quadrant_centroids(self) -> np.ndarray:
        """Unit centroid of each quadrant's distinct training tags ``(4, word_dim)``."""
        rows = []
        for q in QUADRANTS:
            tags = sorted(
                {
                    m
                    for ms, qq in zip(
                        self.music["train"].moods, self.music["train"].quadrants, strict=True
                    )
                    if qq == q
                    for m in ms
                }
            )
            if not tags:
                raise InvalidInputError(f"feature bank: no training clip of {q} has mood tags")
            v = self.vectors(tags)
            v = v / np.linalg.norm(v, axis=1, keepdims=True)
            rows.append(v.mean(axis=0))
        cent = np.stack(rows)
        out: np.ndarray = (cent / np.linalg.norm(cent, axis=1, keepdims=True)).astype(np.float32)
        return out

    def word_mapping(self) -> dict[str, frozenset[str]]:
        """Each text label's quadrant by nearest tag centroid in the word space (cosine)."""
        labels = self.text_labels
        if not labels:
            return {}
        lab = self.vectors(labels)
        lab = lab / np.linalg.norm(lab, axis=1, keepdims=True)
        nearest = np.argmax(lab @ self.quadrant_centroids().T, axis=1)
        return {lb: frozenset({QUADRANTS[int(i)]}) for lb, i in zip(labels, nearest, strict=True)}

    def fingerprint(self) -> str:
        """Hash of the labels, sources and ids of every part (identifies the data)."""
        h = hashlib.sha256()
        for p in PARTS:
            if p in self.text:
                t = self.text[p]
                h.update(f"text-{p}-{len(t)}".encode())
                for lab, src, txt in zip(t.labels, t.sources, t.texts, strict=True):
                    h.update(f"{src}\0{lab}\0{txt}\0".encode("utf-8", "surrogatepass"))
            if p in self.music:
                m = self.music[p]
                h.update(f"music-{p}-{len(m)}".encode())
                for sid, q in zip(m.song_ids, m.quadrants, strict=True):
                    h.update(f"{sid}\0{q}\0".encode())
        return h.hexdigest()[:16]

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        *,
        text_features: Mapping[str, np.ndarray],
        text_labels: Mapping[str, Sequence[str]],
        music_features: Mapping[str, np.ndarray],
        quadrants: Mapping[str, Sequence[str]],
        moods: Mapping[str, Sequence[Sequence[str]]],
        words: Sequence[str],
        word_vectors: np.ndarray,
        text_sources: Mapping[str, Sequence[str]] | None = None,
        text_va: Mapping[str, np.ndarray] | None = None,
        mapping: Mapping[str, frozenset[str]] | None = None,
        mood_words: Sequence[str] = (),
        mood_word_features: np.ndarray | None = None,
    ) -> FeatureBank:
        """A bank from plain arrays keyed by part (``"train"``, ``"validation"``, ...).

        Sources default to ``"synthetic"``; VA targets to NaN; clip tag VA to the
        quadrant centres.
        """
        text = {
            p: TextPart(
                features=np.asarray(x, np.float32),
                labels=list(text_labels[p]),
                sources=list(text_sources[p]) if text_sources else ["synthetic"] * len(x),
                va=(
                    np.asarray(text_va[p], np.float32)
                    if text_va and p in text_va
                    else np.zeros((0, 2), np.float32)
                ),
            )
            for p, x in text_features.items()
        }
        music = {
            p: MusicPart(
                features=np.asarray(x, np.float32),
                quadrants=list(quadrants[p]),
                moods=[tuple(m) for m in moods[p]],
                tag_va=np.asarray([QUADRANT_VA_CENTRES[q] for q in quadrants[p]], np.float32),
            )
            for p, x in music_features.items()
        }
        return cls(
            text=text,
            music=music,
            words=list(words),
            word_vectors=np.asarray(word_vectors, np.float32),
            mapping=dict(mapping or {}),
            mood_words=list(mood_words),
            mood_word_features=(
                np.asarray(mood_word_features, np.float32)
                if mood_word_features is not None
                else np.zeros((0, 0), np.float32)
            ),
        )


# ---- the real bank ---------------------------------------------------------------------------
def build_feature_bank(
    settings: Settings,
    text_encoder: Any,
    backbone: Any,
    cache_dir: Path | None,
    audio_features: Sequence[str] = DEFAULT_AUDIO_FEATURES,
    *,
    text_sources: Sequence[str] = DEFAULT_TEXT_SOURCES,
    text_parts: Sequence[str] = PARTS,
    word_space: WordSpace | None = None,
    require_audio_cache: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> FeatureBank:
    """Build the bank from the real datasets through the shared feature caches.

    Text features come from :func:`storycue.models.features.text_features` with the same
    text lists and cache tags as VA training (``va-train``, ``va-validation``; the test
    part uses ``va-test``), so the two share caches; 4Q features from
    :func:`storycue.training.va.fourq_features`. Clips whose audio failed to decode are
    left out. ``text_parts`` may leave out ``"test"`` (no family trains on it; its
    features are then not computed). ``word_space`` defaults to the text encoder itself. With
    ``require_audio_cache`` a missing 4Q feature cache raises instead of computing it.
    """
    from storycue.data.textsets import music_targets, text_training_set
    from storycue.models.features import fourq_cache_path, fourq_features, text_features

    lexicon = load_nrc_vad(settings=settings)
    records = load_fourq(settings=settings)
    split = split_fourq(records)
    if require_audio_cache and (
        cache_dir is None or not fourq_cache_path(split, backbone, cache_dir).is_file()
    ):
        raise ModelMismatchError(
            "no cached 4Q features for "
            f"{backbone.name}@{backbone.version} under {cache_dir}; build them first"
        )

    unknown = [p for p in text_parts if p not in PARTS]
    if unknown or not {"train", "validation"} <= set(text_parts):
        raise InvalidInputError(f"text_parts must include train and validation, got {text_parts}")
    # The sentence-level sources share one cache per part (``va-<part>``); each extra source
    # (EmoBank's joined passages) has its own, so asking for it re-encodes only its texts.
    groups = [[s for s in text_sources if s in DEFAULT_TEXT_SOURCES]]
    groups += [[s] for s in text_sources if s not in DEFAULT_TEXT_SOURCES]
    text: dict[str, TextPart] = {}
    for part in text_parts:
        chunks: list[TextPart] = []
        for group in (g for g in groups if g):
            tset = text_training_set(
                cast(Literal["train", "validation", "test"], part), lexicon, group, settings
            )
            tag = f"va-{part}" if group == groups[0] else f"va-{part}-{group[0]}"
            chunks.append(
                TextPart(
                    features=text_features(text_encoder, tset.texts, cache_dir, tag=tag),
                    labels=list(tset.labels),
                    sources=list(tset.source),
                    texts=list(tset.texts),
                    va=tset.targets,
                )
            )
        text[part] = TextPart(
            features=np.concatenate([c.features for c in chunks], axis=0),
            labels=[x for c in chunks for x in c.labels],
            sources=[x for c in chunks for x in c.sources],
            texts=[x for c in chunks for x in c.texts],
            va=np.concatenate([c.va for c in chunks], axis=0),
        )

    raw = fourq_features(split, backbone, cache_dir, progress=progress)
    music: dict[str, MusicPart] = {}
    dropped: dict[str, int] = {}
    for part in PARTS:
        recs: list[FourQRecord] = split.part(part)
        x = np.concatenate([raw[part][k] for k in audio_features], axis=1)
        ok = ~np.isnan(x).any(axis=1)
        dropped[part] = int((~ok).sum())
        kept = [r for r, good in zip(recs, ok, strict=True) if good]
        music[part] = MusicPart(
            features=x[ok],
            quadrants=[r.quadrant for r in kept],
            moods=[r.moods for r in kept],
            song_ids=[r.song_id for r in kept],
            tag_va=music_targets(kept, lexicon, "tags"),
        )
    if any(dropped.values()):
        log.warning("bank_clips_dropped", **dropped)

    space = word_space if word_space is not None else EncoderWordSpace(text_encoder)
    moods = mood_vocabulary()
    labels = sorted({lab for p in text.values() for lab in p.labels if lab})
    tags = sorted({m for p in music.values() for ms in p.moods for m in ms})
    words = list(dict.fromkeys([*labels, *tags, *(normalise_tag(w) for w in moods)]))
    vectors = space.embed(words)
    mood_feats = np.asarray(text_encoder.encode(moods), dtype=np.float32)
    isear_fp = split_isear(clean_isear(read_isear(settings=settings)).records).fingerprint
    bank = FeatureBank(
        text=text,
        music=music,
        words=words,
        word_vectors=vectors,
        word_space=space.name,
        mood_words=moods,
        mood_word_features=mood_feats,
        text_encoder=str(text_encoder.name),
        text_pooling=text_encoder.pooling,
        audio_backbone=str(backbone.name),
        audio_backbone_version=str(backbone.version),
        audio_features=list(audio_features),
    )
    bank.data = {
        "bank_version": BANK_VERSION,
        "text_sources": list(text_sources),
        "fingerprint": bank.fingerprint(),
        "fourq_split": {
            "seed": split.seed,
            "fractions": list(split.fractions),
            "fingerprint": split.fingerprint,
            "counts": split.counts(),
            "dropped_clips": dropped,
        },
        "isear_split_fingerprint": isear_fp,
        "goemotions_split": "official train/dev/test, single Ekman group rows",
        "emobank_split": "official train/dev/test",
        "text_counts": {p: len(t) for p, t in text.items()},
        "word_space": space.name,
    }
    log.info(
        "feature_bank_built",
        texts={p: len(t) for p, t in text.items()},
        clips={p: len(m) for p, m in music.items()},
        words=len(words),
    )
    return bank


# ---- configuration and protocol -------------------------------------------------------------
@dataclass
class FamilyConfig:
    """Hyper-parameters of one training run (recorded in the checkpoint).

    Each family's :meth:`Family.default_config` fills in its own defaults; fields a family
    does not use are ignored (and still recorded).
    """

    name: str = ""
    version: str = "1.0.0"
    seed: int = 0
    text_hidden: list[int] = field(default_factory=lambda: [256])
    audio_hidden: list[int] = field(default_factory=lambda: [128])
    embed_dim: int = 64
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-3
    max_epochs: int = 60
    patience: int = 10
    batch_size: int = 256
    steps_per_epoch: int = 50
    selection: Selection = "auto"
    validation_sources: list[str] = field(default_factory=lambda: ["isear"])
    text_sources: list[str] = field(default_factory=lambda: list(DEFAULT_TEXT_SOURCES))
    # classification
    balance_classes: bool = True
    # multi-head classification
    tag_loss_weight: float = 1.0
    # va-regression
    va_music_target: Literal["quadrant", "tags", "blend"] = "blend"
    #: ``quadrants``: inner product of soft circumplex-quadrant memberships (4-d space,
    #: sharpness ``va_quadrant_sharpness``); ``circumplex``: inner product of the offsets
    #: from the neutral point (0.5, 0.5); both stored with distance ``dot``. ``euclid``:
    #: Euclidean distance between the points (va-regression 3.0.0 and earlier).
    #: ``proximity``: the soft-quadrant agreement minus ``va_proximity`` times the squared
    #: distance of the two points (8-d space), so clips of one quadrant rank by closeness.
    va_scoring: Literal["quadrants", "circumplex", "euclid", "proximity"] = "quadrants"
    va_quadrant_sharpness: float = 10.0
    va_proximity: float = 1.0
    emobank_weight: float = 0.5
    #: Offsets of EmoBank's ratings from the neutral point are multiplied by this before
    #: the VA family regresses them (1 = the ratings as they are; see
    #: :func:`storycue.training.families.va.text_regression_data`).
    emobank_stretch: float = 1.0
    #: Weight of the labelled texts' arousal targets relative to their valence targets.
    label_arousal_weight: float = 1.0
    #: What a labelled text's NRC position teaches the VA text head: ``position`` (the
    #: point itself, squared error) or ``side`` (only the side of the neutral point on each
    #: axis, a logistic loss at ``va_quadrant_sharpness``), so the labels fix the quadrant
    #: a situation report falls in while rated prose alone sets how far out a text reads.
    label_target: Literal["position", "side"] = "position"
    #: What EmoBank's ratings (sentences and joined passages) teach the VA text head:
    #: ``position`` (the stretched rating itself) or ``affine`` (the rating up to a scale
    #: and an offset per axis learned with the head, :class:`~storycue.training.loop.
    #: GroupAffine`): how prose ranks and spreads along each axis, not where the rated
    #: scale's neutral point falls on the plane, which the labels and the lexicon's words
    #: then decide.
    rated_fit: Literal["position", "affine"] = "position"
    #: Weight of EmoBank's joined passages (source ``emobank-passages``); ``None``: the
    #: sentences' ``emobank_weight``.
    passage_weight: float | None = None
    #: Weight of the lexicon's single words (source ``nrc-words``), each at its own NRC
    #: valence and arousal (not stretched: they already spread over the plane).
    word_weight: float = 1.0
    # word-regression
    word_music_target: Literal["auto", "tags", "quadrant"] = "auto"
    # metric learning
    margin: float = 0.4
    positive_mapping: Literal["word", "manual"] = "word"
    k_nearest_tags: int = 3
    negative_sampling: Literal["distance", "random"] = "distance"
    dws_cutoff: float = 0.5
    dws_nonzero_loss_cutoff: float = 1.4
    tag_hidden: list[int] = field(default_factory=lambda: [128])


class Family(Protocol):
    """One emotion-space family: trains heads from a feature bank."""

    name: str

    def default_config(self) -> FamilyConfig:
        """This family's default hyper-parameters."""
        ...

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        """Train on ``bank``; the result's ``"text"``/``"audio"`` heads embed queries and
        tracks, ``info.distance`` is the family's distance, ``info.metrics`` is empty."""
        ...
