"""The multi-head classification family (paper section 3.2).

Per modality a shared 3-layer MLP (the ``"text"`` / ``"audio"`` head, L2-normalised
output) feeds one linear classification head per taxonomy, all trained jointly:

* text: one head per labelled text source (ISEAR's 7 labels, GoEmotions' Ekman labels);
* music: the 4Q quadrants (softmax) and the AllMusic mood tags (multi-label, sigmoid).

The embedding is the shared MLP's output and retrieval uses cosine similarity. Nothing
ties the text space to the music space but their common dimension, so retrieval is
expected to be weak: the family shows that a multi-task embedding alone does not bridge the
vocabularies. Taxonomy heads are saved under the extra roles ``cls-<source>``, ``cls-4q``
and ``cls-allmusic``; their label lists are in ``info.training["taxonomies"]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from storycue.data.fourq import QUADRANTS
from storycue.errors import InvalidInputError
from storycue.models.checkpoints import EmotionHeads
from storycue.models.heads import HeadConfig, MLPHead
from storycue.training.families.base import FamilyConfig, FeatureBank
from storycue.training.families.common import (
    checkpoint_info,
    class_weights,
    embedding_head_configs,
    fit,
    fitted_head,
    minibatches,
    mood_positions_from_text,
    retrieval_score,
    seed_everything,
    tensor,
)

MUSIC_QUADRANT_ROLE = "cls-4q"
MUSIC_TAG_ROLE = "cls-allmusic"


def _taxonomy_head(embed_dim: int, n_labels: int, output: str) -> MLPHead:
    cfg = HeadConfig(in_dim=embed_dim, out_dim=n_labels, hidden=[], dropout=0.0, output=output)  # type: ignore[arg-type]
    head = MLPHead(cfg)
    # Inputs are unit vectors: standardise each component to unit scale.
    head.get_buffer("feature_std").fill_(1.0 / math.sqrt(embed_dim))
    return head


class MultiHeadClassificationFamily:
    """Shared per-modality MLPs with one classification head per taxonomy (cosine)."""

    name = "multihead-classification"

    def default_config(self) -> FamilyConfig:
        return FamilyConfig(
            name=self.name,
            text_hidden=[256, 256],
            audio_hidden=[256, 256],
            embed_dim=64,
            max_epochs=30,
            patience=6,
        )

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        cfg = config or self.default_config()
        rng = seed_everything(cfg.seed)
        taxonomies = bank.taxonomies
        if not taxonomies:
            raise InvalidInputError("multi-head classification needs labelled training texts")
        tags = bank.tags
        tag_index = {t: i for i, t in enumerate(tags)}
        qi = {q: i for i, q in enumerate(QUADRANTS)}

        # ---- data ----------------------------------------------------------------------------
        def text_rows(part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            tp = bank.text[part]
            src_ids = {s: k for k, s in enumerate(taxonomies)}
            lab_ids = {s: {lab: i for i, lab in enumerate(labs)} for s, labs in taxonomies.items()}
            rows = [
                i
                for i, (lab, src) in enumerate(zip(tp.labels, tp.sources, strict=True))
                if src in lab_ids and lab in lab_ids[src]
            ]
            src = np.asarray([src_ids[tp.sources[i]] for i in rows], np.int64)
            y = np.asarray([lab_ids[tp.sources[i]][tp.labels[i]] for i in rows], np.int64)
            return tp.features[rows], src, y

        def music_rows(part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            mp = bank.music[part]
            y = np.asarray([qi[q] for q in mp.quadrants], np.int64)
            multi = np.zeros((len(mp), len(tags)), np.float32)
            for i, ms in enumerate(mp.moods):
                for m in ms:
                    if m in tag_index:
                        multi[i, tag_index[m]] = 1.0
            return mp.features, y, multi

        xt, st, yt = text_rows("train")
        xv, sv, yv = text_rows("validation")
        at, qt, mt = music_rows("train")
        av, qv, mv = music_rows("validation")

        # ---- heads ---------------------------------------------------------------------------
        text_cfg, audio_cfg = embedding_head_configs(bank, cfg, cfg.embed_dim)
        text_head = fitted_head(text_cfg, xt)
        audio_head = fitted_head(audio_cfg, at)
        tax_heads: dict[str, MLPHead] = {
            f"cls-{src}": _taxonomy_head(cfg.embed_dim, len(labs), "softmax")
            for src, labs in taxonomies.items()
        }
        tax_heads[MUSIC_QUADRANT_ROLE] = _taxonomy_head(cfg.embed_dim, len(QUADRANTS), "softmax")
        if tags:
            tax_heads[MUSIC_TAG_ROLE] = _taxonomy_head(cfg.embed_dim, len(tags), "sigmoid")
        src_roles = [f"cls-{s}" for s in taxonomies]
        src_weights = [
            class_weights(yt[st == k], len(taxonomies[s])) if cfg.balance_classes else None
            for k, s in enumerate(taxonomies)
        ]
        src_loss = [nn.CrossEntropyLoss(weight=w) for w in src_weights]
        quad_loss = nn.CrossEntropyLoss()
        tag_loss = nn.BCEWithLogitsLoss()

        def text_loss(x: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            z = text_head(x)
            total: torch.Tensor = z.new_zeros(())
            for k, role in enumerate(src_roles):
                rows = s == k
                if bool(rows.any()):
                    total = total + src_loss[k](tax_heads[role].logits(z[rows]), y[rows])
            return total

        def music_loss(x: torch.Tensor, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            z = audio_head(x)
            total: torch.Tensor = quad_loss(tax_heads[MUSIC_QUADRANT_ROLE].logits(z), q)
            if MUSIC_TAG_ROLE in tax_heads:
                total = total + cfg.tag_loss_weight * tag_loss(
                    tax_heads[MUSIC_TAG_ROLE].logits(z), m
                )
            return total

        tr = (tensor(xt), torch.from_numpy(st), torch.from_numpy(yt))
        vl = (tensor(xv), torch.from_numpy(sv), torch.from_numpy(yv))
        au = (tensor(at), torch.from_numpy(qt), tensor(mt))
        auv = (tensor(av), torch.from_numpy(qv), tensor(mv))
        music_bs = min(64, len(at))

        def epoch(r: np.random.Generator) -> Iterator[torch.Tensor]:
            for idx in minibatches(len(xt), cfg.batch_size, r):
                i = torch.from_numpy(idx)
                j = torch.from_numpy(r.integers(0, len(at), size=music_bs))
                yield text_loss(tr[0][i], tr[1][i], tr[2][i]) + music_loss(
                    au[0][j], au[1][j], au[2][j]
                )

        def score() -> float:
            if cfg.selection == "mrr":
                return retrieval_score(bank, cfg, text_head, audio_head, "cosine")
            with torch.inference_mode():
                return -float(text_loss(*vl) + music_loss(*auv))

        modules: dict[str, nn.Module] = {"text": text_head, "audio": audio_head, **tax_heads}
        hist = fit(modules, epoch, score, cfg, rng, what=self.name)
        hist["val_mrr"] = retrieval_score(bank, cfg, text_head, audio_head, "cosine")
        head_cfgs = {"text": text_cfg, "audio": audio_cfg}
        head_cfgs.update({role: h.config for role, h in tax_heads.items()})
        info = checkpoint_info(
            bank,
            family=self.name,
            config=cfg,
            heads=head_cfgs,
            dim=cfg.embed_dim,
            distance="cosine",
            history={"joint": hist},
            extra={
                "taxonomies": {
                    **{f"cls-{s}": labs for s, labs in taxonomies.items()},
                    MUSIC_QUADRANT_ROLE: list(QUADRANTS),
                    **({MUSIC_TAG_ROLE: tags} if tags else {}),
                }
            },
        )
        return EmotionHeads(
            info=info,
            heads={"text": text_head, "audio": audio_head, **tax_heads},
            mood_positions=mood_positions_from_text(bank, text_head),
        )
