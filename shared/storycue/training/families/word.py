"""The word-embedding regression family (paper section 3.4).

Every label lives in a word space (by default the text encoder's own embedding of the label
words; or word2vec/GloVe vectors, see :mod:`~storycue.training.families.wordvec`). The text
head regresses the vector of its text's label; the music head regresses either the mean
vector of the clip's AllMusic mood tags (``word_music_target="tags"``) or the centroid of
its quadrant's training tags (``"quadrant"``); ``"auto"`` trains both and keeps the one
with the higher validation retrieval MRR. Loss: cosine distance to the target; outputs are
L2-normalised; retrieval by cosine similarity. The mood words sit at their own word
vectors, since the space *is* the word space.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from storycue.data.fourq import QUADRANTS
from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads
from storycue.models.heads import MLPHead
from storycue.training.families.base import FamilyConfig, FeatureBank, MusicPart
from storycue.training.families.common import (
    checkpoint_info,
    embedding_head_configs,
    fit,
    fitted_head,
    minibatches,
    mood_positions_from_text,
    retrieval_score,
    seed_everything,
    tensor,
)

log = get_logger(__name__)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)).astype(
        np.float32
    )
    return out


def music_word_targets(bank: FeatureBank, part: MusicPart, how: str) -> np.ndarray:
    """Word-space target of each clip: mean of its tags' unit vectors (``"tags"``; clips
    without tags fall back to their quadrant) or its quadrant's tag centroid."""
    cent = bank.quadrant_centroids()
    qi = {q: i for i, q in enumerate(QUADRANTS)}
    quad = cent[[qi[q] for q in part.quadrants]]
    if how == "quadrant":
        return quad
    if how != "tags":
        raise InvalidInputError(f"unknown word music target {how!r}; use tags or quadrant")
    out = quad.copy()
    for i, ms in enumerate(part.moods):
        if ms:
            out[i] = _unit(_unit(bank.vectors(list(ms))).mean(axis=0))
    return out


def _cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1.0 - (torch.nn.functional.normalize(pred, dim=-1) * target).sum(-1)).mean()


class WordRegressionFamily:
    """Regress label / tag word vectors from text and music (cosine)."""

    name = "word-regression"

    def default_config(self) -> FamilyConfig:
        return FamilyConfig(
            name=self.name,
            text_hidden=[256],
            audio_hidden=[256],
            max_epochs=40,
            patience=8,
            selection="auto",
        )

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        cfg = config or self.default_config()
        choices = (
            ["tags", "quadrant"] if cfg.word_music_target == "auto" else [cfg.word_music_target]
        )
        runs: dict[str, tuple[MLPHead, MLPHead, dict[str, Any]]] = {}
        for how in choices:
            runs[how] = self._train_once(bank, cfg, how)
        if len(runs) == 1:
            chosen = choices[0]
        else:
            mrr = {how: float(r[2]["val_mrr"]) for how, r in runs.items()}
            finite = {h: v for h, v in mrr.items() if np.isfinite(v)}
            chosen = max(finite, key=lambda h: finite[h]) if finite else "tags"
            log.info("word_music_target_chosen", chosen=chosen, val_mrr=mrr)
        text_head, audio_head, _ = runs[chosen]
        try:
            positions = _unit(bank.vectors(bank.mood_words)) if bank.mood_words else None
        except InvalidInputError:
            positions = None
        if positions is None:
            positions = mood_positions_from_text(bank, text_head)
        info = checkpoint_info(
            bank,
            family=self.name,
            config=cfg,
            heads={"text": text_head.config, "audio": audio_head.config},
            dim=bank.word_dim,
            distance="cosine",
            history={how: r[2] for how, r in runs.items()},
            extra={"music_target": chosen, "word_space": bank.word_space},
        )
        return EmotionHeads(
            info=info,
            heads={"text": text_head, "audio": audio_head},
            mood_positions=positions,
        )

    def _train_once(
        self, bank: FeatureBank, cfg: FamilyConfig, how: str
    ) -> tuple[MLPHead, MLPHead, dict[str, Any]]:
        rng = seed_everything(cfg.seed)
        labels = set(bank.text_labels)

        def text_rows(part: str) -> tuple[np.ndarray, np.ndarray]:
            tp = bank.text[part]
            rows = [i for i, lab in enumerate(tp.labels) if lab in labels]
            if not rows:
                raise InvalidInputError(f"word-regression: no labelled {part} texts")
            return tp.features[rows], _unit(bank.vectors([tp.labels[i] for i in rows]))

        xt, yt = text_rows("train")
        xv, yv = text_rows("validation")
        mt, mv = bank.music["train"], bank.music["validation"]
        at, bt = mt.features, music_word_targets(bank, mt, how)
        av, bv = mv.features, music_word_targets(bank, mv, how)
        text_cfg, audio_cfg = embedding_head_configs(bank, cfg, bank.word_dim)
        text_head = fitted_head(text_cfg, xt)
        audio_head = fitted_head(audio_cfg, at)
        txt = (tensor(xt), tensor(yt))
        aud = (tensor(at), tensor(bt))
        music_bs = min(64, len(at))

        def epoch(r: np.random.Generator) -> Iterator[torch.Tensor]:
            for idx in minibatches(len(xt), cfg.batch_size, r):
                i = torch.from_numpy(idx)
                j = torch.from_numpy(r.integers(0, len(at), size=music_bs))
                yield _cosine_loss(text_head.logits(txt[0][i]), txt[1][i]) + _cosine_loss(
                    audio_head.logits(aud[0][j]), aud[1][j]
                )

        def val_loss() -> float:
            with torch.inference_mode():
                return float(
                    _cosine_loss(text_head.logits(tensor(xv)), tensor(yv))
                    + _cosine_loss(audio_head.logits(tensor(av)), tensor(bv))
                )

        def score() -> float:
            if cfg.selection in ("auto", "mrr"):
                s = retrieval_score(bank, cfg, text_head, audio_head, "cosine")
                if np.isfinite(s):
                    return s
            return -val_loss()

        hist = fit(
            {"text": text_head, "audio": audio_head},
            epoch,
            score,
            cfg,
            rng,
            what=f"{self.name}[{how}]",
        )
        hist["val_mrr"] = retrieval_score(bank, cfg, text_head, audio_head, "cosine")
        hist["val_loss"] = val_loss()
        return text_head, audio_head, hist
