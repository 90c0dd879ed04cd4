"""A small, deterministic training loop for heads on cached features."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from storycue.log import get_logger
from storycue.models.heads import MLPHead

log = get_logger(__name__)


@dataclass
class RegressionData:
    x: np.ndarray
    y: np.ndarray
    #: Weight of each row ``(N,)``, or of each target of each row ``(N, D)``.
    w: np.ndarray


class LoopOptions(TypedDict):
    """How :func:`fit_regression` trains: AdamW's rate and weight decay, at most
    ``max_epochs`` epochs, stopping after ``patience`` without a better validation loss."""

    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    batch_size: int
    seed: int


def _weighted_mse(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted MSE: ``w`` weighs rows ``(N,)``, or each output of each row ``(N, D)``."""
    if w.ndim == 2:
        return ((pred - y) ** 2).mul(w).sum() / w.sum().clamp(min=1e-9)
    return ((pred - y) ** 2).mean(dim=1).mul(w).sum() / w.sum().clamp(min=1e-9)


def fit_regression(
    head: MLPHead,
    train: RegressionData,
    val: RegressionData,
    *,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Weighted-MSE training with AdamW and early stopping on validation loss.

    The head's input standardisation is fitted on ``train.x``; the best epoch's weights
    (lowest validation loss) are restored at the end.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt, wt = (torch.from_numpy(np.asarray(a, np.float32)) for a in (train.x, train.y, train.w))
    xv, yv, wv = (torch.from_numpy(np.asarray(a, np.float32)) for a in (val.x, val.y, val.w))
    head.fit_normalisation(xt)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best = (float("inf"), -1)
    best_state = copy.deepcopy(head.state_dict())
    losses: list[float] = []
    for epoch in range(max_epochs):
        head.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss = _weighted_mse(head(xt[idx]), yt[idx], wt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
        head.eval()
        with torch.inference_mode():
            vloss = float(_weighted_mse(head(xv), yv, wv))
        losses.append(vloss)
        if vloss < best[0] - 1e-6:
            best = (vloss, epoch)
            best_state = copy.deepcopy(head.state_dict())
        elif epoch - best[1] >= patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    log.info("head_trained", best_epoch=best[1], val_loss=round(best[0], 5), epochs=len(losses))
    return {"best_epoch": best[1], "val_loss": best[0], "epochs": len(losses)}
