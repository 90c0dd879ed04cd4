"""The metric-learning families (paper section 3.5): two and three branches.

**metric-2branch** — text anchors, music positives and negatives. A text and a clip are a
positive pair when the clip's quadrant is in the quadrant set of the text's label. Since the
text and music vocabularies differ, the label -> quadrants relation used for *training* is
by default the word mapping in the word space (the quadrant whose training-tag centroid is
nearest to the label's vector, :meth:`FeatureBank.word_mapping`), not the manual mapping
the evaluation uses (``positive_mapping="manual"`` switches to it, for comparison only).

**metric-3branch** — tag, text and music branches. The ``"tag"`` head maps word-space
vectors of labels and tags into the joint space; three triplet losses pull tag->text,
tag->music and text->music positives together. Cross-taxonomy positives come from the word
space: a text label's positive clips are those carrying one of its ``k_nearest_tags``
nearest AllMusic tags; an AllMusic tag's positive texts are those whose label is the tag's
nearest text label; a tag's positive clips are those carrying it.

Both use the cosine triplet loss ``max(0, margin - cos(a, p) + cos(a, n))`` with negatives
drawn in the batch by distance-weighted sampling (``negative_sampling="distance"``,
:mod:`~storycue.training.families.sampling`) or uniformly (``"random"``), L2-normalised
embeddings and cosine retrieval.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads
from storycue.models.heads import HeadConfig, MLPHead
from storycue.training.families.base import FamilyConfig, FeatureBank
from storycue.training.families.common import (
    checkpoint_info,
    embed,
    embedding_head_configs,
    fit,
    fitted_head,
    mood_positions_from_text,
    retrieval_score,
    seed_everything,
    tensor,
    triplet_cosine,
)
from storycue.training.families.sampling import sample_negatives

log = get_logger(__name__)


def nearest(query: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(Q, k)`` of the ``k`` keys of highest cosine similarity to each query
    (ties by key order)."""
    qn = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-9)
    kn = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-9)
    sims = qn @ kn.T
    out: np.ndarray = np.argsort(-sims, axis=1, kind="stable")[:, : max(1, min(k, keys.shape[0]))]
    return out


class Relations:
    """Who is a positive of whom, over the training texts, clips and anchor words."""

    def __init__(self, bank: FeatureBank, cfg: FamilyConfig, branches: int) -> None:
        self.labels = bank.text_labels
        if not self.labels:
            raise InvalidInputError("metric learning needs labelled training texts")
        self.tags = bank.tags if branches == 3 else []
        self.words = [*self.labels, *(t for t in self.tags if t not in set(self.labels))]
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        music = bank.music["train"]
        n_words = len(self.words)
        # word x text-label relevance, word x clip relevance
        self.word_label = np.zeros((n_words, len(self.labels)), bool)
        self.word_clip = np.zeros((n_words, len(music)), bool)
        self.near_tags: dict[str, list[str]] = {}
        self.near_label: dict[str, str] = {}
        if branches == 2:
            mapping = bank.word_mapping() if cfg.positive_mapping == "word" else bank.mapping
            quadrants = np.asarray(music.quadrants)
            for w, lab in enumerate(self.labels):
                if lab not in mapping:
                    raise InvalidInputError(f"no quadrant mapping for text label {lab!r}")
                self.word_label[w, w] = True
                self.word_clip[w] = np.isin(quadrants, sorted(mapping[lab]))
            self.mapping = {lab: sorted(mapping[lab]) for lab in self.labels}
        else:
            if not self.tags:
                raise InvalidInputError("metric-3branch needs mood tags on the training clips")
            tag_vecs = bank.vectors(self.tags)
            lab_vecs = bank.vectors(self.labels)
            clip_tag = np.zeros((len(music), len(self.tags)), bool)
            tag_index = {t: i for i, t in enumerate(self.tags)}
            for i, ms in enumerate(music.moods):
                for m in ms:
                    if m in tag_index:
                        clip_tag[i, tag_index[m]] = True
            near = nearest(lab_vecs, tag_vecs, cfg.k_nearest_tags)
            back = nearest(tag_vecs, lab_vecs, 1)[:, 0]
            for w, word in enumerate(self.words):
                if word in self.label_index:
                    self.word_label[w, self.label_index[word]] = True
                    tags = [self.tags[int(j)] for j in near[self.label_index[word]]]
                    self.near_tags[word] = tags
                else:
                    lab = self.labels[int(back[tag_index[word]])]
                    self.word_label[w, self.label_index[lab]] = True
                    self.near_label[word] = lab
                    tags = [word]
                cols = [tag_index[t] for t in tags]
                self.word_clip[w] = clip_tag[:, cols].any(axis=1)
            self.mapping = {}
        empty = [self.words[w] for w in range(n_words) if not self.word_clip[w].any()]
        if empty:
            raise InvalidInputError(f"no positive training clip for {empty[:10]}")
        text = bank.text["train"]
        self.text_rows = np.asarray(
            [i for i, lab in enumerate(text.labels) if lab in self.label_index], np.int64
        )
        self.text_label = np.asarray(
            [self.label_index[text.labels[i]] for i in self.text_rows], np.int64
        )
        self.texts_of_label = [
            self.text_rows[self.text_label == k] for k in range(len(self.labels))
        ]
        self.clips_of_word = [np.flatnonzero(self.word_clip[w]) for w in range(n_words)]

    def summary(self) -> dict[str, Any]:
        return {
            "positive_mapping": self.mapping,
            "near_tags": self.near_tags,
            "near_label": self.near_label,
            "anchor_words": len(self.words),
        }


class MetricLearningFamily:
    """Triplet-loss metric learning with two (text, music) or three (+ tag) branches."""

    def __init__(self, branches: Literal[2, 3]) -> None:
        self.branches = branches
        self.name = f"metric-{branches}branch"

    def default_config(self) -> FamilyConfig:
        return FamilyConfig(
            name=self.name,
            text_hidden=[256],
            audio_hidden=[256],
            tag_hidden=[128],
            embed_dim=64,
            batch_size=128,
            steps_per_epoch=40,
            max_epochs=40,
            patience=8,
            # Three branches: a text label's positive clips carry one of its 8 nearest
            # AllMusic tags, with a margin of 0.2 (chosen on ISEAR + GoEmotions validation
            # over k in {1, 3, 8, 16, 32} and margin in {0.2, 0.4}; docs/results.md).
            margin=0.2 if self.branches == 3 else 0.4,
            k_nearest_tags=8,
            selection="auto",
        )

    def train(self, bank: FeatureBank, config: FamilyConfig | None = None) -> EmotionHeads:
        cfg = config or self.default_config()
        rng = seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        rel = Relations(bank, cfg, self.branches)
        text, music = bank.text["train"], bank.music["train"]
        text_cfg, audio_cfg = embedding_head_configs(bank, cfg, cfg.embed_dim)
        heads_cfg = {"text": text_cfg, "audio": audio_cfg}
        heads: dict[str, MLPHead] = {
            "text": fitted_head(heads_cfg["text"], text.features[rel.text_rows]),
            "audio": fitted_head(heads_cfg["audio"], music.features),
        }
        word_vecs = bank.vectors(rel.words)
        if self.branches == 3:
            heads_cfg["tag"] = HeadConfig(
                in_dim=bank.word_dim,
                out_dim=cfg.embed_dim,
                hidden=list(cfg.tag_hidden),
                dropout=cfg.dropout,
                output="l2",
            )
            heads["tag"] = fitted_head(heads_cfg["tag"], word_vecs)
        x_text, x_music, x_word = tensor(text.features), tensor(music.features), tensor(word_vecs)
        word_label = torch.from_numpy(rel.word_label)
        word_clip = torch.from_numpy(rel.word_clip)
        n_labels, n_words = len(rel.labels), len(rel.words)
        half = max(1, cfg.batch_size // 2)

        def negatives(anchor: torch.Tensor, pool: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return sample_negatives(
                anchor,
                pool,
                mask,
                gen,
                strategy=cfg.negative_sampling,
                cutoff=cfg.dws_cutoff,
                nonzero_loss_cutoff=cfg.dws_nonzero_loss_cutoff,
            )

        def triplets(
            a: torch.Tensor, p: torch.Tensor, pool: torch.Tensor, mask: torch.Tensor
        ) -> torch.Tensor:
            neg = negatives(a, pool, mask)
            ok = neg >= 0
            if not bool(ok.any()):
                return a.new_zeros(())
            return triplet_cosine(a[ok], p[ok], pool[neg[ok]], cfg.margin)

        def step(r: np.random.Generator) -> torch.Tensor:
            # text anchors, label-balanced; their positive clips
            lab = r.integers(0, n_labels, size=half)
            t_rows = np.asarray([r.choice(rel.texts_of_label[k]) for k in lab], np.int64)
            t_pos = np.asarray([r.choice(rel.clips_of_word[k]) for k in lab], np.int64)
            if self.branches == 2:
                extra = r.integers(0, len(music), size=half)
                clips = np.concatenate([t_pos, extra])
                z_t = heads["text"](x_text[torch.from_numpy(t_rows)])
                z_c = heads["audio"](x_music[torch.from_numpy(clips)])
                mask = ~word_clip[torch.from_numpy(lab)][:, torch.from_numpy(clips)]
                return triplets(z_t, z_c[:half], z_c, mask)
            # word anchors: their positive texts and clips
            w = r.integers(0, n_words, size=half)
            w_text = np.asarray(
                [
                    r.choice(rel.texts_of_label[r.choice(np.flatnonzero(rel.word_label[k]))])
                    for k in w
                ],
                np.int64,
            )
            w_clip = np.asarray([r.choice(rel.clips_of_word[k]) for k in w], np.int64)
            texts = np.concatenate([t_rows, w_text])
            clips = np.concatenate([t_pos, w_clip])
            text_labels = np.concatenate(
                [lab, [int(np.flatnonzero(rel.word_label[k])[0]) for k in w]]
            )
            # a pool text is relevant to a word when its label is one of the word's labels
            ti, ci, wi = (torch.from_numpy(a) for a in (texts, clips, w))
            z_t = heads["text"](x_text[ti])
            z_c = heads["audio"](x_music[ci])
            z_w = heads["tag"](x_word[wi])
            lab_t = torch.from_numpy(lab)
            text_music = triplets(z_t[:half], z_c[:half], z_c, ~word_clip[lab_t][:, ci])
            tag_music = triplets(z_w, z_c[half:], z_c, ~word_clip[wi][:, ci])
            tl = torch.from_numpy(text_labels)
            tag_text = triplets(z_w, z_t[half:], z_t, ~word_label[wi][:, tl])
            return text_music + tag_music + tag_text

        def epoch(r: np.random.Generator) -> Iterator[torch.Tensor]:
            for _ in range(cfg.steps_per_epoch):
                yield step(r)

        val = self._validation_triplets(bank, rel, cfg)

        def score() -> float:
            if cfg.selection in ("auto", "mrr"):
                s = retrieval_score(bank, cfg, heads["text"], heads["audio"], "cosine")
                if np.isfinite(s):
                    return s
            return -self._validation_loss(heads, val, cfg.margin)

        hist = fit(heads, epoch, score, cfg, rng, what=self.name)
        hist["val_mrr"] = retrieval_score(bank, cfg, heads["text"], heads["audio"], "cosine")
        hist["val_triplet_loss"] = self._validation_loss(heads, val, cfg.margin)
        positions = mood_positions_from_text(bank, heads["text"])
        if self.branches == 3 and bank.mood_words:
            with contextlib.suppress(InvalidInputError):
                positions = embed(heads["tag"], bank.vectors(bank.mood_words))
        info = checkpoint_info(
            bank,
            family=self.name,
            config=cfg,
            heads=heads_cfg,
            dim=cfg.embed_dim,
            distance="cosine",
            history={"joint": hist},
            extra={"relations": rel.summary(), "anchor_words": rel.words},
        )
        return EmotionHeads(info=info, heads=heads, mood_positions=positions)

    @staticmethod
    def _validation_triplets(
        bank: FeatureBank, rel: Relations, cfg: FamilyConfig
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Fixed (text, positive clip, negative clip) validation triplets under the training
        relation (clip relevance from quadrants or tags of the validation clips)."""
        text, music = bank.text["validation"], bank.music["validation"]
        rows = [i for i, lab in enumerate(text.labels) if lab in rel.label_index]
        if not rows or len(music) == 0:
            return None
        r = np.random.default_rng(cfg.seed + 1)
        rows = list(r.permutation(rows)[:512])
        if rel.mapping:
            rel_clip = {
                lab: np.isin(np.asarray(music.quadrants), qs) for lab, qs in rel.mapping.items()
            }
        else:
            rel_clip = {
                lab: np.asarray([bool(set(ms) & set(tags)) for ms in music.moods])
                for lab, tags in rel.near_tags.items()
            }
        t, p, n = [], [], []
        for i in rows:
            ok = rel_clip[text.labels[i]]
            if ok.all() or not ok.any():
                continue
            t.append(i)
            p.append(int(r.choice(np.flatnonzero(ok))))
            n.append(int(r.choice(np.flatnonzero(~ok))))
        if not t:
            return None
        return text.features[t], music.features[p], music.features[n]

    @staticmethod
    def _validation_loss(
        heads: dict[str, MLPHead],
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        margin: float,
    ) -> float:
        """Mean cosine triplet loss of the fixed validation triplets (nan without any)."""
        if val is None:
            return float("nan")
        with torch.inference_mode():
            a = heads["text"](tensor(val[0]))
            p = heads["audio"](tensor(val[1]))
            n = heads["audio"](tensor(val[2]))
            return float(triplet_cosine(a, p, n, margin))
