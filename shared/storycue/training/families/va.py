"""The valence-arousal regression family over a feature bank.

Sigmoid heads regress (valence, arousal) in [0, 1] (weighted MSE with
:func:`storycue.training.loop.fit_regression` via :func:`storycue.training.va.fit_va_head`,
early stopping on validation loss), reading their targets from the bank: text targets are
the NRC position of the label or EmoBank's rating (``TextPart.va``, built by
:func:`storycue.training.va.text_training_set`), music targets the quadrant centre, the
mean NRC position of the clip's tags (``MusicPart.tag_va``, built by
:func:`storycue.training.va.music_targets`) or their average (``va_music_target``). The
points meet by soft-quadrant, circumplex or Euclidean scoring (``va_scoring``).
"""

from __future__ import annotations

import functools

import numpy as np

from storycue.data.mappings import QUADRANT_VA_CENTRES, VA_CENTRE
from storycue.data.textsets import RATED_SOURCES, WORD_SOURCES
from storycue.errors import InvalidInputError
from storycue.models.checkpoints import EmotionHeads
from storycue.training.families.base import FamilyConfig, FeatureBank, MusicPart, TextPart
from storycue.training.families.common import (
    checkpoint_info,
    mood_positions_from_text,
    seed_everything,
)
from storycue.training.loop import RegressionData
from storycue.training.va import fit_va_head


def text_regression_data(part: TextPart, config: FamilyConfig) -> RegressionData:
    """Texts of ``config.text_sources`` with a known VA target, EmoBank (its sentences and,
    with the ``emobank-passages`` source, its joined passages) weighted by
    ``config.emobank_weight`` and its ratings stretched by ``config.emobank_stretch``.

    EmoBank's ratings, rescaled to [0, 1], sit within a few hundredths of the neutral point
    (standard deviation .09 for valence, .07 for arousal), while the labelled texts' NRC
    positions spread over the whole plane: in one MSE the ratings then hardly shape the
    head, which learns to place label words. Stretching the ratings' offsets from the
    scale's neutral point (0.5, rating 3) by ``emobank_stretch`` (clipped to [0, 1]) puts
    prose on the same scale as the labels, so how strongly a sentence feels counts.

    ``config.label_arousal_weight`` weighs the *arousal* target of labelled texts (ISEAR,
    GoEmotions) apart from their valence: the NRC arousal of a label word ("sadness" .29,
    "anger" .83) is a crude stand-in for how aroused a situation report reads, while
    EmoBank's arousal is rated on the text itself.

    The lexicon's words (source ``nrc-words``) weigh ``config.word_weight`` and keep their
    NRC positions: a word is rated on itself, like prose, but already spreads over the
    plane, so it is not stretched.

    ``config.rated_fit == "affine"`` scores EmoBank's rows through a scale and an offset
    per axis learned with the head (:class:`~storycue.training.loop.GroupAffine`): the
    ratings then teach how prose ranks along each axis while the labels' and the words'
    NRC positions alone place it on the plane (EmoBank's raters put most fiction above
    their scale's neutral point, which pulled calm literary prose to aroused music).

    ``config.label_target == "side"`` keeps only the *side* of the neutral point of each
    labelled text's NRC position (a logistic loss, :class:`RegressionData.side`): the label
    still decides the quadrant, but no longer pulls every joy text to arousal .82 and every
    text like it with it; how far out a text reads is left to the rated prose.
    """
    ok = np.isfinite(part.va).all(axis=1) & np.isin(np.asarray(part.sources), config.text_sources)
    idx = np.flatnonzero(ok)
    emobank = np.asarray([part.sources[i] in RATED_SOURCES for i in idx], bool)
    w = np.where(emobank, config.emobank_weight, 1.0).astype(np.float32)
    if config.passage_weight is not None:
        passages = np.asarray([part.sources[i] == "emobank-passages" for i in idx], bool)
        w[passages] = config.passage_weight
    words = np.asarray([part.sources[i] in WORD_SOURCES for i in idx], bool)
    w[words] = config.word_weight
    if config.label_arousal_weight != 1.0:
        # Per target: a labelled text's arousal target (its label word's NRC arousal) is
        # weighed apart from its valence; rated prose keeps both.
        w = np.stack([w, np.where(emobank | words, w, w * config.label_arousal_weight)], axis=1)
    y = np.asarray(part.va[idx], np.float32).copy()
    if config.emobank_stretch != 1.0:
        y[emobank] = np.clip(VA_CENTRE + config.emobank_stretch * (y[emobank] - VA_CENTRE), 0, 1)
    side = ~(emobank | words) if config.label_target == "side" else None
    # rated_fit "affine": EmoBank's rows are one group met up to a learned affine map.
    group = emobank.astype(np.int64) if config.rated_fit == "affine" else None
    return RegressionData(part.features[idx], y, w, side=side, group=group)


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
    """Valence-arousal regression: sigmoid heads place texts and clips in [0, 1]².

    How the points meet (``FamilyConfig.va_scoring``):

    - ``quadrants`` (default): each point becomes its four soft memberships of the
      circumplex quadrants (logistic in each axis around the neutral point, sharpness
      ``va_quadrant_sharpness``); the inner product of two such vectors is the probability
      that text and clip fall in the same quadrant. Saturating: a clip deep inside the
      text's quadrant is not preferred much over one clearly inside it, and a clip near an
      axis counts half for both sides.
    - ``circumplex``: the inner product of the offsets from the neutral point, so a clip
      ranks by how far it goes in the text's direction (linear, unbounded).
    - ``euclid``: Euclidean distance between the points (3.0.0 and earlier); a
      neutral clip next to a mildly sad text beats a clearly sad clip further out.

    ``docs/results.md`` compares the three on validation.
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
            side_sharpness=cfg.va_quadrant_sharpness,
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
            dim={"quadrants": 4, "proximity": 8}.get(cfg.va_scoring, 2),
            distance="euclid" if cfg.va_scoring == "euclid" else "dot",
            va_axes=True,
            va_centre=None if cfg.va_scoring == "euclid" else VA_CENTRE,
            va_quadrant_sharpness=(
                cfg.va_quadrant_sharpness if cfg.va_scoring in ("quadrants", "proximity") else None
            ),
            va_proximity=cfg.va_proximity if cfg.va_scoring == "proximity" else None,
            history={"text": text_hist, "audio": audio_hist},
            extra={"text_examples": {"train": len(train.x), "validation": len(val.x)}},
        )
        return EmotionHeads(
            info=info,
            heads={"text": text_head, "audio": audio_head},
            mood_positions=mood_positions_from_text(bank, text_head),
        )
