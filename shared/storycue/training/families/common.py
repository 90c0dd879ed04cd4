"""Shared machinery of the families: seeding, the epoch loop, validation, checkpoint info."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from storycue.evaluation.metrics import retrieval_metrics
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.models.checkpoints import CheckpointInfo, Distance
from storycue.models.heads import HeadConfig, MLPHead, OutputKind
from storycue.training.families.base import FamilyConfig, FeatureBank

log = get_logger(__name__)

#: Version of the family implementations, recorded in every checkpoint.
FAMILIES_VERSION = "1"

LICENCES = {
    "isear": "research use",
    "goemotions": "Apache-2.0",
    "emobank": "CC-BY-SA 4.0",
    "nrc-vad": "non-commercial research use (used for targets only; not redistributed)",
    "4q": "research use only (used for training only; not redistributed)",
    "all-MiniLM-L6-v2": "Apache-2.0",
    "musicnn": "ISC",
}


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global generator and return a numpy generator for sampling."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 CPU tensor of ``x``."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def embed(head: MLPHead, x: np.ndarray) -> np.ndarray:
    """``head``'s space vectors of features ``x`` (eval mode, no gradients)."""
    was_training = head.training
    head.eval()
    with torch.inference_mode():
        out = head(tensor(x)).numpy()
    head.train(was_training)
    return np.asarray(out, np.float32)


def embedding_head_configs(
    bank: FeatureBank, cfg: FamilyConfig, out_dim: int, output: OutputKind = "l2"
) -> tuple[HeadConfig, HeadConfig]:
    """The text and audio head architectures of a family mapping both into ``out_dim``."""

    def head(in_dim: int, hidden: Sequence[int]) -> HeadConfig:
        return HeadConfig(
            in_dim=in_dim, out_dim=out_dim, hidden=list(hidden), dropout=cfg.dropout, output=output
        )

    return head(bank.text_dim, cfg.text_hidden), head(bank.audio_dim, cfg.audio_hidden)


def fitted_head(config: HeadConfig, x: np.ndarray) -> MLPHead:
    """A new head whose input standardisation is fitted on ``x``."""
    head = MLPHead(config)
    head.fit_normalisation(tensor(x))
    return head


def balanced_sample(labels: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn with every label equally likely, then uniformly within it."""
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    keys = sorted(groups)
    picks = rng.integers(0, len(keys), size=n)
    return np.asarray(
        [groups[keys[k]][int(rng.integers(0, len(groups[keys[k]])))] for k in picks], np.int64
    )


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights (mean 1 over the classes present)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(
        counts > 0, counts.sum() / np.maximum(counts, 1.0) / max((counts > 0).sum(), 1), 0.0
    )
    return torch.tensor(w, dtype=torch.float32)


def fit(
    modules: Mapping[str, nn.Module],
    epoch: Callable[[np.random.Generator], Iterator[torch.Tensor]],
    score: Callable[[], float],
    config: FamilyConfig,
    rng: np.random.Generator,
    *,
    what: str,
) -> dict[str, Any]:
    """AdamW over all ``modules``' parameters with early stopping on ``score``.

    ``epoch(rng)`` yields one loss per optimisation step (modules in train mode);
    ``score()`` is evaluated after each epoch (modules in eval mode) and **higher is
    better**. The best epoch's weights are restored; training stops after
    ``config.patience`` epochs without improvement.
    """
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    best_score, best_epoch = -float("inf"), -1
    best_state = {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
    scores: list[float] = []
    steps = 0
    t0 = time.perf_counter()
    for ep in range(config.max_epochs):
        for m in modules.values():
            m.train()
        for loss in epoch(rng):
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            steps += 1
        for m in modules.values():
            m.eval()
        s = float(score())
        if not np.isfinite(s):
            # No validation signal: keep the latest epoch.
            s = float(ep)
        scores.append(s)
        if s > best_score + 1e-6:
            best_score, best_epoch = s, ep
            best_state = {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
        elif ep - best_epoch >= config.patience:
            break
    for k, m in modules.items():
        m.load_state_dict(best_state[k])
        m.eval()
    seconds = time.perf_counter() - t0
    log.info(
        "family_fit",
        what=what,
        best_epoch=best_epoch,
        best_score=round(best_score, 5),
        epochs=len(scores),
        seconds=round(seconds, 2),
    )
    return {
        "best_epoch": best_epoch,
        "best_score": best_score,
        "epochs": len(scores),
        "steps": steps,
        "scores": [round(x, 6) for x in scores],
        "seconds": round(seconds, 3),
    }


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A random permutation of ``range(n)`` cut into batches."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def validation_queries(bank: FeatureBank, config: FamilyConfig) -> tuple[np.ndarray, list[str]]:
    """Validation texts (features, labels) usable for retrieval scoring: from
    ``config.validation_sources`` (all sources when none of them is in the bank) and with
    a label in ``bank.mapping``."""
    part = bank.text["validation"]
    sources = set(config.validation_sources)
    if not sources & set(part.sources):
        sources = set(part.sources)
    idx = [
        i
        for i, (lab, src) in enumerate(zip(part.labels, part.sources, strict=True))
        if src in sources and lab in bank.mapping
    ]
    return part.features[idx], [part.labels[i] for i in idx]


def retrieval_score(
    bank: FeatureBank,
    config: FamilyConfig,
    text_head: MLPHead,
    audio_head: MLPHead,
    distance: Distance,
) -> float:
    """Macro MRR of validation texts ranking the validation clips (``bank.mapping``);
    ``nan`` when there are no mapped validation queries."""
    x, labels = validation_queries(bank, config)
    gallery = bank.music["validation"]
    if not labels or len(gallery) == 0:
        return float("nan")
    q = embed(text_head, x)
    g = embed(audio_head, gallery.features)
    scores = _score(q, g, distance)
    result = retrieval_metrics(scores, labels, gallery.quadrants, bank.mapping)
    return float(result.macro["mrr"])


def _score(q: np.ndarray, g: np.ndarray, distance: Distance) -> np.ndarray:
    if distance == "dot":
        return np.asarray(q @ g.T)
    if distance == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
        return np.asarray(qn @ gn.T)
    d2 = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2.0 * q @ g.T
    return np.asarray(-np.sqrt(np.maximum(d2, 0.0)))


def checkpoint_info(
    bank: FeatureBank,
    *,
    family: str,
    config: FamilyConfig,
    heads: Mapping[str, HeadConfig],
    dim: int,
    distance: Distance,
    history: Mapping[str, Any],
    vocabulary: Sequence[str] = (),
    va_axes: bool = False,
    va_centre: float | None = None,
    va_quadrant_sharpness: float | None = None,
    va_proximity: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """The metadata every family checkpoint carries (metrics are left to the caller)."""
    return CheckpointInfo(
        identity=ModelIdentity(name=config.name or family, version=config.version, dim=dim),
        family=family,
        distance=distance,
        text_encoder=bank.text_encoder,
        text_pooling=bank.text_pooling,
        audio_backbone=bank.audio_backbone,
        audio_backbone_version=bank.audio_backbone_version,
        audio_features=list(bank.audio_features),
        heads=dict(heads),
        vocabulary=list(vocabulary),
        va_axes=va_axes,
        va_centre=va_centre,
        va_quadrant_sharpness=va_quadrant_sharpness,
        va_proximity=va_proximity,
        mood_words=list(bank.mood_words),
        training={
            "family": family,
            "family_version": FAMILIES_VERSION,
            "seed": config.seed,
            "embedding_dim": dim,
            "config": asdict(config),
            "data": {
                **bank.data,
                "fingerprint": bank.data.get("fingerprint", bank.fingerprint()),
                "text_sources": sorted({s for p in bank.text.values() for s in p.sources}),
                "word_space": bank.word_space,
                "text_counts": {p: len(t) for p, t in bank.text.items()},
                "music_counts": {p: len(m) for p, m in bank.music.items()},
            },
            "history": dict(history),
            **(dict(extra) if extra else {}),
        },
        licences=LICENCES,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def mood_positions_from_text(bank: FeatureBank, text_head: MLPHead) -> np.ndarray:
    """Mood words placed by the text branch (empty when the bank has no mood features)."""
    if bank.mood_word_features.size == 0 or bank.mood_word_features.shape[1] != bank.text_dim:
        return np.zeros((0, 0), np.float32)
    return embed(text_head, bank.mood_word_features)


def triplet_cosine(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean of ``max(0, margin - cos(a, p) + cos(a, n))`` over the rows."""
    a = nn.functional.normalize(anchor, dim=-1)
    p = nn.functional.normalize(positive, dim=-1)
    n = nn.functional.normalize(negative, dim=-1)
    return torch.relu(margin - (a * p).sum(-1) + (a * n).sum(-1)).mean()
