"""The classification family (paper section 3.1): two independent classifiers.

A text classifier over the union of the text vocabularies (ISEAR's 7 labels and
GoEmotions' Ekman labels) and a music classifier over the 4Q quadrants. Both write into one
joint vocabulary (text labels, then Q1..Q4): the text head emits the one-hot of its
predicted label, the audio head its quadrant probabilities, and a track's score is their
dot product, i.e. the music classifier's likelihood of the text's predicted label.

Because the two vocabularies are disjoint, every score is 0 and retrieval is at chance
level: the expected result, and the paper's point that classifiers alone cannot bridge
mismatched vocabularies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from storycue.data.fourq import QUADRANTS
from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads
from storycue.models.heads import HeadConfig, MLPHead
from storycue.training.families.base import FamilyConfig, FeatureBank
from storycue.training.families.common import (
    checkpoint_info,
    class_weights,
    fit,
    fitted_head,
    minibatches,
    mood_positions_from_text,
    seed_everything,
    tensor,
)

log = get_logger(__name__)


def train_classifier(
    head: MLPHead,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: FamilyConfig,
    rng: np.random.Generator,
    *,
    what: str,
    batch_size: int | None = None,
) -> dict[str, object]:
    """Cross-entropy training of ``head`` (classes ``0..out_dim-1``) with early stopping on
    validation balanced accuracy (``selection="loss"``: on validation cross-entropy)."""
    n_classes = head.config.out_dim
    weight = class_weights(y_train, n_classes) if config.balance_classes else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    xt, yt = tensor(x_train), torch.from_numpy(y_train.astype(np.int64))
    xv, yv = tensor(x_val), torch.from_numpy(y_val.astype(np.int64))
    bs = batch_size or config.batch_size

    def epoch(r: np.random.Generator) -> Iterator[torch.Tensor]:
        for idx in minibatches(len(xt), bs, r):
            i = torch.from_numpy(idx)
            yield loss_fn(head.logits(xt[i]), yt[i])

    def score() -> float:
        with torch.inference_mode():
            logits = head.logits(xv)
            if config.selection == "loss":
                return -float(loss_fn(logits, yv))
            pred = logits.argmax(dim=1).numpy()
        return balanced_accuracy(y_val, pred)

    hist = fit({"head": head}, epoch, score, config, rng, what=what)
    with torch.inference_mode():
        pred = head.logits(xv).argmax(dim=1).numpy()
    hist["val_accuracy"] = float(np.mean(pred == y_val)) if len(y_val) else float("nan")
    hist["val_balanced_accuracy"] = balanced_accuracy(y_val, pred)
    return hist


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (nan when empty)."""
    classes = np.unique(y_true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


class ClassificationFamily:
    """Separate text and music classifiers scattered into a joint vocabulary (dot score)."""

    name = "classification"

    def default_config(self) -> FamilyConfig:
        return FamilyConfig(name=self.name, max_epochs=40, patience=8)

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        cfg = config or self.default_config()
        rng = seed_everything(cfg.seed)
        text_labels = bank.text_labels
        if not text_labels:
            raise InvalidInputError("classification needs labelled training texts")
        vocabulary = [*text_labels, *QUADRANTS]
        n_text = len(text_labels)
        index = {lab: i for i, lab in enumerate(text_labels)}

        def labelled(part: str) -> tuple[np.ndarray, np.ndarray]:
            tp = bank.text[part]
            rows = [i for i, lab in enumerate(tp.labels) if lab in index]
            y = np.asarray([index[tp.labels[i]] for i in rows], np.int64)
            return tp.features[rows], y

        xt, yt = labelled("train")
        xv, yv = labelled("validation")
        text_cfg = HeadConfig(
            in_dim=bank.text_dim,
            out_dim=n_text,
            hidden=list(cfg.text_hidden),
            dropout=cfg.dropout,
            output="onehot",
            scatter=list(range(n_text)),
            scatter_dim=len(vocabulary),
        )
        text_head = fitted_head(text_cfg, xt)
        text_hist = train_classifier(text_head, xt, yt, xv, yv, cfg, rng, what="text-classifier")

        qi = {q: i for i, q in enumerate(QUADRANTS)}
        mt, mv = bank.music["train"], bank.music["validation"]
        at = np.asarray([qi[q] for q in mt.quadrants], np.int64)
        av = np.asarray([qi[q] for q in mv.quadrants], np.int64)
        audio_cfg = HeadConfig(
            in_dim=bank.audio_dim,
            out_dim=len(QUADRANTS),
            hidden=list(cfg.audio_hidden),
            dropout=cfg.dropout,
            output="softmax",
            scatter=[n_text + i for i in range(len(QUADRANTS))],
            scatter_dim=len(vocabulary),
        )
        audio_head = fitted_head(audio_cfg, mt.features)
        audio_hist = train_classifier(
            audio_head,
            mt.features,
            at,
            mv.features,
            av,
            replace(cfg, batch_size=min(cfg.batch_size, 64)),
            rng,
            what="music-classifier",
        )
        info = checkpoint_info(
            bank,
            family=self.name,
            config=cfg,
            heads={"text": text_cfg, "audio": audio_cfg},
            dim=len(vocabulary),
            distance="dot",
            vocabulary=vocabulary,
            history={"text": text_hist, "audio": audio_hist},
            extra={"text_labels": text_labels, "music_labels": list(QUADRANTS)},
        )
        return EmotionHeads(
            info=info,
            heads={"text": text_head, "audio": audio_head},
            mood_positions=mood_positions_from_text(bank, text_head),
        )
