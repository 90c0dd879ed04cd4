"""The valence-arousal regression family over a feature bank.

The same model as :func:`storycue.training.va.train_va` (both train their heads with
:func:`storycue.training.va.fit_va_head`) (sigmoid heads regressing (valence,
arousal) in [0, 1], weighted MSE with :func:`storycue.training.loop.fit_regression`, early
stopping on validation loss, Euclidean retrieval), reading its targets from the bank:
text targets are the NRC position of the label or EmoBank's rating (``TextPart.va``, built
by :func:`storycue.training.va.text_training_set`), music targets the quadrant centre, the
mean NRC position of the clip's tags (``MusicPart.tag_va``, built by
:func:`storycue.training.va.music_targets`) or their average (``va_music_target``).
"""

from __future__ import annotations

import functools

import numpy as np

from storycue.errors import InvalidInputError
from storycue.evaluation.mappings import QUADRANT_VA_CENTRES, VA_CENTRE
from storycue.models.emotion import EmotionHeads
from storycue.training.families.base import FamilyConfig, FeatureBank, MusicPart, TextPart
from storycue.training.families.common import (
    checkpoint_info,
    mood_positions_from_text,
    seed_everything,
)
from storycue.training.loop import RegressionData
from storycue.training.va import fit_va_head


def text_regression_data(part: TextPart, config: FamilyConfig) -> RegressionData:
    """Texts of ``config.text_sources`` with a known VA target, EmoBank down-weighted."""
    ok = np.isfinite(part.va).all(axis=1) & np.isin(np.asarray(part.sources), config.text_sources)
    idx = np.flatnonzero(ok)
    w = np.asarray(
        [config.emobank_weight if part.sources[i] == "emobank" else 1.0 for i in idx], np.float32
    )
    return RegressionData(part.features[idx], part.va[idx], w)


def music_va_targets(part: MusicPart, how: str) -> np.ndarray:
    """VA target of each clip: ``"quadrant"`` centre, ``"tags"`` mean or ``"blend"``."""
    centre = np.asarray([QUADRANT_VA_CENTRES[q] for q in part.quadrants], np.float32).reshape(-1, 2)
    tags = np.where(np.isfinite(part.tag_va), part.tag_va, centre)
    if how == "quadrant":
        return centre
    if how == "tags":
        return tags.astype(np.float32)
    if how == "blend":
        out: np.ndarray = (0.5 * centre + 0.5 * tags).astype(np.float32)
        return out
    raise InvalidInputError(f"unknown VA music target {how!r}; use quadrant, tags or blend")


class VARegressionFamily:
    """Valence-arousal regression (2-d, sigmoid heads).

    Retrieval scores, by default, with the *circumplex* score: the inner product of the
    text's and the clip's offsets from the neutral point (0.5, 0.5), so a clip ranks by how
    far it goes in the text's direction around the centre (the angle of Russell's
    circumplex, which is what the quadrant labels encode) instead of by how close it lies to
    the text's point: a very sad clip is a better match for a mildly sad text than a neutral
    one. ``va_scoring="euclid"`` keeps the Euclidean distance (checkpoints before 3.1.0).
    On ISEAR validation queries against the 4Q validation clips, with the 3.0.0 heads, the
    circumplex score gives P@5 / MRR / mAP .880 / .916 / .787 against .861 / .913 / .780.
    """

    name = "va-regression"

    def default_config(self) -> FamilyConfig:
        return FamilyConfig(
            name=self.name,
            text_hidden=[256],
            audio_hidden=[128],
            dropout=0.3,
            lr=1e-3,
            weight_decay=1e-3,
            max_epochs=400,
            patience=40,
            batch_size=256,
            selection="loss",
        )

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        cfg = config or self.default_config()
        seed_everything(cfg.seed)
        train = text_regression_data(bank.text["train"], cfg)
        val = text_regression_data(bank.text["validation"], cfg)
        if len(train.x) == 0 or len(val.x) == 0:
            raise InvalidInputError(
                "va-regression needs texts with valence-arousal targets in train and validation"
            )
        fit = functools.partial(
            fit_va_head,
            dropout=cfg.dropout,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=cfg.seed,
        )
        text_head, text_hist = fit(
            bank.text_dim, cfg.text_hidden, train, val, batch_size=cfg.batch_size
        )

        mt, mv = bank.music["train"], bank.music["validation"]
        audio_head, audio_hist = fit(
            bank.audio_dim,
            cfg.audio_hidden,
            RegressionData(
                mt.features,
                music_va_targets(mt, cfg.va_music_target),
                np.ones(len(mt), np.float32),
            ),
            RegressionData(
                mv.features,
                music_va_targets(mv, cfg.va_music_target),
                np.ones(len(mv), np.float32),
            ),
            batch_size=min(cfg.batch_size, 64),
        )
        info = checkpoint_info(
            bank,
            family=self.name,
            config=cfg,
            heads={"text": text_head.config, "audio": audio_head.config},
            dim=2,
            distance="dot" if cfg.va_scoring == "circumplex" else "euclid",
            va_axes=True,
            va_centre=VA_CENTRE if cfg.va_scoring == "circumplex" else None,
            history={"text": text_hist, "audio": audio_hist},
            extra={"text_examples": {"train": len(train.x), "validation": len(val.x)}},
        )
        return EmotionHeads(
            info=info,
            heads={"text": text_head, "audio": audio_head},
            mood_positions=mood_positions_from_text(bank, text_head),
        )
