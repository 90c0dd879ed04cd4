"""Valence-arousal regression (the paper's VA family): two MLP heads on frozen encoders.

Text targets: ISEAR and GoEmotions labels placed in valence-arousal with the NRC VAD
lexicon (the label word's scores), and EmoBank's human ratings rescaled to [0, 1]. Music
targets: each 4Q clip's quadrant combined with the mean NRC position of its AllMusic mood
tags, so clips of one quadrant spread by how their tags read. Both heads end in a sigmoid
(VA in [0, 1]); retrieval is by Euclidean distance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from storycue.config import Settings
from storycue.data.emobank import load_emobank
from storycue.data.fourq import FourQRecord, load_fourq
from storycue.data.goemotions import load_goemotions
from storycue.data.isear import load_isear
from storycue.data.nrc_vad import VadLexicon, load_nrc_vad
from storycue.data.splits import FourQSplit, split_fourq
from storycue.errors import DatasetNotFoundError
from storycue.evaluation.mappings import QUADRANT_VA_CENTRES
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.models.emotion import CheckpointInfo, EmotionHeads, mood_vocabulary
from storycue.models.heads import HeadConfig, MLPHead
from storycue.training.loop import RegressionData, fit_regression

log = get_logger(__name__)

MusicTarget = Literal["quadrant", "tags", "blend"]
LICENCES = {
    "isear": "research use",
    "goemotions": "Apache-2.0",
    "emobank": "CC-BY-SA 4.0",
    "nrc-vad": "non-commercial research use (used for targets only; not redistributed)",
    "4q": "research use only (used for training only; not redistributed)",
    "all-MiniLM-L6-v2": "Apache-2.0",
    "musicnn": "ISC",
}


@dataclass
class VATrainConfig:
    """Hyper-parameters of VA regression (recorded in the checkpoint)."""

    name: str = "va-regression"
    version: str = "1.0.0"
    seed: int = 0
    # Chosen on the validation split (ISEAR-val -> 4Q-val, manual mapping, 3 seeds): the
    # 200-unit penultimate layer generalises better than adding the 1,506 pooled values.
    audio_features: list[str] = field(default_factory=lambda: ["penultimate"])
    text_hidden: list[int] = field(default_factory=lambda: [256])
    audio_hidden: list[int] = field(default_factory=lambda: [128])
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-3
    max_epochs: int = 300
    text_patience: int = 20
    audio_patience: int = 30
    batch_size: int = 256
    music_target: MusicTarget = "blend"
    # GoEmotions (Reddit, joy-heavy) lowered validation retrieval; EmoBank keeps fiction and
    # other genres in the text head's training data at little cost.
    text_sources: list[str] = field(default_factory=lambda: ["isear", "emobank"])
    emobank_weight: float = 0.5


@dataclass
class TextSet:
    texts: list[str]
    targets: np.ndarray  # (N, 2)
    weights: np.ndarray  # (N,)
    labels: list[str]
    source: list[str]


def label_va(lexicon: VadLexicon, label: str) -> tuple[float, float]:
    vad = lexicon.lookup(label)
    if vad is None:
        raise DatasetNotFoundError(f"label {label!r} is not in the NRC VAD lexicon")
    return float(vad.valence), float(vad.arousal)


def text_training_set(
    part: Literal["train", "validation", "test"],
    lexicon: VadLexicon,
    sources: Sequence[str],
    settings: Settings,
    emobank_weight: float = 0.5,
) -> TextSet:
    """Texts with VA targets from the chosen sources for one split part."""
    texts: list[str] = []
    targets: list[tuple[float, float]] = []
    weights: list[float] = []
    labels: list[str] = []
    source: list[str] = []
    if "isear" in sources:
        for r in load_isear(part, settings=settings):
            texts.append(r.text)
            targets.append(label_va(lexicon, r.emotion))
            weights.append(1.0)
            labels.append(r.emotion)
            source.append("isear")
    if "goemotions" in sources:
        for g in load_goemotions(part, settings=settings):
            if g.ekman is None:
                continue
            texts.append(g.text)
            targets.append(label_va(lexicon, g.ekman))
            weights.append(1.0)
            labels.append(g.ekman)
            source.append("goemotions")
    if "emobank" in sources:
        for e in load_emobank(part, settings=settings):
            v, a, _ = e.vad01()
            texts.append(e.text)
            targets.append((v, a))
            weights.append(emobank_weight)
            labels.append("")
            source.append("emobank")
    return TextSet(
        texts=texts,
        targets=np.asarray(targets, np.float32).reshape(-1, 2),
        weights=np.asarray(weights, np.float32),
        labels=labels,
        source=source,
    )


def music_targets(
    records: Sequence[FourQRecord], lexicon: VadLexicon, how: MusicTarget = "blend"
) -> np.ndarray:
    """VA target of each clip from its quadrant and/or mood tags."""
    out = np.zeros((len(records), 2), np.float32)
    for i, r in enumerate(records):
        centre = np.asarray(QUADRANT_VA_CENTRES[r.quadrant], np.float32)
        found = [lexicon.lookup_phrase(m) for m in r.moods]
        tags = [np.asarray((v.valence, v.arousal), np.float32) for v in found if v is not None]
        tag_mean = np.mean(tags, axis=0) if tags else centre
        if how == "quadrant":
            out[i] = centre
        elif how == "tags":
            out[i] = tag_mean
        else:
            out[i] = 0.5 * centre + 0.5 * tag_mean
    return out


def _fourq_ordered(split: FourQSplit) -> list[FourQRecord]:
    """Every clip of the split, sorted by song id: the list cached as one feature file."""
    return sorted([*split.train, *split.validation, *split.test], key=lambda r: r.song_id)


def fourq_cache_path(split: FourQSplit, backbone: Any, cache_dir: Path) -> Path:
    """Where :func:`fourq_features` caches the features of ``split`` for ``backbone``."""
    from storycue.training.features import audio_cache_path

    return audio_cache_path(
        backbone, [r.audio_path for r in _fourq_ordered(split)], cache_dir, "4q-all"
    )


def fourq_features(
    split: FourQSplit,
    backbone: Any,
    cache_dir: Path | None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Backbone features of every 4Q clip (one cache for all parts), sliced by part."""
    from storycue.training.features import audio_features

    ordered = _fourq_ordered(split)

    def _prog(done: int, total: int) -> None:
        if progress is not None:
            progress("4Q audio features", done, total)

    raw, failed = audio_features(
        backbone, [r.audio_path for r in ordered], cache_dir, tag="4q-all", progress=_prog
    )
    if failed:
        log.warning("clips_failed", count=len(failed))
    row = {r.song_id: i for i, r in enumerate(ordered)}
    return {
        part: {k: v[[row[r.song_id] for r in split.part(part)]] for k, v in raw.items()}
        for part in ("train", "validation", "test")
    }


def fit_va_head(
    in_dim: int,
    hidden: Sequence[int],
    train: RegressionData,
    val: RegressionData,
    *,
    dropout: float,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int,
    batch_size: int,
    seed: int,
) -> tuple[MLPHead, dict[str, Any]]:
    """A new sigmoid head regressing (valence, arousal), trained with early stopping."""
    head = MLPHead(
        HeadConfig(in_dim=in_dim, out_dim=2, hidden=list(hidden), dropout=dropout, output="sigmoid")
    )
    history = fit_regression(
        head,
        train,
        val,
        lr=lr,
        weight_decay=weight_decay,
        max_epochs=max_epochs,
        patience=patience,
        batch_size=batch_size,
        seed=seed,
    )
    return head, history


@dataclass
class VATrainingResult:
    heads: EmotionHeads
    split: FourQSplit
    history: dict[str, Any]


def train_va(
    settings: Settings,
    config: VATrainConfig,
    *,
    text_encoder: Any,
    backbone: Any,
    cache_dir: Path | None,
    progress: Callable[[str, int, int], None] | None = None,
) -> VATrainingResult:
    """Train both heads on cached frozen features; returns heads (metrics filled later)."""
    from storycue.training.features import text_features

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    lexicon = load_nrc_vad(settings=settings)
    split = split_fourq(load_fourq(settings=settings))

    # ---- text head --------------------------------------------------------------------------
    sets = {
        part: text_training_set(
            part, lexicon, config.text_sources, settings, emobank_weight=config.emobank_weight
        )
        for part in ("train", "validation")
    }
    x = {p: text_features(text_encoder, s.texts, cache_dir, tag=f"va-{p}") for p, s in sets.items()}
    text_head, text_hist = fit_va_head(
        int(x["train"].shape[1]),
        config.text_hidden,
        RegressionData(x["train"], sets["train"].targets, sets["train"].weights),
        RegressionData(x["validation"], sets["validation"].targets, sets["validation"].weights),
        dropout=config.dropout,
        lr=config.lr,
        weight_decay=config.weight_decay,
        max_epochs=config.max_epochs,
        patience=config.text_patience,
        batch_size=config.batch_size,
        seed=config.seed,
    )

    # ---- audio head -------------------------------------------------------------------------
    all_feats = fourq_features(split, backbone, cache_dir, progress=progress)
    feats = {
        part: np.concatenate([all_feats[part][k] for k in config.audio_features], axis=1)
        for part in ("train", "validation")
    }
    ytr = music_targets(split.train, lexicon, config.music_target)
    yva = music_targets(split.validation, lexicon, config.music_target)
    ok_tr = ~np.isnan(feats["train"]).any(axis=1)
    ok_va = ~np.isnan(feats["validation"]).any(axis=1)
    audio_head, audio_hist = fit_va_head(
        int(feats["train"].shape[1]),
        config.audio_hidden,
        RegressionData(feats["train"][ok_tr], ytr[ok_tr], np.ones(int(ok_tr.sum()), np.float32)),
        RegressionData(
            feats["validation"][ok_va], yva[ok_va], np.ones(int(ok_va.sum()), np.float32)
        ),
        dropout=config.dropout,
        lr=config.lr,
        weight_decay=config.weight_decay,
        max_epochs=config.max_epochs,
        patience=config.audio_patience,
        batch_size=min(config.batch_size, 64),
        seed=config.seed,
    )

    # ---- mood words, placed by the text branch -----------------------------------------------
    words = mood_vocabulary()
    word_feats = text_encoder.encode(words)
    with torch.inference_mode():
        text_head.eval()
        positions = text_head(torch.from_numpy(word_feats)).numpy()

    info = CheckpointInfo(
        identity=ModelIdentity(name=config.name, version=config.version, dim=2),
        family="va-regression",
        distance="euclid",
        text_encoder=text_encoder.name,
        text_pooling=text_encoder.pooling,
        audio_backbone=backbone.name,
        audio_backbone_version=backbone.version,
        audio_features=list(config.audio_features),
        heads={"text": text_head.config, "audio": audio_head.config},
        va_axes=True,
        mood_words=words,
        training={
            "config": asdict(config),
            "fourq_split": {
                "seed": split.seed,
                "fractions": list(split.fractions),
                "fingerprint": split.fingerprint,
                "counts": split.counts(),
            },
            "text_examples": {p: len(s.texts) for p, s in sets.items()},
            "text_history": text_hist,
            "audio_history": audio_hist,
        },
        licences=LICENCES,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    heads = EmotionHeads(
        info=info, heads={"text": text_head, "audio": audio_head}, mood_positions=positions
    )
    return VATrainingResult(
        heads=heads, split=split, history={"text": text_hist, "audio": audio_hist}
    )
